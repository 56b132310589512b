#include "workflow/workflow.h"

#include "lib/buf.h"
#include "workflow/schema.h"
#include "workflow/yaml_reader.h"

#include <criterion/criterion.h>
#include <string.h>

/* Workflows are read as GitHub reads them: YAML, then the schema, then the converter. */
static struct arena arena;
static struct schema_context schema;
static struct workflow_context ctx;
static struct workflow_options options;

static void setup(void)
{
    arena_init(&arena, 0);
    memset(&options, 0, sizeof(options));
    schema_context_init(&schema, &arena, &schema_workflow);
    workflow_context_init(&ctx, &schema, &options);
}

static void teardown(void)
{
    schema_context_free(&schema);
    arena_free(&arena);
}

// cppcheck-suppress unknownMacro
TestSuite(workflow, .init = setup, .fini = teardown);

static struct token *read_yaml(const char *name, const char *text)
{
    struct token *root = schema_read_workflow(&schema, name, text, strlen(text), NULL);
    cr_assert_not_null(root, "%s", schema.nerrors ? schema.errors[0].message : "");
    return root;
}

static struct workflow_template *convert(const char *text)
{
    struct token *root = read_yaml(".github/workflows/w.yml", text);
    struct workflow_template *t = NULL;
    workflow_convert(&ctx, root, &t);
    return t;
}

static char *errors_text(void)
{
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < schema.nerrors; i++)
        buf_printf(&b, "%s\n", schema.errors[i].message);
    return buf_steal(&b);
}

Test(workflow, defaults_are_filled_in)
{
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  build:\n"
                                          "    runs-on: ubuntu-latest\n"
                                          "    steps:\n"
                                          "      - uses: actions/checkout@v4\n"
                                          "      - run: make\n"
                                          "      - run: make test\n"
                                          "      - uses: docker://alpine:3.20\n"
                                          "      - uses: ./local\n"
                                          "      - id: named\n"
                                          "        run: true\n");
    cleanup_free char *errors = errors_text();
    cr_assert_not_null(t, "%s", errors);
    cr_assert_eq(t->jobs_count, 1);
    const struct workflow_job *j = &t->jobs[0];
    cr_assert_str_eq(j->name->u.string, "build");
    cr_assert_str_eq(j->if_condition->u.expression, "success()");
    const char *ids[] = {"__actions_checkout", "__run",  "__run_2",
                         "__alpine_3_20",      "__self", "named"};
    cr_assert_eq(j->steps_count, 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(j->steps[i].id, ids[i], "step %zu: %s", i, j->steps[i].id);
    cr_assert_str_eq(j->steps[1].if_condition->u.expression, "success()");
}

Test(workflow, conditions_without_a_status_function_run_on_success)
{
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  a:\n"
                                          "    if: github.ref == 'refs/heads/main'\n"
                                          "    runs-on: x\n"
                                          "    steps:\n"
                                          "      - run: echo\n"
                                          "        if: always() && env.X\n"
                                          "      - run: echo\n"
                                          "        if: \"  \"\n");
    cleanup_free char *errors = errors_text();
    cr_assert_not_null(t, "%s", errors);
    cr_assert_str_eq(t->jobs[0].if_condition->u.expression,
                     "success() && (github.ref == 'refs/heads/main')");
    cr_assert_eq(t->jobs[0].if_condition->line, 4);
    cr_assert_str_eq(t->jobs[0].steps[0].if_condition->u.expression, "always() && env.X");
    cr_assert_str_eq(t->jobs[0].steps[1].if_condition->u.expression, "success()");
}

Test(workflow, a_job_condition_may_not_read_steps)
{
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  a:\n"
                                          "    if: steps.x.outputs.y\n"
                                          "    runs-on: x\n"
                                          "    steps:\n"
                                          "      - run: echo\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, ".github/workflows/w.yml (Line: 4, Col: 9): Unrecognized named-value: "
                             "'steps'. Located at position 1 within expression: "
                             "steps.x.outputs.y\n");
}

Test(workflow, needs_errors_point_at_the_need)
{
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  one:\n"
                                          "    runs-on: x\n"
                                          "    steps: [{run: a}]\n"
                                          "  two:\n"
                                          "    needs: [one, three, ghost]\n"
                                          "    runs-on: x\n"
                                          "    steps: [{run: a}]\n"
                                          "  three:\n"
                                          "    needs: two\n"
                                          "    runs-on: x\n"
                                          "    steps: [{run: a}]\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors,
                     ".github/workflows/w.yml (Line: 7, Col: 18): Job 'two' depends on job "
                     "'three' which creates a cycle in the dependency graph.\n"
                     ".github/workflows/w.yml (Line: 7, Col: 25): Job 'two' depends on unknown "
                     "job 'ghost'.\n"
                     ".github/workflows/w.yml (Line: 11, Col: 12): Job 'three' depends on job "
                     "'two' which creates a cycle in the dependency graph.\n");
}

