/* Conformance driver for actions/: the official runner's action.yml cases, from
 * $HARRIER_CONFORMANCE_DIR (default ../shared/conformance):
 *   actions-runner/action-evaluation.json  input defaults and docker env read from an action.yml
 *                                          written for the case, then evaluated
 *   actions-runner/action-manifests.json (and the .yml files beside it)  ActionManifestManagerL0
 * Each manifest is loaded with action_load_file and only the facts the case lists are
 * compared. Prints "actions-runner/action-manifests: N passed, N failed", failures above. */
#include "actions/action.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "workflow/template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct arena scratch;

static const char *text_of(const struct token *t)
{
    if (!t)
        return "";
    if (t->type == TOKEN_EXPRESSION)
        return t->u.expression;
    return token_to_display_string(&scratch, t);
}

/* As written: the corpus keeps ${{ }} strings unevaluated in args and env. */
static const char *written(const struct token *t)
{
    if (t && t->type == TOKEN_EXPRESSION)
        return arena_printf(&scratch, "${{ %s }}", t->u.expression);
    return text_of(t);
}

static bool failed;

static void fail(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *key, const char *fmt, ...)
{
    if (!failed)
        printf("FAIL actions-runner/action-manifests/%s: ", key);
    else
        printf("; ");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    failed = true;
}

static void expect_string(const char *key, const char *what, json_t *want, const char *have)
{
    if (!want)
        return;
    if (!have || strcmp(json_string_value(want), have) != 0)
        fail(key, "%s: want '%s', have '%s'", what, json_string_value(want),
             have ? have : "(none)");
}

static void check_inputs(const char *key, const struct action *a, json_t *expect)
{
    json_t *defaults = json_get(expect, "inputs_defaults");
    if (defaults) {
        if (json_array_size(defaults) != a->input_count)
            fail(key, "inputs: want %zu, have %zu", json_array_size(defaults), a->input_count);
        for (size_t i = 0; i < json_array_size(defaults) && i < a->input_count; i++) {
            json_t *pair = json_array_get(defaults, i);
            expect_string(key, "input name", json_array_get(pair, 0), a->inputs[i].name);
            expect_string(key, "input default", json_array_get(pair, 1),
                          text_of(a->inputs[i].default_value));
        }
    }
    const char *name;
    json_t *message;
    json_object_foreach(json_get(expect, "deprecated_inputs"), name, message)
    {
        const char *have = NULL;
        for (size_t i = 0; i < a->input_count; i++)
            if (strcmp(a->inputs[i].name, name) == 0)
                have = a->inputs[i].deprecation_message;
        expect_string(key, "deprecationMessage", message, have);
    }
}

static void check_runs(const char *key, const struct action *a, json_t *runs)
{
    if (!runs)
        return;
    expect_string(key, "using", json_get(runs, "using"), a->using);
    expect_string(key, "main", json_get(runs, "main"), a->main);
    expect_string(key, "pre", json_get(runs, "pre"), a->pre);
    expect_string(key, "post", json_get(runs, "post"), a->post);
    expect_string(key, "image", json_get(runs, "image"), a->image);
    expect_string(key, "entrypoint", json_get(runs, "entrypoint"), a->entrypoint);
    expect_string(key, "pre-entrypoint", json_get(runs, "pre-entrypoint"), a->pre_entrypoint);
    expect_string(key, "post-entrypoint", json_get(runs, "post-entrypoint"), a->post_entrypoint);
    expect_string(key, "pre-if", json_get(runs, "pre-if"),
                  a->pre_if ? text_of(a->pre_if) : "always()");
    expect_string(key, "post-if", json_get(runs, "post-if"),
                  a->post_if ? text_of(a->post_if) : "always()");
    json_t *args = json_get(runs, "args");
    if (args) {
        size_t n = a->args && a->args->type == TOKEN_SEQUENCE ? a->args->u.sequence.count : 0;
        if (n != json_array_size(args))
            fail(key, "args: want %zu, have %zu", json_array_size(args), n);
        for (size_t i = 0; i < n && i < json_array_size(args); i++)
            expect_string(key, "arg", json_array_get(args, i),
                          written(a->args->u.sequence.items[i]));
    }
    json_t *env = json_get(runs, "env");
    if (env) {
        size_t n = a->env && a->env->type == TOKEN_MAPPING ? a->env->u.mapping.count : 0;
        if (n != json_array_size(env))
            fail(key, "env: want %zu, have %zu", json_array_size(env), n);
        for (size_t i = 0; i < n && i < json_array_size(env); i++) {
            json_t *pair = json_array_get(env, i);
            const struct token_pair *p = &a->env->u.mapping.pairs[i];
            expect_string(key, "env name", json_array_get(pair, 0), text_of(p->key));
            const char *v = written(p->value);
            expect_string(key, "env value", json_array_get(pair, 1), v);
        }
    }
    if (json_get(runs, "plugin"))
        fail(key, "plugin: the runner-internal form is not read");
}

