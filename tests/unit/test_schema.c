#include "workflow/schema.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct arena arena;
static struct schema_context ctx;

static void setup(void)
{
    arena_init(&arena, 0);
    schema_context_init(&ctx, &arena, &schema_workflow);
}

static void teardown(void)
{
    schema_context_free(&ctx);
    arena_free(&arena);
}

static struct token *read_workflow(const char *text)
{
    return schema_read_workflow(&ctx, ".github/workflows/w.yml", text, strlen(text), NULL);
}

static void assert_errors(const char *const *expected, size_t n)
{
    for (size_t i = 0; i < ctx.nerrors && i < n; i++)
        cr_assert_str_eq(ctx.errors[i].message, expected[i], "error %zu: %s", i,
                         ctx.errors[i].message);
    cr_assert_eq(ctx.nerrors, n, "%zu errors, first: %s", ctx.nerrors,
                 ctx.nerrors ? ctx.errors[0].message : "-");
}

#define ASSERT_ERRORS(...)                                                                         \
    do {                                                                                           \
        const char *const expected_[] = {__VA_ARGS__};                                             \
        assert_errors(expected_, sizeof(expected_) / sizeof(expected_[0]));                        \
    } while (0)

static const char *const BASIC = "on: push\n"
                                 "jobs:\n"
                                 "  build:\n"
                                 "    runs-on: ubuntu-latest\n"
                                 "    steps:\n"
                                 "      - run: echo ${{ matrix.os }} {x} it's\n"
                                 "        env:\n"
                                 "          A: ${{ github.sha }}\n"
                                 "          B: ${{ 'a {{ literal }}' }}\n"
                                 "          C: 12\n"
                                 "          D: ${{ github.ref\xc2\xa0}}\n";

Test(schema, tables_are_sorted_and_complete)
{
    setup();
    for (int i = 1; i < schema_workflow.count; i++)
        cr_assert(strcmp(schema_workflow.definitions[i - 1].name,
                         schema_workflow.definitions[i].name) < 0);
    cr_assert_geq(schema_find(&schema_workflow, "workflow-root"), 0);
    cr_assert_geq(schema_find(&schema_workflow, "any"), 0);
    cr_assert_geq(schema_find(&schema_action, "action-root"), 0);
    cr_assert_eq(schema_find(&schema_workflow, "no-such-thing"), -1);
    int d = schema_find(&schema_workflow, "step-if");
    const struct schema_definition *def = &schema_workflow.definitions[d];
    bool has_hash_files = false;
    for (size_t i = 0; def->context[i]; i++)
        has_hash_files |= !strcmp(def->context[i], "hashFiles(1,255)");
    cr_assert(has_hash_files);
    teardown();
}

Test(schema, expressions_become_tokens_as_github_compiles_them)
{
    setup();
    struct token *t = read_workflow(BASIC);
    cr_assert_not_null(t);
    ASSERT_ERRORS();
    struct token *step =
        token_mapping_get(token_mapping_get(token_mapping_get(t, "jobs", false), "build", false),
                          "steps", false)
            ->u.sequence.items[0];
    struct token *run = token_mapping_get(step, "run", false);
    cr_assert_eq(run->type, TOKEN_EXPRESSION);
    cr_assert_str_eq(run->u.expression, "format('echo {0} {{x}} it''s', matrix.os)");
    cr_assert_eq(run->line, 6);
    cr_assert_eq(run->col, 14);
    struct token *env = token_mapping_get(step, "env", false);
    cr_assert_str_eq(token_mapping_get(env, "A", false)->u.expression, "github.sha");
    struct token *b = token_mapping_get(env, "B", false);
    cr_assert_eq(b->type, TOKEN_STRING); /* an expression of one string literal is a string */
    cr_assert_str_eq(b->u.string, "a {{ literal }}");
    /* A number where a string is expected becomes its string form. */
    struct token *c = token_mapping_get(env, "C", false);
    cr_assert_eq(c->type, TOKEN_STRING);
    cr_assert_str_eq(c->u.string, "12");
    /* Trimmed as .NET trims: a no-break space is white space. */
    cr_assert_str_eq(token_mapping_get(env, "D", false)->u.expression, "github.ref");
    cr_assert_eq(token_mapping_get(t, "on", false)->type, TOKEN_STRING);
    teardown();
}

