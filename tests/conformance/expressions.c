/* Conformance driver for workflow/expr: runs the expression corpora in
 * $HARRIER_CONFORMANCE_DIR (default ../shared/conformance) and prints one
 * "<corpus>: N passed, N failed[, N skipped]" line per corpus, failures listed above it.
 *   actions-languageservices/expressions/testdata/<file>.json GitHub's x-lang expression tests
 *   actions-runner/expression-parser.json                   named-value checks of the parser
 *   actions-runner/status-functions.json                    success()/failure()/... semantics
 *   nektos-act/expressions.json                             act's expression tests
 * Where act and GitHub disagree (cases with reference_differs) GitHub's answer is expected. */
#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "workflow/expr.h"
#include "workflow/status.h"

#include <dirent.h>
#include <fnmatch.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct tally {
    const char *corpus;
    int passed, failed, skipped;
};

static void tally_fail(struct tally *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tally_fail(struct tally *t, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s/%s: ", t->corpus, key);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    t->failed++;
}

static void tally_print(const struct tally *t)
{
    if (t->skipped)
        printf("%s: %d passed, %d failed, %d skipped\n", t->corpus, t->passed, t->failed,
               t->skipped);
    else
        printf("%s: %d passed, %d failed\n", t->corpus, t->passed, t->failed);
}

static json_t *load(const char *dir, const char *rel, struct tally *t)
{
    cleanup_free char *path = path_join(dir, rel);
    struct error err = {0};
    json_t *j = json_load_path(path, &err);
    if (!j) {
        printf("%s: %s absent (%s), skipped\n", t->corpus, path, err.message);
        t->skipped++;
    }
    return j;
}

static const char *const KIND_NAMES[] = {"Null", "Boolean", "Number", "String", "Array", "Object"};
static const char *const STAGE_NAMES[] = {"none", "lexing", "parsing", "evaluation"};

/* ---- hashFiles for act's cases ------------------------------------------------------------
 * The runner owns hashFiles (it reads the workspace); this is the driver's stand-in so the
 * expression cases that call it run: @actions/glob patterns (a match on a folder takes its
 * files, "!" excludes), hashed as GitHub does (SHA-256 over each file's SHA-256 digest). It
 * records the files it matched: act hashes their concatenated contents instead, so the
 * driver checks the matched set against act's value with act's formula. */
struct hash_host {
    const char *workdir;
    char **files;
    size_t count;
};

/* The runner's status functions: job.status (null = success), or in a composite action's
 * main step github.action_status. cancelled() looks at the job only. */
struct status_host {
    struct status_source source; /* first: the host is this struct */
    const char *job_status;
    bool composite;
    const char *action_status;
};

struct driver_host {
    struct status_host status;
    struct hash_host hash;
};

static bool glob_segments_match(char **pat, size_t np, char **path, size_t nq)
{
    if (np == 0)
        return nq == 0;
    if (strcmp(pat[0], "**") == 0) {
        for (size_t skip = 0; skip <= nq; skip++)
            if (glob_segments_match(pat + 1, np - 1, path + skip, nq - skip))
                return true;
        return false;
    }
    if (nq == 0 || fnmatch(pat[0], path[0], 0) != 0)
        return false;
    return glob_segments_match(pat + 1, np - 1, path + 1, nq - 1);
}

/* True when the pattern matches path or one of its parent folders (implicit descendants). */
static bool glob_match(const char *pattern, const char *path)
{
    while (strncmp(pattern, "./", 2) == 0)
        pattern += 2;
    size_t np, nq;
    char **pat = str_split(pattern, '/', &np);
    char **segs = str_split(path, '/', &nq);
    bool match = false;
    for (size_t prefix = 1; prefix <= nq && !match; prefix++)
        match = glob_segments_match(pat, np, segs, prefix);
    str_list_free(pat);
    str_list_free(segs);
    return match;
}

static void list_files(const char *root, const char *rel, char ***files, size_t *count)
{
    cleanup_free char *dir = rel[0] ? path_join(root, rel) : xstrdup(root);
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        if (strcmp(name, ".") && strcmp(name, "..")) {
            cleanup_free char *child = rel[0] ? xasprintf("%s/%s", rel, name) : xstrdup(name);
            cleanup_free char *full = path_join(root, child);
            struct stat st;
            if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
                list_files(root, child, files, count);
            } else {
                *files = xrealloc(*files, (*count + 1) * sizeof **files);
                (*files)[(*count)++] = steal_pointer(&child);
            }
        }
        free(entries[i]);
    }
    free(entries);
}

