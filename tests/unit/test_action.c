#include "actions/action.h"

#include "lib/path.h"

#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- references ---------------------------------------------------------------------- */

Test(action_reference, forms)
{
    struct action_reference r;
    struct error err = {0};
    cr_assert_eq(action_reference_parse("actions/checkout@v4", &r, &err), 0);
    cr_assert_eq(r.kind, ACTION_REFERENCE_REPOSITORY);
    cr_assert_str_eq(r.owner, "actions");
    cr_assert_str_eq(r.repo, "checkout");
    cr_assert_str_eq(r.path, "");
    cr_assert_str_eq(r.ref, "v4");
    action_reference_clear(&r);

    cr_assert_eq(action_reference_parse("octo/tools/lint/js@refs/heads/main", &r, &err), 0);
    cr_assert_str_eq(r.repo, "tools");
    cr_assert_str_eq(r.path, "lint/js");
    cr_assert_str_eq(r.ref, "refs/heads/main");
    action_reference_clear(&r);

    cr_assert_eq(action_reference_parse("./.github/actions/x", &r, &err), 0);
    cr_assert_eq(r.kind, ACTION_REFERENCE_LOCAL);
    cr_assert_str_eq(r.local_path, "./.github/actions/x");
    action_reference_clear(&r);

    cr_assert_eq(action_reference_parse("docker://alpine:3.20", &r, &err), 0);
    cr_assert_eq(r.kind, ACTION_REFERENCE_DOCKER);
    cr_assert_str_eq(r.image, "alpine:3.20");
    action_reference_clear(&r);
}

Test(action_reference, refuses_what_github_refuses)
{
    const char *bad[] = {"checkout@v4", "actions/checkout", "/checkout@v4", "a/@v1", "a/b@", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct action_reference r;
        struct error err = {0};
        cr_assert_lt(action_reference_parse(bad[i], &r, &err), 0, "%s", bad[i]);
        cr_assert(strstr(err.message, "{owner}/{repo}") || strstr(err.message, "empty"), "%s",
                  err.message);
    }
}

/* ---- action.yml ------------------------------------------------------------------------ */

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/test_action_XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char *path = path_join(dir, name);
    struct error err = {0};
    cr_assert_eq(path_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
    free(path);
}

static void remove_dir(char *dir)
{
    struct error err = {0};
    path_remove_all(dir, &err);
    free(dir);
}

Test(action_load, node_action_model)
{
    char *dir = temp_dir();
    write_file(dir, "action.yml",
               "name: hello\n"
               "inputs:\n"
               "  who: {required: true}\n"
               "  token: {default: '${{ github.token }}', deprecationMessage: old}\n"
               "outputs:\n"
               "  greeting: {description: g}\n"
               "runs:\n"
               "  using: node24\n"
               "  main: dist/index.js\n"
               "  post: dist/post.js\n"
               "  post-if: success()\n");
    struct action *a = NULL;
    struct error err = {0};
    cr_assert_eq(action_load(dir, &a, &err), 0, "%s", err.message);
    cr_assert_eq(a->kind, ACTION_NODE);
    cr_assert_eq(a->node_version, 24);
    cr_assert_str_eq(a->main, "dist/index.js");
    cr_assert_str_eq(a->post, "dist/post.js");
    cr_assert_null(a->pre);
    cr_assert_not_null(a->post_if);
    cr_assert_eq(a->input_count, 2);
    cr_assert_str_eq(a->inputs[0].name, "who");
    cr_assert(a->inputs[0].required);
    cr_assert_null(a->inputs[0].default_value);
    cr_assert_eq(a->inputs[1].default_value->type, TOKEN_EXPRESSION);
    cr_assert_str_eq(a->inputs[1].default_value->u.expression, "github.token");
    cr_assert_str_eq(a->inputs[1].deprecation_message, "old");
    cr_assert_eq(a->output_count, 1);
    action_free(a);
    remove_dir(dir);
}

Test(action_load, composite_and_yaml_extension)
{
    char *dir = temp_dir();
    write_file(dir, "action.yaml",
               "name: c\n"
               "outputs:\n"
               "  x: {value: '${{ steps.a.outputs.x }}'}\n"
               "runs:\n"
               "  using: composite\n"
               "  steps:\n"
               "    - id: a\n"
               "      shell: bash\n"
               "      run: echo x=1 >> $GITHUB_OUTPUT\n");
    struct action *a = NULL;
    struct error err = {0};
    cr_assert_eq(action_load(dir, &a, &err), 0, "%s", err.message);
    cr_assert_eq(a->kind, ACTION_COMPOSITE);
    cr_assert_eq(a->steps->type, TOKEN_SEQUENCE);
    cr_assert_eq(a->steps->u.sequence.count, 1);
    cr_assert_eq(a->outputs[0].value->type, TOKEN_EXPRESSION);
    action_free(a);
    remove_dir(dir);
}

Test(action_load, errors_name_the_problem)
{
    char *dir = temp_dir();
    struct action *a = NULL;
    struct error err = {0};
    cr_assert_lt(action_load(dir, &a, &err), 0);
    cr_assert(strstr(err.message, "Can't find 'action.yml', 'action.yaml' or 'Dockerfile'"), "%s",
              err.message);
    write_file(dir, "action.yml", "runs:\n  using: node8\n  main: x.js\n");
    error_clear(&err);
    cr_assert_lt(action_load(dir, &a, &err), 0);
    cr_assert(strstr(err.message, "'using: node8' is not supported"), "%s", err.message);
    write_file(dir, "action.yml", "runs:\n  using: node20\n");
    error_clear(&err);
    cr_assert_lt(action_load(dir, &a, &err), 0);
    cr_assert(strstr(err.message, "main"), "%s", err.message);
    remove_dir(dir);
}

