#include "lib/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(error, set_returns_negative_code)
{
    struct error err = {0};
    cr_assert_eq(error_set(&err, ENOENT, "no %s", "file"), -ENOENT);
    cr_assert_eq(err.code, -ENOENT);
    cr_assert_str_eq(err.message, "no file");
    cr_assert_eq(error_set(&err, 0, "x"), -1);
    cr_assert_eq(error_set(NULL, -EIO, "ignored"), -EIO);
}

Test(error, location_formats_as_file_line_col)
{
    struct error err = {0};
    error_set_at(&err, EINVAL, ".github/workflows/ci.yml", 3, 7, "Unexpected value 'x'");
    char out[256];
    cr_assert_str_eq(error_format(&err, out, sizeof out),
                     ".github/workflows/ci.yml:3:7: Unexpected value 'x'");
    error_set_at(&err, EIO, "https://example.invalid/x", 0, 0, "HTTP 500");
    cr_assert_str_eq(error_format(&err, out, sizeof out), "https://example.invalid/x: HTTP 500");
}

Test(error, prefix_adds_context_and_keeps_code)
{
    struct error err = {0};
    error_set_errno(&err, ENOENT, "cannot open %s", "a.yml");
    cr_assert_str_eq(err.message, "cannot open a.yml: No such file or directory");
    cr_assert_eq(error_prefix(&err, "loading workflow"), -ENOENT);
    cr_assert_str_eq(err.message, "loading workflow: cannot open a.yml: No such file or directory");
}

Test(error, prefix_truncates_instead_of_overflowing)
{
    struct error err = {0};
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    error_set(&err, EINVAL, "%s", big);
    error_prefix(&err, "%s", big);
    cr_assert_eq(strlen(err.message), ERROR_MESSAGE_MAX - 1);
}
