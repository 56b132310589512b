/* error: the one error convention below the CLI.
 * Functions return 0 or a negative value and fill a caller-owned struct error with a
 * message and, where it applies, a location (file:line:col, or a URL). Callers add
 * context on the way up with error_prefix(); the CLI prints it once. */
#ifndef HARRIER_LIB_ERROR_H
#define HARRIER_LIB_ERROR_H

#include <stddef.h>

enum {
    ERROR_MESSAGE_MAX = 1024,
    ERROR_WHERE_MAX = 512,
};

struct error {
    int code;                        /* negative errno (-ENOENT…) or -1 for "failed" */
    char message[ERROR_MESSAGE_MAX]; /* what went wrong and what to do, one line */
    char where[ERROR_WHERE_MAX];     /* file name or URL; empty when none */
    int line, col;                   /* 1-based; 0 when unknown */
};

/* Sets err (may be NULL) and returns the negative code to pass up: `return error_set(...)`.
 * code is a positive errno, a negative errno, or 0 (taken as -1). */
int error_set(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As error_set, with a location. where may be NULL. */
int error_set_at(struct error *err, int code, const char *where, int line, int col, const char *fmt,
                 ...) __attribute__((format(printf, 6, 7)));

/* As error_set, appending ": strerror(errno)" for the given errno. */
int error_set_errno(struct error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds context in front of the message ("reading x: <old message>"); returns err->code. */
int error_prefix(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resets err to "no error". */
void error_clear(struct error *err);

/* Writes "where:line:col: message" (parts that are unknown left out) into out; returns out. */
const char *error_format(const struct error *err, char *out, size_t size);

#endif