static int hash_files_call(void *host, const struct expr_value *args, size_t nargs,
                           struct expr_value *out, struct error *err)
{
    struct hash_host *h = &((struct driver_host *)host)->hash;
    char **all = NULL;
    size_t count = 0;
    list_files(h->workdir, "", &all, &count);
    struct codec_sha256_ctx *total = codec_sha256_new();
    bool any = false;
    for (size_t i = 0; i < count; i++) {
        bool included = false;
        for (size_t a = 0; a < nargs; a++) {
            const char *p = args[a].string ? args[a].string : "";
            if (p[0] == '!')
                included = included && !glob_match(p + 1, all[i]);
            else
                included = included || glob_match(p, all[i]);
        }
        if (!included)
            continue;
        cleanup_free char *full = path_join(h->workdir, all[i]);
        size_t len;
        cleanup_free char *data = path_read_file(full, &len, err);
        if (!data) {
            codec_sha256_finish(total, (uint8_t[SHA256_DIGEST_BYTES]){0});
            str_list_free(all);
            return -1;
        }
        uint8_t digest[SHA256_DIGEST_BYTES];
        codec_sha256(data, len, digest);
        codec_sha256_update(total, digest, sizeof digest);
        h->files = xrealloc(h->files, (h->count + 1) * sizeof *h->files);
        h->files[h->count++] = xstrdup(all[i]);
        any = true;
    }
    uint8_t digest[SHA256_DIGEST_BYTES];
    codec_sha256_finish(total, digest);
    for (size_t i = 0; i < count; i++)
        free(all[i]);
    free(all);
    out->kind = EXPR_STRING;
    out->string = any ? codec_hex_encode(digest, sizeof digest) : xstrdup("");
    return 0;
}

static char *act_hash(const struct hash_host *h)
{
    if (h->count == 0)
        return xstrdup("");
    struct buf all = BUF_INIT;
    for (size_t i = 0; i < h->count; i++) {
        cleanup_free char *full = path_join(h->workdir, h->files[i]);
        size_t len;
        struct error err;
        cleanup_free char *data = path_read_file(full, &len, &err);
        if (data)
            buf_append(&all, data, len);
    }
    char *hex = codec_sha256_hex(buf_cstr(&all), all.len);
    buf_free(&all);
    return hex;
}

static struct expr_function ACT_FUNCTIONS[6];
static void case_status_now(const struct status_source *source, struct status_now *now);

/* ---- the x-lang case shape ------------------------------------------------------------- */

static bool number_matches(double got, const json_t *want)
{
    if (json_is_string(want)) {
        const char *s = json_string_value(want);
        if (strcmp(s, "NaN") == 0)
            return isnan(got);
        if (strcmp(s, "Infinity") == 0)
            return isinf(got) && got > 0;
        if (strcmp(s, "-Infinity") == 0)
            return isinf(got) && got < 0;
        return false;
    }
    return json_is_number(want) && json_number_value(want) == got;
}