Test(schema, structure_errors_use_githubs_words)
{
    setup();
    read_workflow("on: push\n"
                  "jobs:\n"
                  "  build:\n"
                  "    runs-on: ubuntu-latest\n"
                  "    runs-on: again\n"
                  "    foo: bar\n"
                  "    timeout-minutes: [1]\n"
                  "    steps:\n"
                  "      - runn: echo\n"
                  "      - uses: ''\n"
                  "      - run: x\n"
                  "        shell: {a: 1}\n");
    ASSERT_ERRORS(
        ".github/workflows/w.yml (Line: 5, Col: 5): 'runs-on' is already defined",
        ".github/workflows/w.yml (Line: 6, Col: 5): Unexpected value 'foo'",
        ".github/workflows/w.yml (Line: 7, Col: 22): A sequence was not expected",
        ".github/workflows/w.yml (Line: 9, Col: 9): Unexpected value 'runn'",
        ".github/workflows/w.yml (Line: 9, Col: 9): There's not enough info to determine what you "
        "meant. Add one of these properties: parallel, run, shell, uses, with, "
        "working-directory",
        ".github/workflows/w.yml (Line: 10, Col: 15): Unexpected value ''",
        ".github/workflows/w.yml (Line: 12, Col: 16): A mapping was not expected");
    teardown();
}

Test(schema, required_properties)
{
    setup();
    read_workflow("on: push\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 1, Col: 1): Required property is missing: jobs");
    teardown();
}

Test(schema, expressions_where_none_are_allowed)
{
    setup();
    read_workflow("name: x ${{ 'a' }} y\n"
                  "on: push\n"
                  "jobs:\n"
                  "  ${{ format('id') }}:\n"
                  "    runs-on: x\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 1, Col: 7): A template expression is not "
                  "allowed in this context",
                  ".github/workflows/w.yml (Line: 4, Col: 3): A template expression is not "
                  "allowed in this context");
    teardown();
}

Test(schema, expression_text_errors)
{
    setup();
    read_workflow("on: push\n"
                  "jobs:\n"
                  "  build:\n"
                  "    runs-on: x\n"
                  "    steps:\n"
                  "      - run: echo ${{ github.sha\n"
                  "      - run: echo ${{  }}\n"
                  "      - run: echo ${{ insert }}\n"
                  "      - run: ${{ insert x }}\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 6, Col: 14): The expression is not closed. An "
                  "unescaped ${{ sequence was found, but the closing }} sequence was not found.",
                  ".github/workflows/w.yml (Line: 7, Col: 14): An expression was expected",
                  ".github/workflows/w.yml (Line: 8, Col: 14): The directive 'insert' is not "
                  "allowed in this context. Directives are not supported for expressions that are "
                  "embedded within a string. Directives are only supported when the entire value "
                  "is an expression.",
                  ".github/workflows/w.yml (Line: 9, Col: 14): Exactly 0 parameter(s) were "
                  "expected following the directive 'insert'. Actual parameter count: 1");
    teardown();
}

Test(schema, insert_keys_and_expression_keys_where_allowed)
{
    setup();
    struct token *t = read_workflow("on: push\n"
                                    "jobs:\n"
                                    "  build:\n"
                                    "    runs-on: x\n"
                                    "    steps:\n"
                                    "      - run: x\n"
                                    "        env:\n"
                                    "          ${{ insert }}: ${{ fromJSON(vars.x) }}\n"
                                    "          ${{ vars.name }}: v\n");
    ASSERT_ERRORS();
    struct token *env = token_mapping_get(
        token_mapping_get(token_mapping_get(token_mapping_get(t, "jobs", false), "build", false),
                          "steps", false)
            ->u.sequence.items[0],
        "env", false);
    cr_assert_eq(env->u.mapping.pairs[0].key->type, TOKEN_INSERT);
    cr_assert_eq(env->u.mapping.pairs[1].key->type, TOKEN_EXPRESSION);
    cr_assert_str_eq(env->u.mapping.pairs[1].key->u.expression, "vars.name");
    teardown();
}

