#include "lib/log.h"

#include "lib/buf.h"

#include <stdarg.h>

static enum log_level current_level = LOG_INFO;
static FILE *current_sink;

static const char *const level_names[] = {"debug", "info", "warning", "error", "off"};

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_get_level(void)
{
    return current_level;
}

int log_level_parse(const char *name)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {{"debug", LOG_DEBUG},  {"info", LOG_INFO},   {"warn", LOG_WARN},
                 {"warning", LOG_WARN}, {"error", LOG_ERROR}, {"off", LOG_OFF}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (str_eq_nocase(name, names[i].name))
            return (int)names[i].level;
    return -1;
}

void log_set_sink(FILE *sink)
{
    current_sink = sink;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < current_level || level >= LOG_OFF)
        return;
    struct buf line = BUF_INIT;
    buf_printf(&line, "harrier: %s: ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&line, fmt, ap);
    va_end(ap);
    buf_putc(&line, '\n');
    FILE *sink = current_sink ? current_sink : stderr;
    fwrite(line.data, 1, line.len, sink); /* one write per line keeps lines whole */
    fflush(sink);
    buf_free(&line);
}
