/* log: the leveled diagnostic logger (harrier's own messages, never a job's output).
 * Writes "harrier: level: message" lines to a sink, stderr by default. The CLI sets the
 * level (--verbose, HARRIER_LOG=debug) and may set another sink. */
#ifndef HARRIER_LIB_LOG_H
#define HARRIER_LIB_LOG_H

#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Reads "debug", "info", "warn", "error" or "off" (any case); returns -1 when unknown. */
int log_level_parse(const char *name);
void log_set_sink(FILE *sink); /* NULL = stderr */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