Test(workflow, ids_and_uses_are_checked)
{
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  1bad:\n"
                                          "    runs-on: x\n"
                                          "    steps:\n"
                                          "      - uses: actions/checkout\n"
                                          "      - id: __mine\n"
                                          "        run: a\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(
        errors, ".github/workflows/w.yml (Line: 3, Col: 3): The identifier '1bad' is invalid. IDs "
                "may only contain alphanumeric characters, '_', and '-'. IDs must start with a "
                "letter or '_' and and must be less than 100 characters.\n"
                ".github/workflows/w.yml (Line: 6, Col: 15): Expected format "
                "{org}/{repo}[/path]@ref. Actual 'actions/checkout'\n"
                ".github/workflows/w.yml (Line: 7, Col: 13): The identifier '__mine' is invalid. "
                "IDs starting with '__' are reserved.\n");
}

/* Tokens that skipped the schema (a caller's own tree): the converter still refuses them. */
Test(workflow, a_wrong_type_ends_the_conversion_without_position)
{
    const char *text = "on: push\njobs:\n  a:\n    runs-on: x\n    steps: 3\n";
    struct token *root = NULL;
    struct error err = {0};
    cr_assert_eq(yaml_reader_load(&arena, text, strlen(text), NULL, &root, &err), 0);
    struct workflow_template *t = NULL;
    workflow_convert(&ctx, root, &t);
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, "Unexpected type 'NumberToken' encountered while reading 'job steps'. "
                             "The type 'SequenceToken' was expected.\n");
}

Test(workflow, workflow_permissions_reach_jobs_without_their_own)
{
    struct workflow_template *t = convert("on: push\n"
                                          "permissions: read-all\n"
                                          "jobs:\n"
                                          "  a:\n"
                                          "    runs-on: x\n"
                                          "    steps: [{run: a}]\n"
                                          "  b:\n"
                                          "    permissions: {contents: write}\n"
                                          "    runs-on: x\n"
                                          "    steps: [{run: a}]\n");
    cleanup_free char *errors = errors_text();
    cr_assert_not_null(t, "%s", errors);
    cr_assert_eq(t->jobs[0].permissions->level[WORKFLOW_PERMISSION_PULL_REQUESTS],
                 WORKFLOW_LEVEL_READ);
    cr_assert_eq(t->jobs[1].permissions->level[WORKFLOW_PERMISSION_CONTENTS], WORKFLOW_LEVEL_WRITE);
    cr_assert_eq(t->jobs[1].permissions->level[WORKFLOW_PERMISSION_ACTIONS], WORKFLOW_LEVEL_NONE);
}

static const char *called_text;

static struct token *load_called(void *data, struct workflow_context *c, const char *ref,
                                 bool *found)
{
    (void)data;
    *found = strcmp(ref, "o/r/.github/workflows/deploy.yml@v1") == 0;
    if (!*found)
        return NULL;
    cr_assert_eq(c, &ctx);
    return read_yaml(ref, called_text);
}

Test(workflow, reusable_workflows_are_loaded_and_checked)
{
    options.load = load_called;
    options.permissions_policy = "LimitedRead";
    called_text = "on:\n"
                  "  workflow_call:\n"
                  "    inputs:\n"
                  "      env: {type: string, required: true}\n"
                  "    secrets:\n"
                  "      token: {required: true}\n"
                  "jobs:\n"
                  "  deploy:\n"
                  "    permissions: {contents: write}\n"
                  "    runs-on: x\n"
                  "    steps: [{run: a}]\n";
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  call:\n"
                                          "    uses: o/r/.github/workflows/deploy.yml@v1\n"
                                          "    with: {other: 1}\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(
        errors,
        ".github/workflows/w.yml (Line: 4, Col: 11): Input env is required, but not "
        "provided while calling.\n"
        ".github/workflows/w.yml (Line: 5, Col: 19): Invalid input, other is not defined "
        "in the referenced workflow.\n"
        ".github/workflows/w.yml (Line: 4, Col: 11): Secret token is required, but not "
        "provided while calling.\n"
        ".github/workflows/w.yml (Line: 3, Col: 3): "
        "Error calling workflow 'o/r/.github/workflows/deploy.yml@v1'. The nested job "
        "'deploy' is requesting 'contents: write', but is only allowed 'contents: read'.\n");
}

Test(workflow, a_called_workflow_brings_its_jobs)
{
    options.load = load_called;
    called_text = "on: workflow_call\n"
                  "jobs:\n"
                  "  inner:\n"
                  "    runs-on: x\n"
                  "    steps: [{run: a}]\n";
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  call:\n"
                                          "    uses: o/r/.github/workflows/deploy.yml@v1\n"
                                          "    secrets: inherit\n");
    cleanup_free char *errors = errors_text();
    cr_assert_not_null(t, "%s", errors);
    cr_assert(t->jobs[0].reusable);
    cr_assert(t->jobs[0].inherit_secrets);
    cr_assert_eq(t->jobs[0].jobs_count, 1);
    cr_assert_str_eq(t->jobs[0].jobs[0].id->u.string, "inner");
    cr_assert_eq(schema.nfiles, 2);
}

