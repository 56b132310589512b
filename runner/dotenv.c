#include "runner/dotenv.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

static bool valid_key(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

int dotenv_parse_pair(const char *pair, const char *flag, json_t *object, struct error *err)
{
    const char *eq = strchr(pair, '=');
    if (!eq || !valid_key(pair, (size_t)(eq - pair)))
        return error_set(err, EINVAL, "%s '%s' must look like NAME=VALUE", flag, pair);
    cleanup_free char *key = xstrndup(pair, (size_t)(eq - pair));
    json_object_set_new(object, key, json_string(eq + 1));
    return 0;
}

/* Reads a double-quoted value starting after the quote; advances *p past the closing quote. */
static int read_double_quoted(const char **p, int *line, struct buf *out)
{
    static const char escapes[][2] = {{'n', '\n'},  {'t', '\t'}, {'r', '\r'},
                                      {'\\', '\\'}, {'"', '"'},  {'$', '$'}};
    const char *s = *p;
    while (*s && *s != '"') {
        if (*s == '\n')
            (*line)++;
        if (*s == '\\' && s[1]) {
            char c = s[1];
            for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++)
                if (escapes[i][0] == s[1])
                    c = escapes[i][1];
            if (c == s[1] && !strchr("\\\"$", c))
                buf_putc(out, '\\'); /* unknown escapes stay as written */
            buf_putc(out, c);
            s += 2;
            continue;
        }
        buf_putc(out, *s++);
    }
    if (*s != '"')
        return -1;
    *p = s + 1;
    return 0;
}

int dotenv_parse(const char *text, const char *where, json_t *object, struct error *err)
{
    const char *p = text;
    int line = 1;
    while (*p) {
        int start_line = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) {
            p += strcspn(p, "\n");
            if (*p)
                p++, line++;
            continue;
        }
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        const char *key = p;
        while (*p && *p != '=' && *p != '\n')
            p++;
        size_t key_len = (size_t)(p - key);
        while (key_len && (key[key_len - 1] == ' ' || key[key_len - 1] == '\t'))
            key_len--;
        if (*p != '=' || !valid_key(key, key_len))
            return error_set_at(err, EINVAL, where, start_line, 0,
                                "expected NAME=VALUE (a name of letters, digits, '_', '-', '.')");
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        struct buf value = BUF_INIT;
        if (*p == '"' || *p == '\'') {
            char quote = *p++;
            int rc = 0;
            if (quote == '"') {
                rc = read_double_quoted(&p, &line, &value);
            } else {
                const char *end = strchr(p, '\'');
                if (end) {
                    for (const char *c = p; c < end; c++)
                        line += *c == '\n';
                    buf_append(&value, p, (size_t)(end - p));
                    p = end + 1;
                } else {
                    rc = -1;
                }
            }
            if (rc < 0) {
                buf_free(&value);
                return error_set_at(err, EINVAL, where, start_line, 0,
                                    "the quoted value has no closing %c", quote);
            }
            p += strcspn(p, "\n"); /* anything after the closing quote is a comment */
        } else {
            size_t n = strcspn(p, "\n");
            const char *hash = NULL;
            for (const char *c = p; c < p + n; c++)
                if (*c == '#' && (c == p || c[-1] == ' ' || c[-1] == '\t')) {
                    hash = c;
                    break;
                }
            size_t len = hash ? (size_t)(hash - p) : n;
            while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r'))
                len--;
            buf_append(&value, p, len);
            p += n;
        }
        cleanup_free char *name = xstrndup(key, key_len);
        json_object_set_new(object, name, json_stringn(buf_cstr(&value), value.len));
        buf_free(&value);
        if (*p)
            p++, line++;
    }
    return 0;
}
