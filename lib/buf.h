/* buf: a growable byte buffer, always NUL-terminated, and small string helpers.
 * A struct buf is owned by whoever declared it; buf_free() releases its memory and
 * buf_steal() hands the bytes to the caller (who then frees them with free()). */
#ifndef HARRIER_LIB_BUF_H
#define HARRIER_LIB_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data; /* NULL until the first append; then always NUL-terminated */
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the memory */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_consume(struct buf *b, size_t n); /* drops the first n bytes */
const char *buf_cstr(const struct buf *b); /* "" when empty; never NULL */
char *buf_steal(struct buf *b);            /* caller frees; b is empty after */

#define cleanup_buf __attribute__((cleanup(buf_free)))

/* String helpers. */
bool str_starts_with(const char *s, const char *prefix);
bool str_ends_with(const char *s, const char *suffix);
bool str_eq_nocase(const char *a, const char *b);
bool str_starts_with_nocase(const char *s, const char *prefix);
char *str_lower(char *s); /* ASCII, in place; returns s */
char *str_upper(char *s); /* ASCII, in place; returns s */
char *str_trim(char *s);  /* strips ASCII white space in place; returns a pointer into s */
char **str_split(const char *s, char sep, size_t *count); /* free with str_list_free */
void str_list_free(char **list);
char *str_replace_all(const char *s, const char *from, const char *to); /* caller frees */

#endif