Test(schema, scalar_definitions_match_by_type)
{
    setup();
    read_workflow("on: push\n"
                  "jobs:\n"
                  "  build:\n"
                  "    runs-on: x\n"
                  "    timeout-minutes: soon\n"
                  "    continue-on-error: maybe\n"
                  "    permissions: invalid\n"
                  "    steps:\n"
                  "      - run: x\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 5, Col: 22): Unexpected value 'soon'",
                  ".github/workflows/w.yml (Line: 6, Col: 24): Unexpected value 'maybe'",
                  ".github/workflows/w.yml (Line: 7, Col: 18): Unexpected value 'invalid'");
    teardown();
}

Test(schema, background_steps_need_the_feature)
{
    setup();
    const char *text = "on: push\n"
                       "jobs:\n"
                       "  build:\n"
                       "    runs-on: x\n"
                       "    steps:\n"
                       "      - run: x\n"
                       "        background: true\n";
    read_workflow(text);
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 7, Col: 9): Unexpected value 'background'");
    schema_context_free(&ctx);
    schema_context_init(&ctx, &arena, &schema_workflow);
    ctx.background_steps = true;
    read_workflow(text);
    ASSERT_ERRORS();
    teardown();
}

Test(schema, yaml_errors_and_limits_are_reported_once)
{
    setup();
    struct yaml_reader_options o = {.max_depth = 3};
    const char *text = "on: push\njobs:\n  a:\n    runs-on: [x]\n";
    cr_assert_null(schema_read_workflow(&ctx, "w.yml", text, strlen(text), &o));
    ASSERT_ERRORS("w.yml: Maximum object depth exceeded");
    struct error err = {0};
    cr_assert_lt(schema_context_check(&ctx, &err), 0);
    cr_assert_str_eq(err.where, "w.yml");
    cr_assert_str_eq(err.message, "w.yml: Maximum object depth exceeded");
    teardown();
}

Test(schema, result_size_limit)
{
    setup();
    ctx.max_bytes = 300;
    cr_assert_null(read_workflow(BASIC));
    ASSERT_ERRORS(".github/workflows/w.yml: Maximum object size exceeded");
    cr_assert(ctx.failed);
    teardown();
}

/* GitHub counts each file name as it joins the file table, and strings in UTF-16 code units:
 * a workflow that just fits under one name is refused under a name one character longer. */
Test(schema, result_size_counts_file_names_in_utf16_units)
{
    setup();
    cr_assert_eq(schema_context_add_file(&ctx, "a.yml"), 1);
    cr_assert_eq(ctx.bytes, 26 + 2 * 5);
    schema_context_add_file(&ctx, "A.YML");
    cr_assert_eq(ctx.bytes, 26 + 2 * 5, "a name already in the table costs nothing");
    schema_context_add_file(&ctx, "\xc3\xa9\xf0\x9f\x98\x80.yml"); /* é😀: 3 code units */
    cr_assert_eq(ctx.bytes, 2 * 26 + 2 * 5 + 2 * 7);
    teardown();

    setup();
    cr_assert_not_null(schema_read_workflow(&ctx, "w.yml", BASIC, strlen(BASIC), NULL));
    size_t fits = ctx.bytes;
    teardown();

    setup();
    ctx.max_bytes = fits;
    cr_assert_not_null(schema_read_workflow(&ctx, "w.yml", BASIC, strlen(BASIC), NULL));
    cr_assert_eq(ctx.nerrors, 0);
    teardown();

    setup();
    ctx.max_bytes = fits;
    cr_assert_null(schema_read_workflow(&ctx, "ww.yml", BASIC, strlen(BASIC), NULL));
    ASSERT_ERRORS("ww.yml: Maximum object size exceeded");
    teardown();
}

Test(schema, error_count_and_length_are_capped)
{
    setup();
    struct buf text = BUF_INIT;
    buf_puts(&text, "on: push\njobs:\n  a:\n    runs-on: x\n");
    for (int i = 0; i < 20; i++)
        buf_printf(&text, "    k%d%0600d: 1\n", i, 0);
    read_workflow(text.data);
    buf_free(&text);
    cr_assert_eq(ctx.nerrors, SCHEMA_MAX_ERRORS);
    cr_assert_eq(strlen(ctx.errors[0].message), SCHEMA_MAX_MESSAGE + strlen("[...]"));
    cr_assert(strstr(ctx.errors[0].message, "[...]"));
    teardown();
}

