#include "actions/action.h"

#include "lib/buf.h"
#include "lib/path.h"
#include "workflow/schema.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- references ---------------------------------------------------------------------- */

int action_reference_parse(const char *uses, struct action_reference *out, struct error *err)
{
    *out = (struct action_reference){0};
    if (!uses || !*uses)
        return error_set(err, EINVAL,
                         "'uses' is empty: expected ./path, owner/repo@ref or "
                         "docker://image");
    if (strncmp(uses, "docker://", 9) == 0) {
        out->kind = ACTION_REFERENCE_DOCKER;
        out->image = xstrdup(uses + 9);
        return 0;
    }
    if (strncmp(uses, "./", 2) == 0 || strcmp(uses, ".") == 0) {
        out->kind = ACTION_REFERENCE_LOCAL;
        out->local_path = xstrdup(uses);
        return 0;
    }
    const char *at = strrchr(uses, '@');
    const char *slash = strchr(uses, '/');
    if (!at || !slash || slash > at || slash == uses || at[1] == '\0')
        return error_set(err, EINVAL, "Expected format {owner}/{repo}[/path]@ref. Actual '%s'",
                         uses);
    out->kind = ACTION_REFERENCE_REPOSITORY;
    out->owner = xstrndup(uses, (size_t)(slash - uses));
    const char *repo = slash + 1;
    const char *path = memchr(repo, '/', (size_t)(at - repo));
    out->repo = xstrndup(repo, (size_t)((path ? path : at) - repo));
    out->path = path ? xstrndup(path + 1, (size_t)(at - path - 1)) : xstrdup("");
    out->ref = xstrdup(at + 1);
    if (!*out->repo) {
        action_reference_clear(out);
        return error_set(err, EINVAL, "Expected format {owner}/{repo}[/path]@ref. Actual '%s'",
                         uses);
    }
    return 0;
}

void action_reference_clear(struct action_reference *ref)
{
    free(ref->owner);
    free(ref->repo);
    free(ref->path);
    free(ref->ref);
    free(ref->local_path);
    free(ref->image);
    *ref = (struct action_reference){0};
}

/* ---- the model ------------------------------------------------------------------------ */

static const char *scalar(const struct token *map, const char *key)
{
    const struct token *t = map ? token_mapping_get(map, key, true) : NULL;
    return t && t->type == TOKEN_STRING ? t->u.string : NULL;
}

static bool token_true(const struct token *t)
{
    if (!t)
        return false;
    if (t->type == TOKEN_BOOLEAN)
        return t->u.boolean;
    return t->type == TOKEN_STRING && strcasecmp(t->u.string, "true") == 0;
}

static void read_inputs(struct action *a, const struct token *inputs)
{
    if (!inputs || inputs->type != TOKEN_MAPPING)
        return;
    a->inputs = arena_alloc(&a->arena, (inputs->u.mapping.count + 1) * sizeof *a->inputs);
    for (size_t i = 0; i < inputs->u.mapping.count; i++) {
        const struct token_pair *p = &inputs->u.mapping.pairs[i];
        if (p->key->type != TOKEN_STRING)
            continue;
        struct action_input *in = &a->inputs[a->input_count++];
        in->name = p->key->u.string;
        if (p->value && p->value->type == TOKEN_MAPPING) {
            in->default_value = token_mapping_get(p->value, "default", true);
            in->required = token_true(token_mapping_get(p->value, "required", true));
            in->deprecation_message = scalar(p->value, "deprecationMessage");
        }
    }
}

static void read_outputs(struct action *a, const struct token *outputs)
{
    if (!outputs || outputs->type != TOKEN_MAPPING)
        return;
    a->outputs = arena_alloc(&a->arena, (outputs->u.mapping.count + 1) * sizeof *a->outputs);
    for (size_t i = 0; i < outputs->u.mapping.count; i++) {
        const struct token_pair *p = &outputs->u.mapping.pairs[i];
        if (p->key->type != TOKEN_STRING)
            continue;
        struct action_output *out = &a->outputs[a->output_count++];
        out->name = p->key->u.string;
        if (p->value && p->value->type == TOKEN_MAPPING)
            out->value = token_mapping_get(p->value, "value", true);
    }
}

static const struct {
    const char *name;
    int version;
} node_versions[] = {{"node12", 12}, {"node16", 16}, {"node20", 20}, {"node24", 24}};

