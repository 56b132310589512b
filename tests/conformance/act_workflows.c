/* Conformance driver: workflows from other projects that GitHub accepts.
 * - nektos-act/workflow-model.json: each workflow loads (or is refused) as act's tests say,
 *   with the asserted facts (job count, runs-on labels, matrix combinations, step count).
 * - nektos-act/workflow-patterns.json: branch/tag/path filter globs.
 * - rhysd-actionlint/ok: every workflow loads without error.
 * Prints one "<corpus>: N passed, N failed, N skipped" line per corpus, failures above. */
#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "runner/shell.h"
#include "workflow/matrix.h"
#include "workflow/pattern.h"
#include "workflow/schema.h"
#include "workflow/workflow.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tally {
    int passed, failed, skipped;
};

static void pass_or_fail(struct tally *t, bool ok, const char *id, const char *why)
{
    if (ok) {
        t->passed++;
        return;
    }
    t->failed++;
    printf("FAIL %s: %s\n", id, why ? why : "");
}

/* Reads and converts one workflow; returns the template or NULL (errors in ctx). */
static struct workflow_template *load(struct workflow_context *ctx, const char *name,
                                      const char *text, char **why)
{
    struct token *root = schema_read_workflow(ctx->schema, name, text, strlen(text), NULL);
    struct workflow_template *t = NULL;
    if (!root || workflow_convert(ctx, root, &t) < 0) {
        *why = xstrdup(ctx->schema->nerrors ? ctx->schema->errors[0].message : "not read");
        return NULL;
    }
    return t;
}

static const struct workflow_job *find_job(const struct workflow_template *t, const char *id)
{
    for (size_t i = 0; i < t->jobs_count; i++)
        if (strcmp(t->jobs[i].id->u.string, id) == 0)
            return &t->jobs[i];
    return NULL;
}

/* runs-on as act lists it: the labels (string, sequence, or mapping's labels) then group. */
static json_t *runs_on_labels(const struct token *t)
{
    json_t *labels = json_array();
    if (!t)
        return labels;
    if (t->type == TOKEN_STRING)
        json_array_append_new(labels, json_string(t->u.string));
    if (t->type == TOKEN_SEQUENCE)
        for (size_t i = 0; i < t->u.sequence.count; i++)
            if (t->u.sequence.items[i]->type == TOKEN_STRING)
                json_array_append_new(labels, json_string(t->u.sequence.items[i]->u.string));
    if (t->type == TOKEN_MAPPING) {
        json_t *rest = runs_on_labels(token_mapping_get(t, "labels", false));
        const struct token *group = token_mapping_get(t, "group", false);
        if (group && group->type == TOKEN_STRING)
            json_array_append_new(rest, json_string(group->u.string));
        json_array_extend(labels, rest);
        json_decref(rest);
    }
    return labels;
}

/* Matrix combinations with every value as a string, as act's test compares them. */
static json_t *matrix_combinations(const struct workflow_job *j)
{
    struct matrix m;
    struct matrix_options o = {.job_name = j->id->u.string};
    json_t *out = json_array();
    if (matrix_expand(j->strategy, &o, &m, NULL, NULL) < 0)
        return out;
    for (size_t i = 0; i < m.count; i++) {
        json_t *combo = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(m.items[i].matrix, k, v)
        {
            cleanup_free char *text = json_is_string(v) ? xstrdup(json_string_value(v))
                                      : json_is_number(v)
                                          ? xasprintf("%.15g", json_number_value(v))
                                          : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            json_object_set_new(combo, k, json_string(text));
        }
        json_array_append_new(out, combo);
    }
    matrix_free(&m);
    return out;
}

