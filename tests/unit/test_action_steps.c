#include "runner/action_steps.h"

#include "lib/path.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct action *load(const char *yaml)
{
    char tmpl[] = "/tmp/test_action_steps_XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    char *file = path_join(tmpl, "action.yml");
    struct error err = {0};
    cr_assert_eq(path_write_file_atomic(file, yaml, strlen(yaml), 0644, &err), 0);
    struct action *a = NULL;
    cr_assert_eq(action_load(tmpl, &a, &err), 0, "%s", err.message);
    path_remove_all(tmpl, &err);
    free(file);
    return a;
}

Test(action_steps, run_and_uses_steps)
{
    struct action *a = load("runs:\n"
                            "  using: composite\n"
                            "  steps:\n"
                            "    - id: first\n"
                            "      shell: bash\n"
                            "      run: echo hi\n"
                            "      working-directory: sub\n"
                            "      if: inputs.go == 'yes'\n"
                            "    - uses: octo/tools/lint@v2\n"
                            "      with: {level: 3}\n"
                            "      if: ${{ always() }}\n"
                            "    - uses: ./local/thing\n"
                            "    - uses: docker://alpine:3\n");
    struct arena arena;
    arena_init(&arena, 0);
    struct job_step *steps = NULL;
    struct error err = {0};
    int n = action_steps_convert(&arena, a, a, &steps, &err);
    cr_assert_eq(n, 4, "%s", err.message);
    cr_assert_eq(steps[0].kind, JOB_STEP_SCRIPT);
    cr_assert_str_eq(steps[0].context_name, "first");
    cr_assert_str_eq(steps[0].condition, "success() && (inputs.go == 'yes')");
    cr_assert_not_null(token_mapping_get(steps[0].inputs, "workingDirectory", false));
    cr_assert_eq(steps[1].kind, JOB_STEP_REPOSITORY);
    cr_assert_str_eq(steps[1].repository_name, "octo/tools");
    cr_assert_str_eq(steps[1].repository_path, "lint");
    cr_assert_str_eq(steps[1].repository_ref, "v2");
    cr_assert_str_eq(steps[1].condition, "always()");
    cr_assert_str_eq(steps[1].context_name, "__2");
    cr_assert_str_eq(steps[2].repository_type, "self");
    cr_assert_str_eq(steps[2].repository_path, "./local/thing");
    cr_assert_str_eq(steps[2].condition, "success()");
    cr_assert_eq(steps[3].kind, JOB_STEP_CONTAINER);
    cr_assert_str_eq(steps[3].image, "alpine:3");
    cr_assert_str_neq(steps[0].id, steps[1].id);
    arena_free(&arena);
    action_free(a);
}

Test(action_steps, run_without_shell_is_refused_with_its_position)
{
    char tmpl[] = "/tmp/test_action_steps_XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    char *file = path_join(tmpl, "action.yml");
    const char *yaml = "runs:\n  using: composite\n  steps:\n    - run: echo hi\n";
    struct error err = {0};
    cr_assert_eq(path_write_file_atomic(file, yaml, strlen(yaml), 0644, &err), 0);
    struct action *a = NULL;
    cr_assert_lt(action_load(tmpl, &a, &err), 0);
    cr_assert(strstr(err.message, "(Line: 4, Col: 7): Required property is missing: shell"), "%s",
              err.message);
    path_remove_all(tmpl, &err);
    free(file);
}

Test(action_steps, status_functions_are_found_by_the_parser)
{
    struct arena arena;
    arena_init(&arena, 0);
    struct token *t = token_new_string(&arena, "failure() || inputs.x");
    cr_assert_str_eq(action_steps_condition(&arena, t, "x"), "failure() || inputs.x");
    /* The word in a string literal is not a call. */
    t = token_new_string(&arena, "inputs.x == 'always()'");
    cr_assert_str_eq(action_steps_condition(&arena, t, "x"),
                     "success() && (inputs.x == 'always()')");
    cr_assert_str_eq(action_steps_condition(&arena, NULL, "always()"), "always()");
    arena_free(&arena);
}