Test(workflow, a_missing_called_workflow_is_an_error)
{
    options.load = load_called;
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  call:\n"
                                          "    uses: o/r/.github/workflows/nope.yml@v1\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, ".github/workflows/w.yml (Line: 4, Col: 11): Unable to find reusable "
                             "workflow\n");
}

Test(workflow, the_file_count_is_limited)
{
    options.load = load_called;
    options.max_files = 1;
    called_text = "on: workflow_call\njobs:\n  inner:\n    runs-on: x\n    steps: [{run: a}]\n";
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  call:\n"
                                          "    uses: o/r/.github/workflows/deploy.yml@v1\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, "In .github/workflows/w.yml (Line: 4, Col: 11): Error from called "
                             "workflow The maximum file count of 1 has been exceeded\n");
}

Test(workflow, events_are_modelled_as_githubs_typescript_parser)
{
    struct token *root =
        read_yaml(".github/workflows/w.yml", "on:\n"
                                             "  push:\n"
                                             "    branches: main\n"
                                             "    paths-ignore: [docs/**]\n"
                                             "  workflow_dispatch:\n"
                                             "    inputs:\n"
                                             "      level: {type: choice, default: info}\n"
                                             "jobs:\n"
                                             "  a: {runs-on: x, steps: [{run: a}]}\n");
    json_t *events = workflow_events_to_json(&ctx, token_mapping_get(root, "on", false));
    cleanup_free char *text = json_dumps(events, JSON_COMPACT);
    cr_assert_str_eq(text, "{\"push\":{\"branches\":[\"main\"],\"paths-ignore\":[\"docs/**\"]},"
                           "\"workflow_dispatch\":{\"inputs\":{\"level\":{\"type\":\"choice\","
                           "\"default\":\"info\"}}}}");
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, ".github/workflows/w.yml (Line: 7, Col: 14): Missing 'options' for "
                             "choice input\n");
    json_decref(events);
}

Test(workflow, errors_in_a_called_workflow_say_where_it_was_called)
{
    options.load = load_called;
    called_text = "on: workflow_call\n"
                  "jobs:\n"
                  "  inner:\n"
                  "    runs-on: x\n"
                  "    steps:\n"
                  "      - uses: nope\n";
    struct workflow_template *t = convert("on: push\n"
                                          "jobs:\n"
                                          "  call:\n"
                                          "    uses: o/r/.github/workflows/deploy.yml@v1\n");
    cr_assert_null(t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, "In .github/workflows/w.yml (Line: 4, Col: 11): Error from called "
                             "workflow o/r/.github/workflows/deploy.yml@v1 (Line: 6, Col: 15): "
                             "Expected format {org}/{repo}[/path]@ref. Actual 'nope'\n");
}

/* GitHub's early validation builds a literal matrix and counts each configuration against the
 * result size (TemplateMemory): here 4 configurations of 772 bytes each - the configuration
 * 24, id "a_1" 32, null name 26, "matrix" 38, {os: a, node: 1} 212, "strategy" 42 and the
 * strategy context 398. */
static const char *const MATRIX = "on: push\n"
                                  "jobs:\n"
                                  "  build:\n"
                                  "    runs-on: ubuntu-latest\n"
                                  "    strategy:\n"
                                  "      matrix:\n"
                                  "        os: [a, b]\n"
                                  "        node: [1, 2]\n"
                                  "    steps:\n"
                                  "      - run: make\n";

Test(workflow, a_literal_matrix_counts_against_the_result_size)
{
    struct token *root = read_yaml(".github/workflows/w.yml", MATRIX);
    size_t read = schema.bytes;
    schema.max_bytes = read + 4 * 772;
    struct workflow_template *t = NULL;
    cr_assert_eq(workflow_convert(&ctx, root, &t), 0);
    cr_assert_eq(schema.nerrors, 0);
    cr_assert_eq(schema.bytes, read + 4 * 772);
}

Test(workflow, a_matrix_past_the_result_size_is_refused)
{
    struct token *root = read_yaml(".github/workflows/w.yml", MATRIX);
    schema.max_bytes = schema.bytes + 4 * 772 - 1;
    struct workflow_template *t = NULL;
    workflow_convert(&ctx, root, &t);
    cr_assert_eq(schema.nerrors, 1);
    cr_assert_str_eq(schema.errors[0].message, "Maximum object size exceeded");
}

Test(workflow, a_huge_matrix_is_refused_without_building_it)
{
    struct buf text = BUF_INIT;
    buf_puts(&text, "on: push\njobs:\n  build:\n    runs-on: x\n    strategy:\n      matrix:\n");
    for (int v = 0; v < 6; v++) {
        buf_printf(&text, "        v%d: [", v);
        for (int i = 0; i < 30; i++)
            buf_printf(&text, "%s%d", i ? ", " : "", i);
        buf_puts(&text, "]\n");
    }
    buf_puts(&text, "    steps:\n      - run: make\n");
    struct token *root = read_yaml(".github/workflows/w.yml", text.data);
    buf_free(&text);
    struct workflow_template *t = NULL;
    workflow_convert(&ctx, root, &t);
    cleanup_free char *errors = errors_text();
    cr_assert_str_eq(errors, "Maximum object size exceeded\n");
}
