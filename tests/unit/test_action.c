#include "actions/action.h"

#include "lib/http.h"
#include "lib/path.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

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

Test(action_cache, tarball_url_pattern_and_versions_cannot_leave_the_cache)
{
    char *url = action_tarball_url("http://h/{owner}/{repo}/t/{ref}.tgz", "octo", "tool", "v1");
    cr_assert_str_eq(url, "http://h/octo/tool/t/v1.tgz");
    free(url);
    struct error err = {0};
    char *dir = action_cache_dir("/cache", "octo", "tool", "0123abc", &err);
    cr_assert_str_eq(dir, "/cache/octo/tool/0123abc");
    free(dir);
    cr_assert_null(action_cache_dir("/cache", "octo", "tool", "../../../../etc", &err));
}

/* The fetch against tests/helpers/http_server.py: /store keeps a tarball, /stored serves it
 * (after failing N times when asked), /hits counts. */

static pid_t server_pid;

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
}

static int start_server(void)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    server_pid = fork();
    cr_assert_geq(server_pid, 0);
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDOUT_FILENO);
        execl("/usr/bin/python3", "python3", "tests/helpers/http_server.py", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[64] = "";
    size_t len = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (len < sizeof line - 1 && !strchr(line, '\n')) {
        cr_assert_gt(poll(&pfd, 1, 30000), 0, "the test server did not start");
        ssize_t n = read(fds[0], line + len, sizeof line - 1 - len);
        cr_assert_gt(n, 0);
        len += (size_t)n;
        line[len] = '\0';
    }
    close(fds[0]);
    int port = 0;
    cr_assert_eq(sscanf(line, "PORT %d", &port), 1);
    return port;
}

static void store(int port, const char *key, const void *data, size_t len)
{
    char *url = xasprintf("http://127.0.0.1:%d/store?key=%s", port, key);
    struct http_request_options o = {.method = "PUT", .url = url, .body = data, .body_len = len};
    struct http_response resp = {0};
    struct error err = {0};
    cr_assert_eq(http_request_sync(&o, &resp, &err), 0, "%s", err.message);
    http_response_free(&resp);
    free(url);
}

static int hits(int port, const char *key)
{
    char *url = xasprintf("http://127.0.0.1:%d/hits?key=stored:%s", port, key);
    struct http_request_options o = {.url = url};
    struct http_response resp = {0};
    struct error err = {0};
    cr_assert_eq(http_request_sync(&o, &resp, &err), 0);
    json_t *j = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    int count = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    http_response_free(&resp);
    free(url);
    return count;
}

struct fetch_result {
    bool done;
    int rc;
    struct error err;
    char *dir;
    bool downloaded;
    int notes;
    char last_note[512];
};

static void on_note(const char *line, void *user)
{
    struct fetch_result *r = user;
    r->notes++;
    snprintf(r->last_note, sizeof r->last_note, "%s", line);
}

static void on_done(int rc, const struct error *err, const char *dir, bool downloaded, void *user)
{
    struct fetch_result *r = user;
    r->done = true;
    r->rc = rc;
    if (err)
        r->err = *err;
    r->dir = dir ? xstrdup(dir) : NULL;
    r->downloaded = downloaded;
}

/* Fetches url into cache/octo/tool/<version> on a fresh loop; cancel_after_ms > 0 cancels. */
static struct fetch_result fetch(const char *cache, const char *version, const char *url,
                                 int attempts, unsigned cancel_after_ms)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct http_client *http = http_client_new(&loop);
    struct fetch_result r = {0};
    struct action_fetch_options o = {
        .cache_dir = cache,
        .owner = "octo",
        .repo = "tool",
        .version = version,
        .url = url,
        .authorization = "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dA==",
        .attempts = attempts,
        .backoff_min_ms = 50,
        .backoff_max_ms = 100,
        .on_note = on_note,
        .on_done = on_done,
        .user = &r,
    };
    struct error err = {0};
    struct action_fetch *f = action_fetch_start(&loop, http, &o, &err);
    cr_assert_not_null(f, "%s", err.message);
    cr_assert(!r.done, "on_done must not run inside action_fetch_start");
    uint64_t start = uv_now(&loop);
    bool cancelled = false;
    while (!r.done) {
        uv_run(&loop, UV_RUN_ONCE);
        uv_update_time(&loop);
        if (cancel_after_ms && !cancelled && uv_now(&loop) - start >= cancel_after_ms) {
            action_fetch_cancel(f);
            cancelled = true;
        }
        if (cancel_after_ms && !cancelled) /* keep turning while the request hangs */
            uv_sleep(10);
    }
    http_client_free(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle was left open");
    return r;
}

// cppcheck-suppress unknownMacro
TestSuite(action_fetch, .fini = stop_server, .timeout = 60);