/* Runs one case; returns NULL when it passes, else why (caller frees). */
static char *xlang_case(json_t *c, const char *conformance_dir, bool act)
{
    const char *text = json_get_string(c, "expr");
    json_t *contexts = json_get(c, "contexts");
    json_t *result = json_get(c, "result");
    json_t *want_err = json_get(c, "err");
    json_t *differs = json_get(c, "reference_differs");
    if (differs && json_get(differs, "got")) {
        result = json_get(differs, "got"); /* GitHub's answer where act's differs */
        want_err = NULL;
    }
    if (!text)
        return xstrdup("case has no expr");

    size_t nnames = json_is_object(contexts) ? json_object_size(contexts) : 0;
    const char **names = xcalloc(nnames + 1, sizeof *names);
    const char *k;
    json_t *v;
    size_t i = 0;
    if (json_is_object(contexts))
        json_object_foreach(contexts, k, v) names[i++] = k;

    struct driver_host dh = {
        {{case_status_now}, json_get_string(json_get(contexts, "job"), "status"), false, NULL},
        {0}};
    struct hash_host *hh = &dh.hash;
    const char *wd = json_get_string(c, "working_directory");
    /* hashFiles runs in the case's folder; cases without one match nothing there either. */
    cleanup_free char *base = path_join(conformance_dir, "nektos-act");
    cleanup_free char *workdir = path_join(base, wd ? wd : "exprparser-hashfiles");
    hh->workdir = workdir;
    struct expr_parse_options options = {names, act ? ACT_FUNCTIONS : NULL};
    json_t *empty = json_object();
    struct expr_context ctx = {json_is_object(contexts) ? contexts : empty, options.functions, &dh,
                               0};
    struct expr_value out = {0};
    enum expr_stage stage = EXPR_STAGE_NONE;
    struct error err = {0};
    int rc = expr_evaluate_text(text, &options, &ctx, &out, &stage, &err);
    free(names);
    json_decref(empty);

    char *why = NULL;
    if (want_err) {
        const char *kind = json_get_string(want_err, "kind");
        const char *value = json_get_string(want_err, "value");
        if (rc == 0) {
            cleanup_free char *got = expr_value_to_string(&out);
            why = xasprintf("expected a %s error, got %s '%s'", kind, KIND_NAMES[out.kind], got);
        } else if (kind && strcmp(kind, STAGE_NAMES[stage]) != 0) {
            why = xasprintf("expected a %s error, got a %s error: %s", kind, STAGE_NAMES[stage],
                            err.message);
        } else if (!act && value) {
            /* GitHub's full text: the message, then where it is. */
            cleanup_free char *full =
                strstr(err.message, "Located at position")
                    ? xstrdup(err.message)
                    : xasprintf("%s. Located within expression: %s", err.message, text);
            if (!strstr(full, value))
                why = xasprintf("error text '%s' does not contain '%s'", full, value);
        }
    } else if (rc < 0) {
        why = xasprintf("unexpected %s error: %s", STAGE_NAMES[stage], err.message);
    } else {
        const char *kind = json_get_string(result, "kind");
        json_t *want = json_get(result, "value");
        json_t *got = expr_value_to_json(&out);
        if (!kind || strcmp(kind, KIND_NAMES[out.kind]) != 0) {
            cleanup_free char *g = json_dump_compact(got);
            why = xasprintf("expected kind %s, got %s %s", kind ? kind : "?", KIND_NAMES[out.kind],
                            g);
        } else if (wd && json_is_string(want) && json_string_length(want) > 0) {
            /* act's value is its own hash (SHA-256 of the concatenated files): check GitHub's
             * result is a SHA-256 and that the files matched are act's, by act's formula. */
            cleanup_free char *acts = act_hash(hh);
            if (strlen(out.string) != 64)
                why = xasprintf("hashFiles returned '%s', not a SHA-256", out.string);
            else if (strcmp(acts, json_string_value(want)) != 0)
                why = xasprintf("matched files differ from act's (act-style hash %s)", acts);
        } else if (out.kind == EXPR_NUMBER ? !number_matches(out.number, want)
                                           : !json_equal_nocase(got, want)) {
            cleanup_free char *g = json_dump_compact(got);
            cleanup_free char *w = json_dump_compact(want);
            why = xasprintf("expected %s, got %s", w, g);
        }
        json_decref(got);
    }
    for (size_t f = 0; f < hh->count; f++)
        free(hh->files[f]);
    free(hh->files);
    expr_value_clear(&out);
    return why;
}

static void run_xlang_file(struct tally *t, json_t *groups, const char *file, const char *dir,
                           bool act)
{
    const char *group;
    json_t *cases;
    json_object_foreach(groups, group, cases)
    {
        if (!json_is_array(cases))
            continue;
        size_t i;
        json_t *c;
        json_array_foreach(cases, i, c)
        {
            cleanup_free char *key = xasprintf("%s/%s/%zu", file, group, i);
            cleanup_free char *why = xlang_case(c, dir, act);
            if (why)
                tally_fail(t, key, "%s (expr: %s)", why, json_get_string(c, "expr"));
            else
                t->passed++;
        }
    }
}

static void run_languageservices(const char *dir)
{
    struct tally t = {"actions-languageservices/expressions", 0, 0, 0};
    cleanup_free char *pattern =
        xasprintf("%s/actions-languageservices/expressions/testdata/*.json", dir);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        printf("%s: no files match %s, skipped\n", t.corpus, pattern);
        t.skipped++;
        tally_print(&t);
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct error err = {0};
        json_t *groups = json_load_path(g.gl_pathv[i], &err);
        if (!groups) {
            tally_fail(&t, g.gl_pathv[i], "cannot read: %s", err.message);
            continue;
        }
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;
        cleanup_free char *name = xstrndup(base, strlen(base) - 5);
        run_xlang_file(&t, groups, name, dir, false);
        json_decref(groups);
    }
    globfree(&g);
    tally_print(&t);
}

static void run_act(const char *dir)
{
    struct tally t = {"nektos-act/expressions", 0, 0, 0};
    json_t *groups = load(dir, "nektos-act/expressions.json", &t);
    if (groups) {
        json_object_del(groups, "_about");
        run_xlang_file(&t, groups, "expressions", dir, true);
        json_decref(groups);
    }
    tally_print(&t);

    /* runner-expressions.json: the groups that are bare expressions over job contexts. The
     * others exercise ${{ }} interpolation in templates and the if: status-check rule, which
     * the template and step drivers own (TestRewriteSubExpression* is act-internal). */
    struct tally r = {"nektos-act/runner-expressions", 0, 0, 0};
    json_t *doc = load(dir, "nektos-act/runner-expressions.json", &r);
    json_t *only = json_object();
    static const char *const groups_run[] = {"TestEvaluateRunContext", "TestEvaluateStep"};
    for (size_t i = 0; doc && i < 2; i++)
        if (json_get(doc, groups_run[i]))
            json_object_set(only, groups_run[i], json_get(doc, groups_run[i]));
    run_xlang_file(&r, only, "runner-expressions", dir, true);
    json_decref(only);
    json_decref(doc);
    tally_print(&r);
}

