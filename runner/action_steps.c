/* Composite actions' runs.steps as the job message's steps, so that the worker runs them as
 * it runs the job's own. */
#include "runner/action_steps.h"

#include "lib/buf.h"
#include "workflow/expr.h"

#include <errno.h>
#include <string.h>

static const char *token_text(struct arena *arena, const struct token *t)
{
    if (!t)
        return NULL;
    if (t->type == TOKEN_EXPRESSION)
        return t->u.expression;
    return token_to_display_string(arena, t);
}

static void ignore_name(void *data, const char *name)
{
    (void)data, (void)name;
}

static void note_status_function(void *data, const char *name)
{
    static const char *const status[] = {"success", "failure", "cancelled", "always"};
    for (size_t i = 0; i < sizeof status / sizeof status[0]; i++)
        if (str_eq_nocase(name, status[i]))
            *(bool *)data = true;
}

const char *action_steps_condition(struct arena *arena, const struct token *t, const char *fallback)
{
    const char *text = token_text(arena, t);
    if (!text || !*text)
        return fallback;
    /* The status functions are built in; a condition that does not parse is kept as it is
     * and fails when evaluated, with the parser's message. */
    static const struct expr_parse_options any = {0};
    struct expr *e = NULL;
    enum expr_stage stage;
    struct error err = {0};
    if (expr_parse(text, &any, &e, &stage, &err) < 0)
        return text;
    bool has_status = false;
    expr_walk_references(e, ignore_name, note_status_function, &has_status);
    expr_free(e);
    return has_status ? text : arena_printf(arena, "success() && (%s)", text);
}

static struct token *string_token(struct arena *arena, const char *s)
{
    return token_new_string(arena, s);
}

/* One step of runs.steps as the job message would carry it. */
static int convert_step(struct arena *arena, const struct action *a, const void *owner,
                        const struct token *t, size_t index, struct job_step *out,
                        struct error *err)
{
    const char *file =
        t->file > 0 && (size_t)t->file <= a->file_count ? a->file_table[t->file - 1] : a->file;
    if (t->type != TOKEN_MAPPING)
        return error_set_at(err, EINVAL, file, t->line, t->col, "a step must be a mapping");
    const struct token *id = token_mapping_get(t, "id", true);
    const struct token *run = token_mapping_get(t, "run", true);
    const struct token *uses = token_mapping_get(t, "uses", true);
    *out = (struct job_step){0};
    out->id = arena_printf(arena, "%p-%zu", owner, index);
    out->context_name =
        id && id->type == TOKEN_STRING ? id->u.string : arena_printf(arena, "__%zu", index + 1);
    out->display_name_token = token_mapping_get(t, "name", true);
    out->condition = action_steps_condition(arena, token_mapping_get(t, "if", true), "success()");
    out->continue_on_error = token_mapping_get(t, "continue-on-error", true);
    out->timeout_minutes = token_mapping_get(t, "timeout-minutes", true);
    out->environment = token_mapping_get(t, "env", true);
    if (run) {
        const struct token *shell = token_mapping_get(t, "shell", true);
        if (!shell)
            return error_set_at(err, EINVAL, file, t->line, t->col,
                                "Required property is missing: shell");
        out->kind = JOB_STEP_SCRIPT;
        struct token *inputs = token_new_mapping(arena);
        token_mapping_add(arena, inputs, string_token(arena, "script"), (struct token *)run);
        token_mapping_add(arena, inputs, string_token(arena, "shell"), (struct token *)shell);
        const struct token *wd = token_mapping_get(t, "working-directory", true);
        if (wd)
            token_mapping_add(arena, inputs, string_token(arena, "workingDirectory"),
                              (struct token *)wd);
        out->inputs = inputs;
        return 0;
    }
    if (!uses || uses->type != TOKEN_STRING)
        return error_set_at(err, EINVAL, file, t->line, t->col,
                            "a composite step needs 'run' or 'uses'");
    struct action_reference ref;
    if (action_reference_parse(uses->u.string, &ref, err) < 0)
        return error_prefix(err, "%s (Line: %d, Col: %d)", file, uses->line, uses->col);
    out->inputs = token_mapping_get(t, "with", true);
    switch (ref.kind) {
    case ACTION_REFERENCE_DOCKER:
        out->kind = JOB_STEP_CONTAINER;
        out->image = arena_strdup(arena, ref.image);
        break;
    case ACTION_REFERENCE_LOCAL:
        out->kind = JOB_STEP_REPOSITORY;
        out->repository_type = "self";
        out->repository_path = arena_strdup(arena, ref.local_path);
        break;
    case ACTION_REFERENCE_REPOSITORY:
        out->kind = JOB_STEP_REPOSITORY;
        out->repository_type = "GitHub";
        out->repository_name = arena_printf(arena, "%s/%s", ref.owner, ref.repo);
        out->repository_ref = arena_strdup(arena, ref.ref);
        out->repository_path = arena_strdup(arena, ref.path);
        break;
    }
    action_reference_clear(&ref);
    return 0;
}

int action_steps_convert(struct arena *arena, const struct action *action, const void *owner,
                         struct job_step **steps, struct error *err)
{
    const struct token *list = action->steps;
    size_t count = list && list->type == TOKEN_SEQUENCE ? list->u.sequence.count : 0;
    *steps = arena_alloc(arena, (count + 1) * sizeof **steps);
    for (size_t i = 0; i < count; i++)
        if (convert_step(arena, action, owner, list->u.sequence.items[i], i, &(*steps)[i], err) < 0)
            return err->code;
    return (int)count;
}