/* Checks the facts act's test asserts that belong to the converted template. */
static bool check_job(const struct workflow_job *j, json_t *expect, char **why)
{
    json_t *v;
    if ((v = json_object_get(expect, "runs_on"))) {
        json_t *labels = runs_on_labels(j->runs_on);
        bool ok = json_equal(labels, v);
        json_decref(labels);
        if (!ok)
            return (*why = xstrdup("runs-on labels differ")), false;
    }
    if ((v = json_object_get(expect, "matrix_combinations"))) {
        json_t *combos = matrix_combinations(j);
        bool ok = json_equal_nocase(combos, v);
        cleanup_free char *got = json_dumps(combos, JSON_COMPACT);
        json_decref(combos);
        if (!ok)
            return (*why = xasprintf("matrix combinations differ: %s", got)), false;
    }
    if ((v = json_object_get(expect, "step_count")) &&
        (json_int_t)j->steps_count != json_integer_value(v))
        return (*why = xstrdup("step count differs")), false;
    return true;
}

static bool check_model(const struct workflow_template *t, json_t *expect, char **why)
{
    json_t *v = json_object_get(expect, "job_count");
    if (v && (json_int_t)t->jobs_count != json_integer_value(v))
        return (*why = xasprintf("%zu jobs", t->jobs_count)), false;
    json_t *jobs = json_object_get(expect, "jobs");
    const char *id;
    json_t *facts;
    json_object_foreach(jobs, id, facts)
    {
        const struct workflow_job *j = find_job(t, id);
        if (!j)
            return (*why = xasprintf("no job %s", id)), false;
        if (!check_job(j, facts, why))
            return false;
    }
    json_t *all = json_object_get(expect, "all_jobs");
    for (size_t i = 0; all && i < t->jobs_count; i++)
        if (!check_job(&t->jobs[i], all, why))
            return false;
    return true;
}

static json_t *plain_json(const struct token *t)
{
    if (!t)
        return json_null();
    switch (t->type) {
    case TOKEN_STRING:
        return json_string(t->u.string);
    case TOKEN_BOOLEAN:
        return json_boolean(t->u.boolean);
    case TOKEN_NUMBER:
        return json_real(t->u.number);
    case TOKEN_SEQUENCE: {
        json_t *a = json_array();
        for (size_t i = 0; i < t->u.sequence.count; i++)
            json_array_append_new(a, plain_json(t->u.sequence.items[i]));
        return a;
    }
    case TOKEN_MAPPING: {
        json_t *o = json_object();
        for (size_t i = 0; i < t->u.mapping.count; i++)
            json_object_set_new(o, t->u.mapping.pairs[i].key->u.string,
                                plain_json(t->u.mapping.pairs[i].value));
        return o;
    }
    default:
        return json_null();
    }
}

/* act's GetWorkflowDispatchConfig: null without the event, else its inputs (null when none). */
static json_t *dispatch_config(const struct token *root)
{
    const struct token *on = root ? token_mapping_get(root, "on", false) : NULL;
    bool listed = false;
    if (on && on->type == TOKEN_STRING)
        listed = strcmp(on->u.string, "workflow_dispatch") == 0;
    for (size_t i = 0; on && on->type == TOKEN_SEQUENCE && i < on->u.sequence.count; i++)
        listed = listed || (on->u.sequence.items[i]->type == TOKEN_STRING &&
                            strcmp(on->u.sequence.items[i]->u.string, "workflow_dispatch") == 0);
    if (listed)
        return json_pack("{s:n}", "inputs");
    const struct token *dispatch =
        on && on->type == TOKEN_MAPPING ? token_mapping_get(on, "workflow_dispatch", false) : NULL;
    if (!dispatch)
        return json_null();
    const struct token *inputs =
        dispatch->type == TOKEN_MAPPING ? token_mapping_get(dispatch, "inputs", false) : NULL;
    return json_pack("{s:o}", "inputs", plain_json(inputs));
}

/* act's dispatch tests read files that have only `on:`; GitHub refuses a workflow without
 * jobs, so those are checked on the events alone (the missing jobs error is GitHub's). */