/* ---- archives ------------------------------------------------------------------------- */

struct entry {
    const char *name;
    const char *text;    /* a file, or NULL */
    const char *symlink; /* a link's target, or NULL */
};

static void *make_tarball(const struct entry *entries, size_t n, size_t *len)
{
    size_t cap = 1 << 20;
    void *data = malloc(cap);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
    cr_assert_eq(archive_write_open_memory(a, data, cap, len), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, entries[i].name);
        if (entries[i].symlink) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, entries[i].symlink);
            archive_entry_set_perm(e, 0777);
        } else if (entries[i].text) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_size(e, (la_int64_t)strlen(entries[i].text));
        } else {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
        }
        archive_write_header(a, e);
        if (entries[i].text)
            archive_write_data(a, entries[i].text, strlen(entries[i].text));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return data;
}

Test(action_archive, strips_the_top_folder)
{
    struct entry entries[] = {{"octo-x-abc/", NULL, NULL},
                              {"octo-x-abc/action.yml", "runs: {using: composite}\n", NULL},
                              {"octo-x-abc/lib/a.js", "1", NULL},
                              {"octo-x-abc/link", NULL, "lib/a.js"}};
    size_t len;
    void *data = make_tarball(entries, 4, &len);
    char *parent = temp_dir();
    char *dir = path_join(parent, "v1");
    struct error err = {0};
    cr_assert_eq(action_archive_extract(data, len, dir, &err), 0, "%s", err.message);
    char *file = path_join(dir, "lib/a.js");
    cr_assert_eq(access(file, R_OK), 0);
    char *link = path_join(dir, "link");
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_assert(S_ISLNK(st.st_mode));
    free(file);
    free(link);
    free(dir);
    free(data);
    remove_dir(parent);
}

static void expect_refused(const struct entry *entries, size_t n, const char *words)
{
    size_t len;
    void *data = make_tarball(entries, n, &len);
    char *parent = temp_dir();
    char *dir = path_join(parent, "a/b/v1");
    struct error err = {0};
    cr_assert_lt(action_archive_extract(data, len, dir, &err), 0);
    cr_assert(strstr(err.message, words), "%s", err.message);
    char *escaped = path_join(parent, "a/escaped");
    cr_assert_neq(access(escaped, F_OK), 0, "an entry was written outside");
    free(escaped);
    free(dir);
    free(data);
    remove_dir(parent);
}

Test(action_archive, refuses_escapes)
{
    struct entry dotdot[] = {{"top/", NULL, NULL}, {"top/../../escaped", "x", NULL}};
    expect_refused(dotdot, 2, "points outside");
    struct entry absolute[] = {{"/tmp/escaped-abs", "x", NULL}};
    expect_refused(absolute, 1, "absolute");
    struct entry link[] = {{"top/", NULL, NULL}, {"top/l", NULL, "../../escaped"}};
    expect_refused(link, 2, "points outside");
    struct entry abs_link[] = {{"top/", NULL, NULL}, {"top/l", NULL, "/etc"}};
    expect_refused(abs_link, 2, "points outside");
}

Test(action_archive, refuses_damaged_data)
{
    char *parent = temp_dir();
    char *dir = path_join(parent, "v1");
    struct error err = {0};
    const char junk[] = "\x1f\x8b\x08\x00 not gzip at all";
    cr_assert_lt(action_archive_extract(junk, sizeof junk, dir, &err), 0);
    cr_assert(strstr(err.message, "archive"), "%s", err.message);
    free(dir);
    remove_dir(parent);
}

/* ---- the cache ------------------------------------------------------------------------ */

Test(action_cache, offline_names_the_missing_action)
{
    char *cache = temp_dir();
    struct action_cache_options o = {.cache_dir = cache, .offline = true};
    char *dir = NULL;
    bool downloaded;
    struct error err = {0};
    cr_assert_lt(action_cache_get(&o, "octo", "tool", "v1", &dir, &downloaded, &err), 0);
    cr_assert(strstr(err.message, "octo/tool@v1 is not in the action cache"), "%s", err.message);
    char *have = path_join(cache, "octo/tool/v1");
    struct error ignored = {0};
    cr_assert_eq(path_mkdir_all(have, 0755, &ignored), 0);
    cr_assert_eq(action_cache_get(&o, "octo", "tool", "v1", &dir, &downloaded, &err), 0);
    cr_assert_str_eq(dir, have);
    cr_assert(!downloaded);
    free(dir);
    free(have);
    remove_dir(cache);
}

Test(action_cache, refs_cannot_leave_the_cache)
{
    char *cache = temp_dir();
    struct action_cache_options o = {.cache_dir = cache, .offline = true};
    char *dir = NULL;
    bool downloaded;
    struct error err = {0};
    cr_assert_lt(action_cache_get(&o, "octo", "tool", "../../../../etc", &dir, &downloaded, &err),
                 0);
    cr_assert_null(dir);
    remove_dir(cache);
}
