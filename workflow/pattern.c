#include "workflow/pattern.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void quote(struct buf *re, char c)
{
    if (strchr(".[]{}()\\*+?|^$", c))
        buf_putc(re, '\\');
    buf_putc(re, c);
}

static bool in_range(char lo, char hi, char c)
{
    return c >= lo && c <= hi;
}

/* A character class: letters and digits, and ranges within A-z or 0-9. */
static int class_to_regex(const char *p, size_t *pos, struct buf *re, const char **problem)
{
    size_t start = *pos;
    buf_putc(re, '[');
    if (p[*pos] == ']') {
        *problem = "unexpected empty brackets '[]'";
        return -1;
    }
    while (p[*pos] && p[*pos] != ']') {
        char c = p[*pos];
        if (c == '-') {
            char before = *pos > start ? p[*pos - 1] : 0, after = p[*pos + 1];
            bool ok = *pos > start && after &&
                      ((in_range('A', 'z', before) && in_range('A', 'z', after)) ||
                       (in_range('0', '9', before) && in_range('0', '9', after))) &&
                      before <= after;
            if (!ok) {
                *problem = "ranges can only include a-z, A-Z, A-z, and 0-9";
                return -1;
            }
            buf_putc(re, '-');
            buf_putc(re, after);
            *pos += 2;
            continue;
        }
        if (!in_range('A', 'z', c) && !in_range('0', '9', c)) {
            *problem = "ranges can only include a-z, A-Z and 0-9";
            return -1;
        }
        buf_putc(re, c); /* inside brackets POSIX takes every character literally */
        (*pos)++;
    }
    if (p[*pos] != ']') {
        *problem = "missing closing bracket ']' after '['";
        return -1;
    }
    buf_putc(re, ']');
    (*pos)++;
    return 0;
}

static int to_regex(const char *p, struct buf *re, size_t *at, const char **problem)
{
    buf_putc(re, '^');
    size_t pos = 0;
    while (p[pos]) {
        *at = pos;
        char c = p[pos];
        if (c == '*' && p[pos + 1] == '*' && p[pos + 2] == '/') {
            buf_puts(re, "(.+/)?");
            pos += 3;
        } else if (c == '*' && p[pos + 1] == '*') {
            buf_puts(re, ".*");
            pos += 2;
        } else if (c == '*') {
            buf_puts(re, "[^/]*");
            pos++;
        } else if ((c == '+' || c == '?') && pos > 0) {
            buf_putc(re, c);
            pos++;
        } else if (c == '[') {
            pos++;
            if (class_to_regex(p, &pos, re, problem) < 0)
                return -1;
        } else if (c == '\\') {
            if (!p[pos + 1]) {
                *problem = "missing symbol after \\";
                return -1;
            }
            quote(re, p[pos + 1]);
            pos += 2;
        } else {
            quote(re, c);
            pos++;
        }
    }
    buf_putc(re, '$');
    return 0;
}

int pattern_list_compile(struct pattern_list *list, const char *const *patterns, size_t count,
                         struct error *err)
{
    list->items = xcalloc(count + 1, sizeof(*list->items));
    list->count = 0;
    for (size_t i = 0; i < count; i++) {
        const char *p = patterns[i];
        struct pattern *item = &list->items[list->count];
        item->negative = p[0] == '!';
        if (item->negative)
            p++;
        struct buf re = BUF_INIT;
        const char *problem = NULL;
        size_t at = 0;
        int rc = to_regex(p, &re, &at, &problem);
        if (rc == 0 && regcomp(&item->regex, buf_cstr(&re), REG_EXTENDED | REG_NOSUB) != 0) {
            problem = "not a valid pattern";
            rc = -1;
        }
        buf_free(&re);
        if (rc < 0) {
            pattern_list_free(list);
            return error_set(err, EINVAL, "invalid pattern '%s': %s at position %zu", patterns[i],
                             problem, at);
        }
        list->count++;
    }
    return 0;
}

void pattern_list_free(struct pattern_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        regfree(&list->items[i].regex);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static bool matches(const struct pattern *p, const char *input)
{
    return regexec(&p->regex, input, 0, NULL, 0) == 0;
}

bool pattern_list_skips(const struct pattern_list *list, const char *const *inputs, size_t count)
{
    if (list->count == 0)
        return false;
    for (size_t i = 0; i < count; i++) {
        bool included = false;
        for (size_t k = 0; k < list->count; k++)
            if (matches(&list->items[k], inputs[i]))
                included = !list->items[k].negative;
        if (included)
            return false;
    }
    return true;
}

/* An input is ignored by the first pattern that matches it, or by a '!' pattern it does not
 * match (act's reading of negation in ignore lists, which the corpus encodes). */
bool pattern_list_ignores(const struct pattern_list *list, const char *const *inputs, size_t count)
{
    if (list->count == 0)
        return false;
    for (size_t i = 0; i < count; i++) {
        bool ignored = false;
        for (size_t k = 0; k < list->count && !ignored; k++)
            ignored = matches(&list->items[k], inputs[i]) != list->items[k].negative;
        if (!ignored)
            return false;
    }
    return true;
}
