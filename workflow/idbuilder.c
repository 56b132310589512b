#include "workflow/idbuilder_internal.h"

#include "lib/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t utf8_sequence_length(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        return 2;
    if ((c & 0xF0) == 0xE0)
        return 3;
    if ((c & 0xF8) == 0xF0)
        return 4;
    return 1;
}

/* UTF-16 units of the UTF-8 sequence starting at s (of byte length len). */
static size_t utf16_units(size_t len)
{
    return len == 4 ? 2 : 1;
}

static size_t sequence_at(const char *s)
{
    size_t len = utf8_sequence_length((unsigned char)*s);
    for (size_t i = 1; i < len; i++)
        if (!s[i])
            return i;
    return len;
}

size_t utf16_length(const char *s)
{
    size_t n = 0;
    while (*s) {
        size_t len = sequence_at(s);
        n += utf16_units(len);
        s += len;
    }
    return n;
}

size_t utf16_prefix_bytes(const char *s, size_t n)
{
    const char *p = s;
    size_t units = 0;
    while (*p) {
        size_t len = sequence_at(p);
        if (units + utf16_units(len) > n)
            break;
        units += utf16_units(len);
        p += len;
    }
    return (size_t)(p - s);
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

void id_builder_init(struct id_builder *b)
{
    memset(b, 0, sizeof(*b));
}

void id_builder_free(struct id_builder *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->distinct[i]);
    free(b->distinct);
    buf_free(&b->name);
    memset(b, 0, sizeof(*b));
}

static bool is_taken(const struct id_builder *b, const char *id)
{
    for (size_t i = 0; i < b->count; i++)
        if (str_eq_nocase(b->distinct[i], id))
            return true;
    return false;
}

static const char *take(struct id_builder *b, const char *id)
{
    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->distinct = xrealloc(b->distinct, b->cap * sizeof(*b->distinct));
    }
    b->distinct[b->count] = xstrdup(id);
    return b->distinct[b->count++];
}

void id_builder_append_segment(struct id_builder *b, const char *value)
{
    if (!value || !*value)
        return;
    if (b->name.len == 0) {
        /* A digit or '-' may not start an id but may follow '_'. */
        if (is_digit(value[0]) || value[0] == '-')
            buf_putc(&b->name, '_');
    } else {
        buf_putc(&b->name, '_');
    }
    for (const char *p = value; *p;) {
        size_t len = sequence_at(p);
        if (len == 1 && (is_alpha(*p) || is_digit(*p) || *p == '_' || *p == '-')) {
            buf_putc(&b->name, *p);
        } else {
            for (size_t i = 0; i < utf16_units(len); i++)
                buf_putc(&b->name, '_');
        }
        p += len;
    }
}

const char *id_builder_build(struct id_builder *b, bool allow_reserved_prefix, int max_length)
{
    /* Room for at least one character and the longest suffix, "_999". */
    if (max_length <= 5)
        max_length = ID_MAX_LENGTH;
    const char *original = b->name.len ? buf_cstr(&b->name) : "job";
    if (!allow_reserved_prefix && str_starts_with(original, "__")) {
        while (original[1] == '_')
            original++; /* keep one '_' */
    }
    size_t original_len = strlen(original); /* ASCII: every other character became '_' */
    bool bare = !allow_reserved_prefix && strcmp(original, "_") == 0;
    char candidate[ID_MAX_LENGTH + 16];
    for (int attempt = 1; attempt < 1000; attempt++) {
        char suffix[16] = "";
        if (attempt > 1)
            snprintf(suffix, sizeof(suffix), bare ? "%d" : "_%d", attempt);
        size_t suffix_len = strlen(suffix);
        size_t keep = (size_t)max_length - suffix_len;
        if (keep > original_len)
            keep = original_len;
        if (keep > ID_MAX_LENGTH)
            keep = ID_MAX_LENGTH;
        memcpy(candidate, original, keep);
        memcpy(candidate + keep, suffix, suffix_len + 1);
        if (!is_taken(b, candidate)) {
            const char *id = take(b, candidate);
            buf_reset(&b->name);
            return id;
        }
    }
    return NULL;
}

static bool is_valid_id(const char *s)
{
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (is_alpha(c) || c == '_' || (i > 0 && (is_digit(c) || c == '-')))
            continue;
        return false;
    }
    return true;
}

char *id_builder_add_known(struct id_builder *b, const char *value)
{
    if (!value || !*value || !is_valid_id(value) || utf16_length(value) >= ID_MAX_LENGTH)
        return xasprintf("The identifier '%s' is invalid. IDs may only contain alphanumeric "
                         "characters, '_', and '-'. IDs must start with a letter or '_' and and "
                         "must be less than %d characters.",
                         value ? value : "", ID_MAX_LENGTH);
    if (str_starts_with(value, "__"))
        return xasprintf("The identifier '%s' is invalid. IDs starting with '__' are reserved.",
                         value);
    if (is_taken(b, value))
        return xasprintf("The identifier '%s' may not be used more than once within the same "
                         "scope.",
                         value);
    take(b, value);
    return NULL;
}
