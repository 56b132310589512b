#include "lib/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int normalize_code(int code)
{
    if (code > 0)
        return -code;
    return code == 0 ? -1 : code;
}

static int error_vset(struct error *err, int code, const char *where, int line, int col,
                      const char *fmt, va_list ap)
{
    code = normalize_code(code);
    if (!err)
        return code;
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    snprintf(err->where, sizeof err->where, "%s", where ? where : "");
    err->line = line;
    err->col = col;
    return code;
}

int error_set(struct error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_vset(err, code, NULL, 0, 0, fmt, ap);
    va_end(ap);
    return rc;
}

int error_set_at(struct error *err, int code, const char *where, int line, int col, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_vset(err, code, where, line, col, fmt, ap);
    va_end(ap);
    return rc;
}

int error_set_errno(struct error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_vset(err, errnum, NULL, 0, 0, fmt, ap);
    va_end(ap);
    if (err) {
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof err->message - len, ": %s", strerror(errnum));
    }
    return rc;
}

int error_prefix(struct error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* prefix + ": " + old message, cut to fit */
    char joined[ERROR_MESSAGE_MAX];
    size_t n = strlen(prefix);
    memcpy(joined, prefix, n);
    size_t room = sizeof joined - 1 - n;
    size_t old = strlen(err->message);
    if (room >= 2) {
        memcpy(joined + n, ": ", 2);
        n += 2;
        room -= 2;
        if (old > room)
            old = room;
        memcpy(joined + n, err->message, old);
        n += old;
    }
    joined[n] = '\0';
    memcpy(err->message, joined, n + 1);
    if (err->code == 0)
        err->code = -1;
    return err->code;
}

void error_clear(struct error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

const char *error_format(const struct error *err, char *out, size_t size)
{
    if (!err->where[0])
        snprintf(out, size, "%s", err->message);
    else if (err->line > 0 && err->col > 0)
        snprintf(out, size, "%s:%d:%d: %s", err->where, err->line, err->col, err->message);
    else if (err->line > 0)
        snprintf(out, size, "%s:%d: %s", err->where, err->line, err->message);
    else
        snprintf(out, size, "%s: %s", err->where, err->message);
    return out;
}
