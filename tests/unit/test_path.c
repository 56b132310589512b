#include "lib/path.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void expect_normal(const char *in, const char *out)
{
    char *n = path_normalize(in);
    cr_assert_str_eq(n, out, "normalize(%s)", in);
    free(n);
}

Test(path, normalize)
{
    expect_normal("a//b/./c/", "a/b/c");
    expect_normal("/a/b/../c", "/a/c");
    expect_normal("/../x", "/x");
    expect_normal("../x/../../y", "../../y");
    expect_normal("a/..", ".");
    expect_normal("", ".");
}

Test(path, join_inside_refuses_escapes)
{
    struct error err = {0};
    char *p = path_join_inside("/w/repo", "sub/../dir", &err);
    cr_assert_str_eq(p, "/w/repo/dir");
    free(p);
    p = path_join_inside("/w/repo/", ".", &err);
    cr_assert_str_eq(p, "/w/repo");
    free(p);
    cr_assert_null(path_join_inside("/w/repo", "../other", &err));
    cr_assert(strstr(err.message, "leaves /w/repo") != NULL);
    cr_assert_null(path_join_inside("/w/repo", "a/../../..", &err));
    cr_assert_null(path_join_inside("/w/repo", "/etc/passwd", &err));
    cr_assert(strstr(err.message, "absolute") != NULL);
}

Test(path, is_inside)
{
    cr_assert(path_is_inside("/w", "/w/x"));
    cr_assert(path_is_inside("/w", "/w"));
    cr_assert_not(path_is_inside("/w", "/wx"));
    cr_assert_not(path_is_inside("/w", "/w/../etc"));
}

Test(path, files_mkdir_write_read_remove)
{
    char dir[] = "/tmp/harrier-path-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct error err = {0};
    char *deep = path_join(dir, "a/b/c");
    cr_assert_eq(path_mkdir_all(deep, 0755, &err), 0, "%s", err.message);
    char *file = path_join(deep, "f.txt");
    cr_assert_eq(path_write_file_atomic(file, "data\n", 5, 0600, &err), 0);
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    size_t len;
    char *text = path_read_file(file, &len, &err);
    cr_assert_str_eq(text, "data\n");
    cr_assert_eq(len, 5);
    cr_assert_lt(path_mkdir_all(file, 0755, &err), 0);
    cr_assert_eq(path_remove_all(dir, &err), 0);
    cr_assert_neq(access(dir, F_OK), 0);
    cr_assert_eq(path_remove_all(dir, &err), 0);
    cr_assert_null(path_read_file(file, &len, &err));
    free(text);
    free(file);
    free(deep);
}

Test(path, write_file_truncates_and_sets_mode)
{
    char dir[] = "/tmp/harrier-path2-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct error err = {0};
    char *file = path_join(dir, "s.sh");
    cr_assert_eq(path_write_file(file, "long content\n", 13, 0700, &err), 0);
    cr_assert_eq(path_write_file(file, "x", 1, 0700, &err), 0);
    size_t len;
    char *text = path_read_file(file, &len, &err);
    cr_assert_str_eq(text, "x");
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    cr_assert(st.st_mode & S_IXUSR);
    cr_assert_lt(path_write_file("/nonexistent/dir/f", "x", 1, 0600, &err), 0);
    cr_assert(strstr(err.message, "/nonexistent/dir/f") != NULL);
    path_remove_all(dir, &err);
    free(text);
    free(file);
}