static int read_runs(struct action *a, const struct token *runs, struct error *err)
{
    const char *using = scalar(runs, "using");
    if (!using)
        return error_set_at(err, EINVAL, a->file, runs->line, runs->col,
                            "Missing 'using' value. 'using' requires 'composite', 'docker', "
                            "'node12', 'node16', 'node20' or 'node24'.");
    a->using = using;
    for (size_t i = 0; i < sizeof node_versions / sizeof node_versions[0]; i++) {
        if (strcasecmp(using, node_versions[i].name) == 0) {
            a->kind = ACTION_NODE;
            a->node_version = node_versions[i].version;
            a->main = scalar(runs, "main");
            a->pre = scalar(runs, "pre");
            a->post = scalar(runs, "post");
            a->pre_if = token_mapping_get(runs, "pre-if", true);
            a->post_if = token_mapping_get(runs, "post-if", true);
            if (!a->main)
                return error_set_at(err, EINVAL, a->file, runs->line, runs->col,
                                    "Entry javascript file ('runs.main') is required");
            return 0;
        }
    }
    if (strcasecmp(using, "composite") == 0) {
        a->kind = ACTION_COMPOSITE;
        a->steps = token_mapping_get(runs, "steps", true);
        return 0;
    }
    if (strcasecmp(using, "docker") == 0) {
        a->kind = ACTION_DOCKER;
        a->image = scalar(runs, "image");
        a->entrypoint = scalar(runs, "entrypoint");
        a->pre_entrypoint = scalar(runs, "pre-entrypoint");
        a->post_entrypoint = scalar(runs, "post-entrypoint");
        a->pre_if = token_mapping_get(runs, "pre-if", true);
        a->post_if = token_mapping_get(runs, "post-if", true);
        a->args = token_mapping_get(runs, "args", true);
        a->env = token_mapping_get(runs, "env", true);
        return 0;
    }
    /* GitHub's words for an unknown runs.using. */
    return error_set_at(err, EINVAL, a->file, runs->line, runs->col,
                        "'using: %s' is not supported, use 'docker', 'node12', 'node16', "
                        "'node20', 'node24' or 'composite' instead.",
                        using);
}

static int parse_action(struct action *a, const char *text, size_t len, struct error *err)
{
    struct schema_context ctx;
    schema_context_init(&ctx, &a->arena, &schema_action);
    struct token *root = schema_read_action(&ctx, a->file, text, len, NULL);
    int rc = root ? schema_context_check(&ctx, err)
                  : error_set_at(err, EINVAL, a->file, 0, 0, "the file is not valid YAML");
    if (rc == 0 && ctx.nerrors == 0 && root) {
        a->file_count = ctx.nfiles;
        a->file_table = arena_alloc(&a->arena, (ctx.nfiles + 1) * sizeof *a->file_table);
        for (size_t i = 0; i < ctx.nfiles; i++)
            a->file_table[i] = arena_strdup(&a->arena, ctx.files[i]);
        a->name = scalar(root, "name");
        a->description = scalar(root, "description");
        read_inputs(a, token_mapping_get(root, "inputs", true));
        read_outputs(a, token_mapping_get(root, "outputs", true));
        const struct token *runs = token_mapping_get(root, "runs", true);
        rc = runs ? read_runs(a, runs, err)
                  : error_set_at(err, EINVAL, a->file, 0, 0, "'runs' is missing");
    }
    schema_context_free(&ctx);
    return rc;
}

int action_load(const char *dir, struct action **out, struct error *err)
{
    struct action *a = xcalloc(1, sizeof *a);
    arena_init(&a->arena, 0);
    a->dir = xstrdup(dir);
    static const char *const names[] = {"action.yml", "action.yaml"};
    char *text = NULL;
    size_t len = 0;
    for (size_t i = 0; i < 2 && !text; i++) {
        free(a->file);
        a->file = path_join(dir, names[i]);
        struct error ignored = {0};
        text = path_read_file(a->file, &len, &ignored);
    }
    int rc;
    if (text) {
        rc = parse_action(a, text, len, err);
        free(text);
    } else {
        cleanup_free char *dockerfile = path_join(dir, "Dockerfile");
        struct stat st;
        if (stat(dockerfile, &st) == 0) {
            a->kind = ACTION_DOCKER;
            a->using = "docker";
            rc = 0;
        } else {
            /* The official runner's message, with its hint. */
            rc = error_set(err, ENOENT,
                           "Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '%s'. "
                           "Did you forget to run actions/checkout before running your local "
                           "action?",
                           dir);
        }
    }
    if (rc < 0) {
        action_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int action_load_file(const char *file, struct action **out, struct error *err)
{
    size_t len = 0;
    char *text = path_read_file(file, &len, err);
    if (!text)
        return err->code;
    struct action *a = xcalloc(1, sizeof *a);
    arena_init(&a->arena, 0);
    a->file = xstrdup(file);
    const char *slash = strrchr(file, '/');
    a->dir = slash ? xstrndup(file, (size_t)(slash - file)) : xstrdup(".");
    int rc = parse_action(a, text, len, err);
    free(text);
    if (rc < 0) {
        action_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void action_free(struct action *action)
{
    if (!action)
        return;
    arena_free(&action->arena);
    free(action->dir);
    free(action->file);
    free(action);
}
