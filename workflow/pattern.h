/* pattern: the glob filters of workflow triggers (`branches`, `tags`, `paths` and their
 * `-ignore` forms): `*` (not across '/'), `**`, `?` and `+` on the character before, `[a-z0-9]`
 * classes, `\` escapes, and a leading `!` to exclude. Compiled to POSIX regular expressions.
 * A struct pattern_list owns its compiled patterns (pattern_list_free). */
#ifndef HARRIER_WORKFLOW_PATTERN_H
#define HARRIER_WORKFLOW_PATTERN_H

#include "lib/error.h"

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

struct pattern {
    bool negative; /* written with a leading '!' */
    regex_t regex;
};

struct pattern_list {
    struct pattern *items;
    size_t count;
};

/* Compiles patterns in order. On a malformed pattern returns negative with err naming it
 * ("invalid pattern '[]': unexpected empty brackets '[]' at position 1"). */
int pattern_list_compile(struct pattern_list *list, const char *const *patterns, size_t count,
                         struct error *err);
void pattern_list_free(struct pattern_list *list);

/* Positive filters (branches, tags, paths): true when no input is included, so the workflow
 * does not run. Patterns apply in order; a later '!' pattern excludes again. False for an
 * empty list. */
bool pattern_list_skips(const struct pattern_list *list, const char *const *inputs, size_t count);
/* Ignore filters (branches-ignore, tags-ignore, paths-ignore): true when every input is
 * ignored, so the workflow does not run. False for an empty list. */
bool pattern_list_ignores(const struct pattern_list *list, const char *const *inputs, size_t count);

#endif
