#include "lib/buf.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(buf, appends_and_stays_terminated)
{
    struct buf b = BUF_INIT;
    cr_assert_str_eq(buf_cstr(&b), "");
    buf_puts(&b, "hello");
    buf_putc(&b, ' ');
    buf_printf(&b, "%s %d", "world", 42);
    cr_assert_str_eq(b.data, "hello world 42");
    cr_assert_eq(b.len, 14);
    buf_consume(&b, 6);
    cr_assert_str_eq(b.data, "world 42");
    buf_free(&b);
}

Test(buf, grows_past_many_pages)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < 100000; i++)
        buf_append(&b, "0123456789", 10);
    cr_assert_eq(b.len, 1000000);
    cr_assert_eq(b.data[b.len], '\0');
    cr_assert_eq(b.data[999999], '9');
    char *s = buf_steal(&b);
    cr_assert_null(b.data);
    free(s);
}

Test(buf, appends_binary_with_nul)
{
    struct buf b = BUF_INIT;
    buf_append(&b, "a\0b", 3);
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(b.data, "a\0b", 3), 0);
    buf_free(&b);
}

Test(str, prefix_suffix_case)
{
    cr_assert(str_starts_with("refs/heads/main", "refs/heads/"));
    cr_assert_not(str_starts_with("refs", "refs/heads/"));
    cr_assert(str_ends_with("action.yml", ".yml"));
    cr_assert_not(str_ends_with("yml", "action.yml"));
    cr_assert(str_eq_nocase("GITHUB_TOKEN", "github_token"));
    cr_assert(str_starts_with_nocase("Bearer x", "bearer "));
    char s[] = "  MiXeD \n";
    cr_assert_str_eq(str_lower(str_trim(s)), "mixed");
}

Test(str, split_keeps_empty_fields)
{
    size_t n;
    char **parts = str_split("a,,b,", ',', &n);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(parts[0], "a");
    cr_assert_str_eq(parts[1], "");
    cr_assert_str_eq(parts[2], "b");
    cr_assert_str_eq(parts[3], "");
    cr_assert_null(parts[4]);
    str_list_free(parts);
}

Test(str, replace_all)
{
    char *s = str_replace_all("a.b.c", ".", "::");
    cr_assert_str_eq(s, "a::b::c");
    free(s);
}