static bool check_events_only(json_t *c, json_t *expect, char **why)
{
    struct arena arena;
    arena_init(&arena, 0);
    struct schema_context schema;
    schema_context_init(&schema, &arena, &schema_workflow);
    const char *text = json_string_value(json_object_get(c, "workflow"));
    struct token *root =
        schema_read_workflow(&schema, ".github/workflows/test.yml", text, strlen(text), NULL);
    bool only_jobs_missing =
        schema.nerrors == 1 && str_ends_with(schema.errors[0].message, "missing: jobs");
    json_t *got = dispatch_config(root);
    bool ok =
        only_jobs_missing && json_equal_nocase(got, json_object_get(expect, "workflow_dispatch"));
    if (!ok)
        *why = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(got);
    schema_context_free(&schema);
    arena_free(&arena);
    return ok;
}

/* act's TestStep_ShellCommand: the command line a step's shell runs, through harrier's
 * shell table (runner/shell.h) with every program present on a PATH made for the check.
 * act fills an unset shell with "bash" itself; with no defaults-level shell that is GitHub's
 * implicit default (`bash -e {0}`). act writes "-e -o pipefail" where GitHub writes
 * "-eo pipefail": the same to bash; GitHub's spelling is compared. */
static bool check_shell_command(json_t *c, char **why)
{
    const char *step_shell = json_string_value(json_object_get(c, "step_shell"));
    const char *default_shell = json_string_value(json_object_get(c, "workflow_default_shell"));
    const char *expected = json_string_value(json_object_get(c, "expected_command"));
    char dir[] = "/tmp/harrier-shells-XXXXXX";
    if (!mkdtemp(dir)) {
        *why = xstrdup("cannot make a folder");
        return false;
    }
    static const char *const programs[] = {"bash", "sh", "pwsh", "powershell", "python"};
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        cleanup_free char *link = xasprintf("%s/%s", dir, programs[i]);
        if (symlink("/bin/true", link) < 0) {
            *why = xstrdup("cannot make the PATH folder");
            return false;
        }
    }
    bool implicit = strcmp(step_shell, "bash") == 0 && (!default_shell || !*default_shell);
    struct shell_command cmd;
    struct error err = {0};
    bool ok = false;
    if (shell_resolve(implicit ? NULL : step_shell, dir, "{0}", &cmd, &err) < 0) {
        *why = xstrdup(err.message);
    } else {
        struct buf line = BUF_INIT;
        const char *base = strrchr(cmd.argv[0], '/');
        buf_puts(&line, base ? base + 1 : cmd.argv[0]);
        for (char **a = cmd.argv + 1; *a; a++)
            buf_printf(&line, " %s", *a);
        cleanup_free char *want = str_replace_all(expected, "-e -o pipefail", "-eo pipefail");
        ok = strcmp(line.data, want) == 0;
        if (!ok)
            *why = xasprintf("'%s', expected '%s'", line.data, want);
        buf_free(&line);
        shell_command_free(&cmd);
    }
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        cleanup_free char *link = xasprintf("%s/%s", dir, programs[i]);
        unlink(link);
    }
    rmdir(dir);
    return ok;
}

static void run_models(const char *base, struct tally *tally)
{
    cleanup_free char *path = xasprintf("%s/nektos-act/workflow-model.json", base);
    struct error err = {0};
    json_t *doc = json_load_path(path, &err);
    if (!doc) {
        printf("act-workflow-model: %s, skipped\n", err.message);
        tally->skipped++;
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (json_object_get(c, "kind")) {
            char *why = NULL;
            pass_or_fail(tally, check_shell_command(c, &why), id, why);
            free(why);
            continue;
        }
        json_t *expect = json_object_get(c, "expect");
        bool want_error = json_is_true(json_object_get(expect, "error"));
        if (json_object_get(expect, "workflow_dispatch") &&
            !strstr(json_string_value(json_object_get(c, "workflow")), "jobs:")) {
            char *why = NULL;
            pass_or_fail(tally, check_events_only(c, expect, &why), id, why);
            free(why);
            continue;
        }
        struct arena arena;
        arena_init(&arena, 0);
        struct workflow_options wo = {0};
        struct schema_context schema;
        schema_context_init(&schema, &arena, &schema_workflow);
        struct workflow_context ctx;
        workflow_context_init(&ctx, &schema, &wo);
        char *why = NULL;
        const char *text = json_string_value(json_object_get(c, "workflow"));
        struct workflow_template *t = load(&ctx, ".github/workflows/test.yml", text, &why);
        bool ok;
        if (want_error) {
            ok = t == NULL;
            if (!ok)
                why = xstrdup("loaded, but act's test expects an error");
        } else {
            ok = t != NULL && check_model(t, expect, &why);
        }
        pass_or_fail(tally, ok, id, why);
        free(why);
        schema_context_free(&schema);
        arena_free(&arena);
    }
    json_decref(doc);
}