/* ---- actions-runner ------------------------------------------------------------------- */

static void run_runner_parser(const char *dir)
{
    struct tally t = {"actions-runner/expression-parser", 0, 0, 0};
    json_t *doc = load(dir, "actions-runner/expression-parser.json", &t);
    size_t i;
    json_t *c;
    json_array_foreach(json_get(doc, "cases"), i, c)
    {
        const char *id = json_get_string(c, "id");
        json_t *allowed = json_get(c, "allowed_named_values");
        const char **names = xcalloc(json_array_size(allowed) + 1, sizeof *names);
        for (size_t n = 0; n < json_array_size(allowed); n++)
            names[n] = json_string_value(json_array_get(allowed, n));
        struct expr_parse_options options = {names, NULL};
        struct expr *e = NULL;
        struct error err = {0};
        int rc = expr_parse(json_get_string(c, "expression"), &options, &e, NULL, &err);
        expr_free(e);
        free(names);
        bool want_error = json_is_true(json_get(json_get(c, "expect"), "parse_error"));
        const char *contains = json_get_string(json_get(c, "expect"), "message_contains");
        if ((rc < 0) != want_error)
            tally_fail(&t, id, "parse %s, expected %s (%s)", rc < 0 ? "failed" : "succeeded",
                       want_error ? "an error" : "success", err.message);
        else if (want_error && contains && !strstr(err.message, contains))
            tally_fail(&t, id, "message '%s' lacks '%s'", err.message, contains);
        else
            t.passed++;
    }
    json_decref(doc);
    tally_print(&t);
}

/* The case's job (or, in a composite's main step, action) status for workflow/status.h. */
static void case_status_now(const struct status_source *source, struct status_now *now)
{
    const struct status_host *h = (const struct status_host *)source;
    const char *s = h->composite ? h->action_status : h->job_status;
    s = s ? s : "success";
    now->succeeded = strcmp(s, "success") == 0;
    now->failed = strcmp(s, "failure") == 0;
    now->cancelled = h->job_status && strcmp(h->job_status, "cancelled") == 0;
}

/* act's evaluator has the status functions and hashFiles: workflow/status.h's table and one
 * more entry, filled in main. */
static struct expr_function ACT_FUNCTIONS[6];

static void act_functions_init(void)
{
    size_t n = 0;
    while (status_functions[n].name)
        n++;
    memcpy(ACT_FUNCTIONS, status_functions, n * sizeof *ACT_FUNCTIONS);
    ACT_FUNCTIONS[n] = (struct expr_function){"hashFiles", 1, 255, hash_files_call};
}

static void run_status(const char *dir)
{
    struct tally t = {"actions-runner/status-functions", 0, 0, 0};
    json_t *doc = load(dir, "actions-runner/status-functions.json", &t);
    size_t i;
    json_t *c;
    json_array_foreach(json_get(doc, "cases"), i, c)
    {
        const char *id = json_get_string(c, "id");
        struct driver_host host = {{{case_status_now},
                                    json_get_string(c, "job_status"),
                                    json_is_true(json_get(c, "composite_main_step")),
                                    json_get_string(c, "action_status")},
                                   {0}};
        static const char *const none[] = {NULL};
        struct expr_parse_options options = {none, status_functions};
        struct expr_context ctx = {NULL, status_functions, &host, 0};
        struct expr_value out = {0};
        struct error err = {0};
        int rc =
            expr_evaluate_text(json_get_string(c, "expression"), &options, &ctx, &out, NULL, &err);
        bool want = json_is_true(json_get(c, "expected"));
        if (rc < 0)
            tally_fail(&t, id, "error: %s", err.message);
        else if (expr_value_truthy(&out) != want)
            tally_fail(&t, id, "got %s, expected %s", expr_value_truthy(&out) ? "true" : "false",
                       want ? "true" : "false");
        else
            t.passed++;
        expr_value_clear(&out);
    }
    json_decref(doc);
    tally_print(&t);
}

int main(void)
{
    act_functions_init();
    const char *dir = getenv("HARRIER_CONFORMANCE_DIR");
    if (!dir || !*dir)
        dir = "../shared/conformance";
    run_languageservices(dir);
    run_runner_parser(dir);
    run_status(dir);
    run_act(dir);
    return 0;
}