Test(action_fetch, downloads_extracts_and_renames_into_place)
{
    int port = start_server();
    struct entry entries[] = {
        {"octo-tool-abc/", NULL, NULL},
        {"octo-tool-abc/action.yml", "runs: {using: node20, main: a.js}\n", NULL}};
    size_t len;
    void *data = make_tarball(entries, 2, &len);
    store(port, "good", data, len);
    char *cache = temp_dir();
    char *url = xasprintf("http://127.0.0.1:%d/stored?key=good", port);
    struct fetch_result r = fetch(cache, "0123abc", url, 3, 0);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert(r.downloaded);
    char *want = path_join(cache, "octo/tool/0123abc");
    cr_assert_str_eq(r.dir, want);
    char *yml = path_join(want, "action.yml");
    cr_assert_eq(access(yml, R_OK), 0);
    /* A second fetch of the same version finds it in place: no copy, no temporary left. */
    struct fetch_result again = fetch(cache, "0123abc", url, 3, 0);
    cr_assert_eq(again.rc, 0, "%s", again.err.message);
    cr_assert(!again.downloaded);
    char *parent = path_join(cache, "octo/tool");
    DIR *d = opendir(parent);
    int entries_seen = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            entries_seen++;
    closedir(d);
    cr_assert_eq(entries_seen, 1, "a temporary folder was left behind");
    free(parent);
    free(yml);
    free(want);
    free(r.dir);
    free(again.dir);
    free(url);
    free(data);
    remove_dir(cache);
}

Test(action_fetch, a_500_is_tried_again_after_a_note)
{
    int port = start_server();
    struct entry entries[] = {{"top/", NULL, NULL}, {"top/action.yml", "name: x\n", NULL}};
    size_t len;
    void *data = make_tarball(entries, 2, &len);
    store(port, "flaky", data, len);
    char *cache = temp_dir();
    char *url = xasprintf("http://127.0.0.1:%d/stored?key=flaky&fail=1&code=500", port);
    struct fetch_result r = fetch(cache, "v1", url, 3, 0);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(hits(port, "flaky"), 2);
    cr_assert_eq(r.notes, 2, "a warning for the failure and one for the back-off");
    cr_assert(strstr(r.last_note, "Back off "), "%s", r.last_note);
    free(r.dir);
    free(url);
    free(data);
    remove_dir(cache);
}

Test(action_fetch, not_found_and_forbidden_are_not_tried_again)
{
    int port = start_server();
    char *cache = temp_dir();
    char *url = xasprintf("http://127.0.0.1:%d/stored?key=absent", port);
    struct fetch_result r = fetch(cache, "v1", url, 3, 0);
    cr_assert_lt(r.rc, 0);
    cr_assert(strstr(r.err.message, "An action could not be found at the URI"), "%s",
              r.err.message);
    cr_assert_eq(hits(port, "absent"), 1);
    free(url);
    url = xasprintf("http://127.0.0.1:%d/stored?key=denied&fail=9&code=403", port);
    r = fetch(cache, "v1", url, 3, 0);
    cr_assert(strstr(r.err.message, "Access denied to"), "%s", r.err.message);
    cr_assert_eq(hits(port, "denied"), 1);
    free(url);
    url = xasprintf("http://127.0.0.1:%d/stored?key=down&fail=9&code=503", port);
    r = fetch(cache, "v1", url, 3, 0);
    cr_assert(strstr(r.err.message, "after 3 attempts"), "%s", r.err.message);
    cr_assert_eq(hits(port, "down"), 3);
    free(url);
    remove_dir(cache);
}

Test(action_fetch, a_damaged_archive_leaves_nothing_behind)
{
    int port = start_server();
    const char junk[] = "\x1f\x8b\x08\x00 not gzip at all";
    store(port, "junk", junk, sizeof junk);
    char *cache = temp_dir();
    char *url = xasprintf("http://127.0.0.1:%d/stored?key=junk", port);
    struct fetch_result r = fetch(cache, "v1", url, 3, 0);
    cr_assert_lt(r.rc, 0);
    cr_assert(strstr(r.err.message, "octo/tool@v1") && strstr(r.err.message, "archive"), "%s",
              r.err.message);
    char *parent = path_join(cache, "octo/tool");
    DIR *d = opendir(parent);
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            cr_assert(e->d_name[0] == '.', "left behind: %s", e->d_name);
        closedir(d);
    }
    free(parent);
    free(url);
    remove_dir(cache);
}

Test(action_fetch, cancel_ends_a_hanging_download)
{
    int port = start_server();
    char *cache = temp_dir();
    char *url = xasprintf("http://127.0.0.1:%d/sleep?s=20", port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct fetch_result r = fetch(cache, "v1", url, 3, 200);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_eq(r.rc, -ECANCELED, "%d %s", r.rc, r.err.message);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 5);
    free(url);
    remove_dir(cache);
}