static const char **string_array(json_t *a, size_t *count)
{
    *count = json_array_size(a);
    const char **out = xcalloc(*count + 1, sizeof(*out));
    for (size_t i = 0; i < *count; i++)
        out[i] = json_string_value(json_array_get(a, i));
    return out;
}

static void run_patterns(const char *base, struct tally *tally)
{
    cleanup_free char *path = xasprintf("%s/nektos-act/workflow-patterns.json", base);
    struct error err = {0};
    json_t *doc = json_load_path(path, &err);
    if (!doc) {
        printf("act-workflow-patterns: %s, skipped\n", err.message);
        tally->skipped++;
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        size_t np, ni;
        cleanup_free const char **patterns = string_array(json_object_get(c, "patterns"), &np);
        cleanup_free const char **inputs = string_array(json_object_get(c, "inputs"), &ni);
        struct pattern_list list;
        struct error perr = {0};
        if (pattern_list_compile(&list, patterns, np, &perr) < 0) {
            pass_or_fail(tally, false, id, perr.message);
            continue;
        }
        bool skip = pattern_list_skips(&list, inputs, ni);
        bool filter = pattern_list_ignores(&list, inputs, ni);
        pattern_list_free(&list);
        bool ok = skip == json_is_true(json_object_get(c, "skip")) &&
                  filter == json_is_true(json_object_get(c, "filter"));
        pass_or_fail(tally, ok, id, skip ? "skip/filter differ (skip true)" : "skip/filter differ");
    }
    json_decref(doc);
}

static void run_actionlint_ok(const char *base, struct tally *tally)
{
    cleanup_free char *dir = xasprintf("%s/rhysd-actionlint/ok", base);
    DIR *d = opendir(dir);
    if (!d) {
        printf("actionlint-ok: no corpus at %s, skipped\n", dir);
        tally->skipped++;
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!str_ends_with(e->d_name, ".yaml") && !str_ends_with(e->d_name, ".yml"))
            continue;
        cleanup_free char *path = xasprintf("%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        struct buf text = BUF_INIT;
        char chunk[8192];
        size_t n;
        while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            buf_append(&text, chunk, n);
        if (f)
            fclose(f);
        struct arena arena;
        arena_init(&arena, 0);
        struct workflow_options wo = {0};
        struct schema_context schema;
        schema_context_init(&schema, &arena, &schema_workflow);
        struct workflow_context ctx;
        workflow_context_init(&ctx, &schema, &wo);
        char *why = NULL;
        struct workflow_template *t = load(&ctx, "test.yaml", buf_cstr(&text), &why);
        pass_or_fail(tally, t != NULL, e->d_name, why);
        free(why);
        schema_context_free(&schema);
        arena_free(&arena);
        buf_free(&text);
    }
    closedir(d);
}

int main(void)
{
    const char *env = getenv("HARRIER_CONFORMANCE_DIR");
    const char *base = env && *env ? env : "../shared/conformance";
    struct tally models = {0}, patterns = {0}, ok = {0};
    run_models(base, &models);
    run_patterns(base, &patterns);
    run_actionlint_ok(base, &ok);
    printf("act-workflow-model: %d passed, %d failed, %d skipped\n", models.passed, models.failed,
           models.skipped);
    printf("act-workflow-patterns: %d passed, %d failed, %d skipped\n", patterns.passed,
           patterns.failed, patterns.skipped);
    printf("actionlint-ok: %d passed, %d failed, %d skipped\n", ok.passed, ok.failed, ok.skipped);
    return models.failed || patterns.failed || ok.failed ? 1 : 0;
}
