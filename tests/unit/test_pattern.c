#include "workflow/pattern.h"

#include <criterion/criterion.h>

static bool skips(const char *const *patterns, size_t np, const char *input)
{
    struct pattern_list list;
    struct error err = {0};
    cr_assert_eq(pattern_list_compile(&list, patterns, np, &err), 0, "%s", err.message);
    bool r = pattern_list_skips(&list, &input, 1);
    pattern_list_free(&list);
    return r;
}

Test(pattern, star_stops_at_slashes_and_double_star_does_not)
{
    const char *star[] = {"feature/*"}, *dstar[] = {"feature/**"};
    cr_assert_not(skips(star, 1, "feature/a"));
    cr_assert(skips(star, 1, "feature/a/b"));
    cr_assert_not(skips(dstar, 1, "feature/a/b"));
}

Test(pattern, later_negations_exclude_again)
{
    const char *p[] = {"*.md", "!README.md"};
    cr_assert_not(skips(p, 2, "hello.md"));
    cr_assert(skips(p, 2, "README.md"));
    const char *q[] = {"*.md", "!README.md", "README*"};
    cr_assert_not(skips(q, 3, "README.md"));
}

Test(pattern, question_and_plus_apply_to_the_character_before)
{
    const char *p[] = {"*.jsx?"}, *v[] = {"v[12].[0-9]+.[0-9]+"};
    cr_assert_not(skips(p, 1, "page.js"));
    cr_assert_not(skips(p, 1, "page.jsx"));
    cr_assert_not(skips(v, 1, "v1.10.1"));
    cr_assert(skips(v, 1, "v3.1.1"));
}

Test(pattern, ignore_lists_ignore_when_every_input_is_ignored)
{
    const char *p[] = {"docs/**"};
    const char *inputs[] = {"docs/a.md", "src/main.c"};
    struct pattern_list list;
    struct error err = {0};
    cr_assert_eq(pattern_list_compile(&list, p, 1, &err), 0);
    cr_assert(pattern_list_ignores(&list, inputs, 1));
    cr_assert_not(pattern_list_ignores(&list, inputs, 2));
    pattern_list_free(&list);
}

Test(pattern, malformed_patterns_are_refused)
{
    const char *p[] = {"v[]"};
    struct pattern_list list;
    struct error err = {0};
    cr_assert_lt(pattern_list_compile(&list, p, 1, &err), 0);
    cr_assert_str_eq(err.message,
                     "invalid pattern 'v[]': unexpected empty brackets '[]' at position 1");
}