static bool run_case(const char *dir, json_t *c)
{
    const char *key = json_get_string(c, "id");
    json_t *expect = json_get(c, "expect");
    cleanup_free char *file = path_join(dir, json_get_string(c, "manifest"));
    struct action *a = NULL;
    struct error err = {0};
    failed = false;
    int rc = action_load_file(file, &a, &err);
    bool want_error = json_is_true(json_get(expect, "error"));
    if (want_error && rc == 0)
        fail(key, "loaded, but GitHub refuses it");
    if (!want_error && rc < 0)
        fail(key, "%s", err.message);
    json_t *m;
    size_t i;
    json_array_foreach(json_get(expect, "message_contains"), i, m)
    {
        if (rc == 0 || !strstr(err.message, json_string_value(m)))
            fail(key, "message '%s' lacks '%s'", err.message, json_string_value(m));
    }
    if (a) {
        expect_string(key, "name", json_get(expect, "name"), a->name);
        expect_string(key, "description", json_get(expect, "description"), a->description);
        check_inputs(key, a, expect);
        check_runs(key, a, json_get(expect, "runs"));
        action_free(a);
    }
    if (failed)
        printf("\n");
    return !failed;
}

/* The case's template, written into an action.yml, read back and evaluated. */
static bool run_evaluation(json_t *c, const char *folder)
{
    const char *key = json_get_string(c, "id");
    const char *kind = json_get_string(c, "kind");
    cleanup_free char *template = json_dumps(json_get(c, "template"), JSON_ENCODE_ANY);
    cleanup_free char *yaml =
        strcmp(kind, "input-default") == 0
            ? xasprintf("inputs:\n  x:\n    default: %s\nruns: {using: node20, main: m.js}\n",
                        template)
            : xasprintf("runs:\n  using: docker\n  image: Dockerfile\n  env: %s\n", template);
    cleanup_free char *file = path_join(folder, "action.yml");
    struct error err = {0};
    struct action *a = NULL;
    failed = false;
    if (path_write_file_atomic(file, yaml, strlen(yaml), 0644, &err) < 0 ||
        action_load(folder, &a, &err) < 0) {
        printf("FAIL actions-runner/action-evaluation/%s: %s\n", key, err.message);
        return false;
    }
    struct expr_context ec = {.contexts = json_get(c, "contexts")};
    struct template_context tc = {
        .expr = &ec, .file_table = a->file_table, .file_count = a->file_count};
    json_t *have = NULL;
    if (strcmp(kind, "input-default") == 0 && a->input_count == 1) {
        char *value = template_evaluate_string(a->inputs[0].default_value, &tc, &err);
        have = value ? json_string(value) : NULL;
        free(value);
    } else if (strcmp(kind, "container-env") == 0) {
        have = template_evaluate_string_map(a->env, &tc, &err);
    }
    bool ok = have && json_equal(have, json_get(c, "expected"));
    if (!ok) {
        cleanup_free char *shown = have ? json_dumps(have, JSON_ENCODE_ANY) : NULL;
        printf("FAIL actions-runner/action-evaluation/%s: have %s\n", key,
               shown ? shown : err.message);
    }
    json_decref(have);
    action_free(a);
    return ok;
}

static void run_evaluations(const char *dir)
{
    cleanup_free char *index = path_join(dir, "action-evaluation.json");
    struct error err = {0};
    json_t *corpus = json_load_path(index, &err);
    if (!corpus) {
        printf("actions-runner/action-evaluation: 0 passed, 0 failed, 1 skipped (%s absent)\n",
               index);
        return;
    }
    char folder[] = "/tmp/harrier-action-evaluation-XXXXXX";
    int passed = 0, failures = 0;
    if (!mkdtemp(folder)) {
        printf("actions-runner/action-evaluation: cannot make a temporary folder\n");
        json_decref(corpus);
        return;
    }
    json_t *c;
    size_t i;
    json_array_foreach(json_get(corpus, "cases"), i, c)
    {
        if (run_evaluation(c, folder))
            passed++;
        else
            failures++;
    }
    path_remove_all(folder, &err);
    printf("actions-runner/action-evaluation: %d passed, %d failed\n", passed, failures);
    json_decref(corpus);
}

int main(void)
{
    const char *root = getenv("HARRIER_CONFORMANCE_DIR");
    if (!root || !*root)
        root = "../shared/conformance";
    cleanup_free char *dir = path_join(root, "actions-runner");
    cleanup_free char *index = path_join(dir, "action-manifests.json");
    struct error err = {0};
    json_t *corpus = json_load_path(index, &err);
    if (!corpus) {
        printf("actions-runner/action-manifests: 0 passed, 0 failed, 1 skipped (%s absent)\n",
               index);
        return 0;
    }
    arena_init(&scratch, 0);
    int passed = 0, failures = 0;
    json_t *c;
    size_t i;
    json_array_foreach(json_get(corpus, "cases"), i, c)
    {
        if (run_case(dir, c))
            passed++;
        else
            failures++;
    }
    printf("actions-runner/action-manifests: %d passed, %d failed\n", passed, failures);
    json_decref(corpus);
    run_evaluations(dir);
    arena_free(&scratch);
    return 0;
}