Test(schema, file_table)
{
    setup();
    cr_assert_eq(schema_context_add_file(&ctx, "a.yml"), 1);
    cr_assert_eq(schema_context_add_file(&ctx, "b.yml"), 2);
    cr_assert_eq(schema_context_add_file(&ctx, "A.YML"), 1);
    cr_assert_str_eq(schema_context_file_name(&ctx, 2), "b.yml");
    cr_assert_null(schema_context_file_name(&ctx, 3));
    teardown();
}

Test(schema, allowed_context_accumulates)
{
    setup();
    const char *path[] = {"job-if"};
    const char **allowed = schema_allowed_context(&ctx, path, 1);
    bool needs = false, always = false;
    for (size_t i = 0; allowed[i]; i++) {
        needs |= !strcmp(allowed[i], "needs");
        always |= !strcmp(allowed[i], "always(0,0)");
    }
    cr_assert(needs && always);
    teardown();
}

Test(schema, read_validates_any_token_tree)
{
    setup();
    /* Converters re-check parts with stricter definitions (on-strict) or start elsewhere. */
    struct token *raw = token_new_mapping(&arena);
    token_mapping_add(&arena, raw, token_new_string(&arena, "push"), token_new_null(&arena));
    token_mapping_add(&arena, raw, token_new_string(&arena, "bogus_event"), token_new_null(&arena));
    struct token *t = schema_read(&ctx, "on-strict", raw, 0);
    cr_assert_not_null(t);
    ASSERT_ERRORS("Unexpected value 'bogus_event'");
    teardown();
}

Test(schema, action_yml)
{
    setup();
    schema_context_free(&ctx);
    schema_context_init(&ctx, &arena, &schema_action);
    const char *ok = "name: hello\n"
                     "description: says hello\n"
                     "inputs:\n"
                     "  who:\n"
                     "    description: whom\n"
                     "    default: ${{ github.actor }}\n"
                     "outputs:\n"
                     "  said:\n"
                     "    description: what\n"
                     "runs:\n"
                     "  using: node20\n"
                     "  main: index.js\n"
                     "  post-if: always()\n";
    struct token *t = schema_read_action(&ctx, "action.yml", ok, strlen(ok), NULL);
    cr_assert_not_null(t);
    ASSERT_ERRORS();
    struct token *def = token_mapping_get(
        token_mapping_get(token_mapping_get(t, "inputs", false), "who", false), "default", false);
    cr_assert_eq(def->type, TOKEN_EXPRESSION);

    schema_context_free(&ctx);
    schema_context_init(&ctx, &arena, &schema_action);
    const char *bad = "name: hello\n"
                      "inputs:\n"
                      "  who:\n"
                      "    descripton: typo\n"
                      "runs:\n"
                      "  using: composite\n"
                      "  steps:\n"
                      "    - run: echo ${{ inputs.who }}\n"
                      "      bogus: 1\n"
                      "name: again\n";
    schema_read_action(&ctx, "action.yml", bad, strlen(bad), NULL);
    /* action.yml is loose where workflows are strict (unknown input keys are fine), but
     * composite steps are checked like workflow steps. */
    ASSERT_ERRORS("action.yml (Line: 9, Col: 7): Unexpected value 'bogus'",
                  "action.yml (Line: 8, Col: 7): Required property is missing: shell",
                  "action.yml (Line: 10, Col: 1): 'name' is already defined");
    teardown();
}

