/* Conformance driver: nektos/act's template cases in runner-expressions.json that need more
 * than a bare expression — TestInterpolate (strings holding any number of ${{ }}, read as
 * GitHub's template reader reads them, then evaluated) and TestRunContext_EvalBool (an `if:`
 * value through GitHub's if rule: ${{ }} forms, the implicit `success() &&`, truthiness).
 * Reads $HARRIER_CONFORMANCE_DIR (default ../shared/conformance); prints one line per group.
 * The status functions report a job whose status is success, as act's cases assume. */
#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "lib/path.h"
#include "workflow/schema.h"
#include "workflow/status.h"
#include "workflow/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A job whose status is success (workflow/status.h). */
static void job_succeeded(const struct status_source *source, struct status_now *now)
{
    (void)source;
    *now = (struct status_now){.succeeded = true};
}

static const struct status_source succeeded = {job_succeeded};

struct tally {
    int passed, failed;
};

static void fail(struct tally *t, const char *group, size_t i, const char *why)
{
    printf("FAIL %s/%zu: %s\n", group, i, why);
    t->failed++;
}

/* The template read as the schema reads a step's `run:` (string-steps-context). */
static char *interpolate(json_t *contexts, const char *template_text, struct error *err)
{
    struct arena arena;
    arena_init(&arena, 0);
    struct schema_context sc;
    schema_context_init(&sc, &arena, &schema_workflow);
    int file = schema_context_add_file(&sc, ".github/workflows/test.yml");
    struct token *raw = token_new_string(&arena, template_text);
    token_set_position(raw, file, 1, 1);
    struct token *read = schema_read(&sc, "string-steps-context", raw, file);
    char *out = NULL;
    if (read && schema_context_check(&sc, err) == 0) {
        struct expr_context ec = {
            .contexts = contexts, .functions = status_functions, .host = (void *)&succeeded};
        struct expr_parse_options po = {.functions = status_functions};
        struct template_context tc = {.expr = &ec, .parse = &po};
        out = template_evaluate_string(read, &tc, err);
    } else if (!err->message[0]) {
        error_set(err, -1, "the template could not be read");
    }
    schema_context_free(&sc);
    arena_free(&arena);
    return out;
}

/* The `if:` value through GitHub's rule, then evaluated to a boolean. */
static int eval_if(json_t *contexts, const char *condition, bool *result, struct error *err)
{
    struct arena arena;
    arena_init(&arena, 0);
    struct schema_context sc;
    schema_context_init(&sc, &arena, &schema_workflow);
    int file = schema_context_add_file(&sc, ".github/workflows/test.yml");
    struct token *raw = token_new_string(&arena, condition);
    token_set_position(raw, file, 1, 1);
    struct token *read = schema_read(&sc, "step-if", raw, file);
    struct token *cond = read ? schema_if_condition(&sc, read, "step-if") : NULL;
    int rc = schema_context_check(&sc, err);
    if (rc == 0 && !cond)
        rc = error_set(err, -1, "the condition could not be read");
    if (rc == 0) {
        struct expr_context ec = {
            .contexts = contexts, .functions = status_functions, .host = (void *)&succeeded};
        struct expr_parse_options po = {.functions = status_functions};
        struct template_context tc = {.expr = &ec, .parse = &po};
        rc = template_evaluate_bool(cond, &tc, false, result, err);
    }
    schema_context_free(&sc);
    arena_free(&arena);
    return rc;
}

static void run_interpolate(json_t *cases, struct tally *t)
{
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *template_text = json_get_string(c, "template");
        const char *expected = json_get_string(c, "expected");
        struct error err = {0};
        cleanup_free char *got = interpolate(json_get(c, "contexts"), template_text, &err);
        if (!got) {
            fail(t, "TestInterpolate", i, err.message);
        } else if (strcmp(got, expected) != 0) {
            cleanup_free char *why =
                xasprintf("'%s' gave '%s', expected '%s'", template_text, got, expected);
            fail(t, "TestInterpolate", i, why);
        } else {
            t->passed++;
        }
    }
}

static void run_eval_bool(json_t *cases, struct tally *t)
{
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *condition = json_get_string(c, "if");
        bool expect_error = false, expected = false, got = false;
        json_get_bool(c, "expect_error", &expect_error);
        json_get_bool(c, "expected", &expected);
        struct error err = {0};
        int rc = eval_if(json_get(c, "contexts"), condition, &got, &err);
        if (expect_error ? rc == 0 : rc < 0) {
            cleanup_free char *why =
                xasprintf("'%s': %s", condition, rc < 0 ? err.message : "expected an error");
            fail(t, "TestRunContext_EvalBool", i, why);
        } else if (!expect_error && got != expected) {
            cleanup_free char *why = xasprintf("'%s' gave %s", condition, got ? "true" : "false");
            fail(t, "TestRunContext_EvalBool", i, why);
        } else {
            t->passed++;
        }
    }
}

int main(void)
{
    const char *root = getenv("HARRIER_CONFORMANCE_DIR");
    cleanup_free char *path =
        path_join(root ? root : "../shared/conformance", "nektos-act/runner-expressions.json");
    struct error err = {0};
    json_t *doc = json_load_path(path, &err);
    if (!doc) {
        printf("nektos-act/templates: 0 passed, 0 failed, 0 skipped (corpus absent: %s)\n",
               err.message);
        return 0;
    }
    struct tally interp = {0}, bools = {0};
    run_interpolate(json_get(doc, "TestInterpolate"), &interp);
    run_eval_bool(json_get(doc, "TestRunContext_EvalBool"), &bools);
    printf("nektos-act/interpolate: %d passed, %d failed\n", interp.passed, interp.failed);
    printf("nektos-act/eval-bool: %d passed, %d failed\n", bools.passed, bools.failed);
    json_decref(doc);
    return interp.failed || bools.failed ? 1 : 0;
}