Test(schema, if_condition_is_wrapped_and_defaults)
{
    setup();
    struct token *s = token_new_string(&arena, "  ");
    struct token *t = schema_if_condition(&ctx, s, "job-if");
    cr_assert_not_null(t);
    cr_assert_str_eq(t->u.expression, "success()");
    s = token_new_expression(&arena, "always()");
    t = schema_if_condition(&ctx, s, "step-if");
    cr_assert_str_eq(t->u.expression, "always()");
    s = token_new_string(&arena, "github.ref == 'refs/heads/main' ");
    token_set_position(s, 1, 4, 9);
    t = schema_if_condition(&ctx, s, "job-if");
    cr_assert_str_eq(t->u.expression, "success() && (github.ref == 'refs/heads/main')");
    cr_assert_eq(t->line, 4);
    t = schema_if_condition(&ctx, token_new_string(&arena, "!cancelled() && needs.a.result"),
                            "job-if");
    cr_assert_str_eq(t->u.expression, "!cancelled() && needs.a.result");
    /* Contexts are the definition's: steps exist for steps, not for jobs. */
    cr_assert_not_null(
        schema_if_condition(&ctx, token_new_string(&arena, "steps.a.outputs.x"), "step-if"));
    cr_assert_null(
        schema_if_condition(&ctx, s = token_new_string(&arena, "steps.a.outputs.x"), "job-if"));
    cr_assert_eq(ctx.nerrors, 1);
    cr_assert(strstr(ctx.errors[0].message, "Unrecognized named-value: 'steps'"), "%s",
              ctx.errors[0].message);
    cr_assert_null(schema_if_condition(&ctx, token_new_string(&arena, "hashFiles('x')"), "job-if"));
    cr_assert(strstr(ctx.errors[1].message, "Unrecognized function: 'hashFiles'"), "%s",
              ctx.errors[1].message);
    teardown();
}

Test(schema, merge_keys_are_refused_as_github_refuses_them)
{
    setup();
    /* YAML 1.2 has no merge keys: "<<" is a key like any other, which the schema refuses. */
    read_workflow("on: push\n"
                  "x: &base\n"
                  "  runs-on: a\n"
                  "jobs:\n"
                  "  build:\n"
                  "    <<: *base\n"
                  "    steps:\n"
                  "      - run: x\n"
                  "        env:\n"
                  "          <<: *base\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 2, Col: 1): Unexpected value 'x'",
                  ".github/workflows/w.yml (Line: 6, Col: 5): Unexpected value '<<'",
                  ".github/workflows/w.yml (Line: 2, Col: 4): A mapping was not expected",
                  ".github/workflows/w.yml (Line: 6, Col: 5): Required property is missing: "
                  "runs-on");
    teardown();
}

Test(schema, errors_before_a_yaml_failure_come_first)
{
    setup();
    /* As GitHub reads while it parses: what precedes the failure is checked, what follows
     * is not, and the unfinished mappings are not checked for required properties. */
    read_workflow("on: push\n"
                  "foo: 1\n"
                  "jobs:\n"
                  "  build:\n"
                  "    timeout-minutes: !!int \"5\"\n"
                  "    bar: 2\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 2, Col: 1): Unexpected value 'foo'",
                  ".github/workflows/w.yml: The scalar style 'DoubleQuoted' on line 5 and column "
                  "22 is not valid with the tag 'tag:yaml.org,2002:int'");
    schema_context_free(&ctx);
    schema_context_init(&ctx, &arena, &schema_workflow);
    /* A failure inside a value that is skipped (an unknown key's) still stops there. */
    read_workflow("on: push\n"
                  "jobs:\n"
                  "  build:\n"
                  "    runs-on: x\n"
                  "    bogus:\n"
                  "      - [a, *nope]\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 5, Col: 5): Unexpected value 'bogus'",
                  ".github/workflows/w.yml: Unknown anchor 'nope'");
    schema_context_free(&ctx);
    schema_context_init(&ctx, &arena, &schema_workflow);
    /* A second document fails after the whole first one is checked. */
    read_workflow("on: push\n"
                  "foo: 1\n"
                  "jobs: {a: {runs-on: x}}\n"
                  "---\n"
                  "b: 1\n");
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 2, Col: 1): Unexpected value 'foo'",
                  ".github/workflows/w.yml: Expected stream end parse event");
    teardown();
}

Test(schema, duplicates_in_large_mappings)
{
    setup();
    struct buf text = BUF_INIT;
    buf_puts(&text, "on: push\njobs:\n  a:\n    runs-on: x\n    env:\n");
    for (int i = 0; i < 100; i++)
        buf_printf(&text, "      Key%d: v\n", i);
    buf_puts(&text, "      KEY42: again\n      key99: again\n      key100: new\n");
    read_workflow(text.data);
    buf_free(&text);
    ASSERT_ERRORS(".github/workflows/w.yml (Line: 106, Col: 7): 'KEY42' is already defined",
                  ".github/workflows/w.yml (Line: 107, Col: 7): 'key99' is already defined");
    teardown();
}
