#include "workflow/workflow.h"

#include "lib/buf.h"
#include "workflow/expr.h"
#include "workflow/idbuilder_internal.h"
#include "workflow/matrix.h"
#include "workflow/needs.h"
#include "workflow/yaml_reader.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GitHub's converter throws on a token of the wrong type ("AssertMapping" and friends); the
 * exception ends the whole conversion and becomes one error without a position. The port keeps
 * that flow: a failed assertion records the error and jumps back to the conversion's start.
 * Every allocation on the way is in the arena, so nothing leaks across the jump. */
struct converter {
    struct workflow_context *ctx;
    jmp_buf thrown;
    struct token *success; /* the default condition, shared (tokens are read-only) */
};

/* ---- context ---------------------------------------------------------------------------- */

void workflow_context_init(struct workflow_context *ctx, struct schema_context *schema,
                           const struct workflow_options *options)
{
    static const struct workflow_options defaults;
    memset(ctx, 0, sizeof(*ctx));
    ctx->schema = schema;
    ctx->options = options ? options : &defaults;
}

int workflow_context_add_file(struct workflow_context *ctx, const char *name)
{
    return schema_context_add_file(ctx->schema, name);
}

const char *workflow_context_file_name(const struct workflow_context *ctx, int file)
{
    return schema_context_file_name(ctx->schema, file);
}

size_t workflow_context_error_count(const struct workflow_context *ctx)
{
    return ctx->schema->nerrors;
}

void workflow_context_add_error(struct workflow_context *ctx, const char *message)
{
    schema_context_error(ctx->schema, NULL, 0, "%s", message);
}

void workflow_context_error(struct workflow_context *ctx, const struct token *at, const char *fmt,
                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *message = xvasprintf(fmt, ap);
    va_end(ap);
    schema_context_error(ctx->schema, at, at ? at->file : 0, "%s", message);
}

/* ---- assertions (GitHub's AssertX: wrong type ends the conversion) ------------------------ */

static const char *token_class(const struct token *t)
{
    static const char *const names[] = {
        [TOKEN_STRING] = "StringToken",           [TOKEN_SEQUENCE] = "SequenceToken",
        [TOKEN_MAPPING] = "MappingToken",         [TOKEN_EXPRESSION] = "BasicExpressionToken",
        [TOKEN_INSERT] = "InsertExpressionToken", [TOKEN_BOOLEAN] = "BooleanToken",
        [TOKEN_NUMBER] = "NumberToken",           [TOKEN_NULL] = "NullToken",
    };
    return t && (unsigned)t->type < sizeof(names) / sizeof(names[0]) ? names[t->type] : "";
}

static void throw(struct converter * c, const char *fmt, ...) __attribute__((noreturn))
__attribute__((format(printf, 2, 3)));

static void throw(struct converter * c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *message = xvasprintf(fmt, ap);
    va_end(ap);
    workflow_context_add_error(c->ctx, message);
    free(message); /* longjmp skips cleanup handlers */
    longjmp(c->thrown, 1);
}

static const struct token *expect_type(struct converter *c, const struct token *t, bool ok,
                                       const char *what, const char *expected)
{
    if (!ok)
        throw(c, "Unexpected type '%s' encountered while reading '%s'. The type '%s' was expected.",
              token_class(t), what, expected);
    return t;
}

static struct token *as_string(struct converter *c, const struct token *t, const char *what)
{
    return (struct token *)expect_type(c, t, t && t->type == TOKEN_STRING, what, "StringToken");
}

static struct token *as_mapping(struct converter *c, const struct token *t, const char *what)
{
    return (struct token *)expect_type(c, t, t && t->type == TOKEN_MAPPING, what, "MappingToken");
}

static struct token *as_sequence(struct converter *c, const struct token *t, const char *what)
{
    return (struct token *)expect_type(c, t, t && t->type == TOKEN_SEQUENCE, what, "SequenceToken");
}

static bool is_scalar(const struct token *t)
{
    return t && t->type != TOKEN_SEQUENCE && t->type != TOKEN_MAPPING;
}

static struct token *as_scalar(struct converter *c, const struct token *t, const char *what)
{
    return (struct token *)expect_type(c, t, is_scalar(t), what, "ScalarToken");
}

static void as_boolean(struct converter *c, const struct token *t, const char *what)
{
    expect_type(c, t, t && t->type == TOKEN_BOOLEAN, what, "BooleanToken");
}

static void as_number(struct converter *c, const struct token *t, const char *what)
{
    expect_type(c, t, t && t->type == TOKEN_NUMBER, what, "NumberToken");
}

static void unexpected_value(struct converter *c, const struct token *literal, const char *what)
{
    throw(c, "Error while reading '%s'. Unexpected value '%s'", what,
          token_to_display_string(c->ctx->schema->arena, literal));
}

static bool is_expression(const struct token *t)
{
    return t && (t->type == TOKEN_EXPRESSION || t->type == TOKEN_INSERT);
}

static bool has_expression(const struct token *t)
{
    if (!t)
        return false;
    if (is_expression(t))
        return true;
    if (t->type == TOKEN_SEQUENCE) {
        for (size_t i = 0; i < t->u.sequence.count; i++)
            if (has_expression(t->u.sequence.items[i]))
                return true;
    } else if (t->type == TOKEN_MAPPING) {
        for (size_t i = 0; i < t->u.mapping.count; i++)
            if (has_expression(t->u.mapping.pairs[i].key) ||
                has_expression(t->u.mapping.pairs[i].value))
                return true;
    }
    return false;
}

static const char *str_of(const struct token *t)
{
    return t && t->type == TOKEN_STRING && t->u.string ? t->u.string : "";
}

static bool key_is(const struct token *key, const char *name)
{
    return strcmp(str_of(key), name) == 0;
}

#define FOR_PAIRS(m, i) for (size_t i = 0; i < (m)->u.mapping.count; i++)
#define KEY(m, i) ((m)->u.mapping.pairs[i].key)
#define VALUE(m, i) ((m)->u.mapping.pairs[i].value)

/* ---- if conditions ---------------------------------------------------------------------- */

/* What `if:` may use, per kind (GitHub's converter: job, step, snapshot conditions). */
static const char *const job_if_names[] = {"github", "vars", "inputs", "needs", NULL};
static const char *const step_if_names[] = {"github",   "vars",   "inputs", "needs",
                                            "strategy", "matrix", "steps",  "job",
                                            "runner",   "env",    NULL};
static const struct expr_function job_if_functions[] = {
    {"always", 0, 0, NULL},
    {"failure", 0, -1, NULL},
    {"cancelled", 0, 0, NULL},
    {"success", 0, -1, NULL},
    {0},
};
static const struct expr_function step_if_functions[] = {
    {"always", 0, 0, NULL},  {"cancelled", 0, 0, NULL},   {"failure", 0, 0, NULL},
    {"success", 0, 0, NULL}, {"hashFiles", 1, 255, NULL}, {0},
};

static void note_status_function(void *data, const char *name)
{
    static const char *const status[] = {"success", "failure", "cancelled", "always"};
    for (size_t i = 0; i < sizeof(status) / sizeof(status[0]); i++)
        if (str_eq_nocase(name, status[i]))
            *(bool *)data = true;
}

static struct token *new_expression(struct converter *c, const struct token *at, const char *expr)
{
    if (!at && c->success && strcmp(expr, "success()") == 0)
        return c->success;
    struct token *t = arena_alloc(c->ctx->schema->arena, sizeof(*t));
    t->type = TOKEN_EXPRESSION;
    t->u.expression = arena_strdup(c->ctx->schema->arena, expr);
    if (at) {
        t->file = at->file;
        t->line = at->line;
        t->col = at->col;
    }
    return t;
}

static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n\v\f", *s))
            return false;
    return true;
}

/* Empty means success(); a condition without a status function runs only on success. */
static struct token *convert_if(struct converter *c, const struct token *t, const char *kind)
{
    if (!t)
        return new_expression(c, NULL, "success()");
    const char *condition;
    if (t->type == TOKEN_EXPRESSION) {
        condition = t->u.expression;
    } else {
        char what[32];
        snprintf(what, sizeof(what), "%s if", kind);
        condition = as_string(c, t, what)->u.string;
    }
    if (!condition || is_blank(condition))
        return new_expression(c, t, "success()");
    bool job = strcmp(kind, "Job") == 0;
    struct expr_parse_options po = {
        .named_values = job ? job_if_names : step_if_names,
        .functions = job ? job_if_functions : step_if_functions,
    };
    struct expr *e = NULL;
    enum expr_stage stage;
    struct error err = {0};
    if (expr_parse(condition, &po, &e, &stage, &err) < 0) {
        workflow_context_error(c->ctx, t, "%s", err.message);
        return NULL;
    }
    bool has_status = false;
    expr_walk_references(e, NULL, note_status_function, &has_status);
    expr_free(e);
    if (has_status)
        return new_expression(c, t, condition);
    cleanup_free char *wrapped = xasprintf("success() && (%s)", condition);
    return new_expression(c, t, wrapped);
}

/* ---- early validation of job properties ------------------------------------------------- */

static void check_concurrency(struct converter *c, const struct token *t)
{
    if (is_expression(t))
        return;
    const char *group = "";
    if (t->type == TOKEN_STRING) {
        group = t->u.string;
    } else {
        as_mapping(c, t, "concurrency");
        FOR_PAIRS(t, i)
        {
            const struct token *key = as_string(c, KEY(t, i), "concurrency key");
            if (is_expression(VALUE(t, i)) || is_expression(KEY(t, i)))
                continue;
            if (key_is(key, "group"))
                group = as_string(c, VALUE(t, i), "group key")->u.string;
            else if (key_is(key, "cancel-in-progress"))
                as_boolean(c, VALUE(t, i), "cancel-in-progress key");
            else if (key_is(key, "queue"))
                as_string(c, VALUE(t, i), "queue key");
            else
                unexpected_value(c, key, "concurrency key");
        }
    }
    if (utf16_length(group) > 400)
        workflow_context_error(c->ctx, t,
                               "Concurrency group name must be less than 400 characters");
}

static void check_runs_on_labels(struct converter *c, const struct token *t)
{
    if (is_expression(t) || t->type != TOKEN_SEQUENCE)
        return;
    for (size_t i = 0; i < t->u.sequence.count; i++)
        if (!is_expression(t->u.sequence.items[i]))
            as_string(c, t->u.sequence.items[i], "job runs-on labels sequence item");
}

static bool is_group_prefix(const char *s, size_t n)
{
    static const char *const prefixes[] = {"org", "organization", "ent", "enterprise"};
    for (size_t i = 0; i < 4; i++)
        if (strlen(prefixes[i]) == n && strncmp(s, prefixes[i], n) == 0)
            return true;
    return false;
}

static void check_runs_on(struct converter *c, const struct token *t)
{
    check_runs_on_labels(c, t);
    if (t->type != TOKEN_MAPPING)
        return;
    FOR_PAIRS(t, i)
    {
        const struct token *key = as_string(c, KEY(t, i), "job runs-on property name");
        const struct token *value = VALUE(t, i);
        if (key_is(key, "labels")) {
            check_runs_on_labels(c, value);
            continue;
        }
        if (!key_is(key, "group") || is_expression(value))
            continue;
        const char *group = as_string(c, value, "job runs-on group name")->u.string;
        const char *slash = strchr(group, '/');
        if (!slash)
            continue;
        const char *second = strchr(slash + 1, '/');
        if (!second && !slash[1])
            workflow_context_error(c->ctx, value, "Invalid runs-on group name '%s'.", group);
        else if (second || !is_group_prefix(group, (size_t)(slash - group)))
            workflow_context_error(c->ctx, value,
                                   "Invalid runs-on group name '%s'. Please use 'organization/' "
                                   "or 'enterprise/' prefix to target a single runner group.",
                                   group);
    }
}

/* A step's env: or with: — a mapping of strings, unless an expression stands for it (or
 * for a key or value), which is checked when it is evaluated. */
static void check_string_map(struct converter *c, const struct token *value, const char *what)
{
    if (is_expression(value))
        return;
    as_mapping(c, value, what);
    char key_what[64], value_what[64];
    snprintf(key_what, sizeof key_what, "%s key", what);
    snprintf(value_what, sizeof value_what, "%s value", what);
    FOR_PAIRS(value, k)
    {
        if (is_expression(KEY(value, k)))
            continue;
        as_string(c, KEY(value, k), key_what);
        if (!is_expression(VALUE(value, k)))
            as_string(c, VALUE(value, k), value_what);
    }
}

static void check_container(struct converter *c, const struct token *t, bool service)
{
    if (has_expression(t))
        return;
    const char *image = NULL;
    if (t->type == TOKEN_STRING) {
        image = t->u.string;
    } else {
        as_mapping(c, t, "container");
        FOR_PAIRS(t, i)
        {
            const struct token *key = as_string(c, KEY(t, i), "container key");
            const struct token *value = VALUE(t, i);
            char *what = arena_printf(c->ctx->schema->arena, "container %s", key->u.string);
            const char *name = key->u.string;
            if (strcmp(name, "image") == 0 || strcmp(name, "options") == 0) {
                const char *s = as_string(c, value, what)->u.string;
                if (strcmp(name, "image") == 0)
                    image = s;
            } else if (strcmp(name, "env") == 0) {
                as_mapping(c, value, what);
                FOR_PAIRS(value, k)
                {
                    char *item =
                        arena_printf(c->ctx->schema->arena, "container env %s",
                                     token_to_display_string(c->ctx->schema->arena, KEY(value, k)));
                    as_string(c, VALUE(value, k), item);
                }
            } else if (strcmp(name, "entrypoint") == 0 || strcmp(name, "command") == 0) {
                if (!c->ctx->options->features.service_container_command)
                    workflow_context_error(c->ctx, key, "The key '%s' is not allowed", name);
                else
                    as_string(c, value, what);
            } else if (strcmp(name, "ports") == 0 || strcmp(name, "volumes") == 0) {
                as_sequence(c, value, what);
                for (size_t k = 0; k < value->u.sequence.count; k++) {
                    const struct token *item = value->u.sequence.items[k];
                    char *w = arena_printf(c->ctx->schema->arena, "container %s %s", name,
                                           token_to_display_string(c->ctx->schema->arena, item));
                    as_string(c, item, w);
                }
            } else if (strcmp(name, "credentials") == 0) {
                as_mapping(c, value, "credentials");
                FOR_PAIRS(value, k)
                {
                    const struct token *ck = as_string(c, KEY(value, k), "credentials key");
                    if (key_is(ck, "username") || key_is(ck, "password")) {
                        as_string(c, VALUE(value, k), ck->u.string);
                    } else {
                        char *w =
                            arena_printf(c->ctx->schema->arena, "credentials key %s", ck->u.string);
                        unexpected_value(c, ck, w);
                    }
                }
            } else {
                unexpected_value(c, key, "container key");
            }
        }
    }
    bool docker_prefix = image && str_starts_with(image, "docker://");
    if (docker_prefix)
        image += strlen("docker://");
    /* GitHub lets `container: ''` (or an empty image) mean "no container", but a mapping
     * without any image is an error. */
    if ((!image && t->type == TOKEN_MAPPING) || ((!image || !*image) && (docker_prefix || service)))
        workflow_context_error(c->ctx, t, "Container image cannot be empty");
}

static void check_services(struct converter *c, const struct token *t)
{
    if (has_expression(t))
        return;
    as_mapping(c, t, "services");
    FOR_PAIRS(t, i)
    {
        as_string(c, KEY(t, i), "services key");
        check_container(c, VALUE(t, i), true);
    }
}

static void check_environment(struct converter *c, const struct token *t)
{
    if (is_expression(t) || t->type == TOKEN_STRING)
        return;
    as_mapping(c, t, "job environment");
    FOR_PAIRS(t, i)
    {
        /* Only `url` may hold expressions here (the runner expands it). */
        if (!key_is(KEY(t, i), "url") && (has_expression(KEY(t, i)) || has_expression(VALUE(t, i))))
            return;
        if (key_is(KEY(t, i), "url") && is_expression(KEY(t, i)))
            return;
    }
    FOR_PAIRS(t, i)
    {
        const struct token *key = as_string(c, KEY(t, i), "job environment key");
        if (key_is(key, "name"))
            as_string(c, VALUE(t, i), "job environment name");
        else if (key_is(key, "deployment"))
            as_boolean(c, VALUE(t, i), "job environment deployment");
        else if (!key_is(key, "url"))
            unexpected_value(c, key, "job environment key");
    }
}

static void report_matrix(void *data, const struct token *at, const char *message)
{
    struct converter *c = data;
    if (at)
        workflow_context_error(c->ctx, at, "%s", message);
    else
        workflow_context_add_error(c->ctx, message);
}

/* GitHub's TemplateMemory estimate of a context value: 24 an object, array, boolean or
 * number, strings (dictionary keys too) 26 more plus 2 a UTF-16 code unit, 8 a null. */
enum { CONTEXT_MIN_OBJECT = 24, CONTEXT_STRING_OVERHEAD = 26, CONTEXT_NULL = 8 };

static size_t string_size(const char *s)
{
    return CONTEXT_STRING_OVERHEAD + 2 * yaml_reader_text_length(s, strlen(s));
}

static size_t context_size(const json_t *v)
{
    if (json_is_null(v))
        return CONTEXT_NULL;
    if (json_is_string(v))
        return CONTEXT_MIN_OBJECT + string_size(json_string_value(v));
    size_t n = CONTEXT_MIN_OBJECT;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            n += context_size(json_array_get(v, i));
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member)
        {
            n += CONTEXT_MIN_OBJECT + string_size(key) + context_size(member);
        }
    }
    return n;
}

/* What one configuration costs GitHub's early validation at least: the configuration, an
 * empty id, the null display name, "matrix", an empty matrix, "strategy" and its context. */
static size_t configuration_min_size(void)
{
    static const char *const strategy_keys[] = {"fail-fast", "job-index", "job-total",
                                                "max-parallel"};
    size_t n = CONTEXT_MIN_OBJECT + 2 * CONTEXT_STRING_OVERHEAD + string_size("matrix") +
               CONTEXT_MIN_OBJECT + string_size("strategy") + CONTEXT_MIN_OBJECT;
    for (size_t i = 0; i < 4; i++)
        n += CONTEXT_MIN_OBJECT + string_size(strategy_keys[i]) + CONTEXT_MIN_OBJECT;
    return n;
}

/* Notes the configuration limit (set to what fits); other errors were reported by the
 * validation before. */
static void note_matrix_limit(void *data, const struct token *at, const char *message)
{
    (void)at;
    if (str_starts_with(message, "Strategy for job"))
        *(bool *)data = true;
}

/* GitHub's early validation builds every configuration of a literal matrix and counts it
 * against the result size (MatrixBuilder.CreateConfiguration: the configuration, its id, its
 * display name - null here, the job name being unknown -, "matrix" and the matrix context;
 * then ConvertToStrategy: "strategy" and the strategy context of each). Past the limit it
 * throws "Maximum object size exceeded". A matrix too large to fit is refused without building
 * it: each configuration costs at least configuration_min_size(). */
static void count_strategy(struct converter *c, const struct token *t)
{
    struct schema_context *schema = c->ctx->schema;
    size_t max = schema->max_bytes ? schema->max_bytes : SCHEMA_MAX_BYTES;
    if (has_expression(t) || t->type != TOKEN_MAPPING || !token_mapping_get(t, "matrix", false) ||
        schema->bytes > max)
        return;
    size_t fit = (max - schema->bytes) / configuration_min_size() + 1;
    struct matrix m;
    bool too_many = false;
    struct matrix_options o = {.max_configurations = fit};
    int rc = matrix_expand(t, &o, &m, note_matrix_limit, &too_many);
    size_t total = 0;
    for (size_t i = 0; rc == 0 && i < m.count; i++) {
        const struct matrix_configuration *k = &m.items[i];
        total += CONTEXT_MIN_OBJECT + string_size(k->id ? k->id : "") + CONTEXT_STRING_OVERHEAD +
                 string_size("matrix") + (k->matrix ? context_size(k->matrix) : CONTEXT_NULL) +
                 string_size("strategy") + context_size(k->strategy);
    }
    matrix_free(&m);
    if (too_many || total > max - schema->bytes) {
        schema->failed = true;
        throw(c, "Maximum object size exceeded");
    }
    schema->bytes += total;
}

static void check_strategy(struct converter *c, const struct token *t)
{
    struct matrix m;
    struct matrix_options o = {.validate_only = true};
    size_t errors = c->ctx->schema->nerrors;
    if (matrix_expand(t, &o, &m, report_matrix, c) == -2)
        longjmp(c->thrown, 1);
    matrix_free(&m);
    if (c->ctx->schema->nerrors == errors)
        count_strategy(c, t);
}

static void check_snapshot(struct converter *c, const struct token *t)
{
    if (is_expression(t))
        return;
    const char *image = NULL;
    if (t->type == TOKEN_STRING) {
        image = t->u.string;
    } else if (t->type == TOKEN_MAPPING) {
        FOR_PAIRS(t, i)
        {
            const struct token *key = as_string(c, KEY(t, i), "job snapshot key");
            const struct token *value = VALUE(t, i);
            if (key_is(key, "image-name")) {
                if (is_expression(value))
                    return;
                image = as_string(c, value, "job snapshot image-name")->u.string;
            } else if (key_is(key, "if")) {
                convert_if(c, value, "Snapshot");
            } else if (key_is(key, "version")) {
                if (is_expression(value))
                    return;
                const char *v = as_string(c, value, "job snapshot version")->u.string;
                const char *dot = strchr(v, '.');
                bool ok = dot && dot > v && strcmp(dot, ".*") == 0;
                for (const char *p = v; ok && p < dot; p++)
                    ok = *p >= '0' && *p <= '9';
                if (!ok) {
                    workflow_context_error(c->ctx, t,
                                           "Expected format '{major-version}.*' Actual '%s'", v);
                    return;
                }
            } else {
                unexpected_value(c, key, "job snapshot key");
            }
        }
    }
    if (!image)
        workflow_context_error(c->ctx, t, "job snapshot image-name is required.");
}

/* ---- permissions ------------------------------------------------------------------------ */

static const char *const permission_names[WORKFLOW_PERMISSION_COUNT] = {
    "actions",       "artifact-metadata",    "attestations", "checks",          "contents",
    "deployments",   "discussions",          "issues",       "packages",        "pages",
    "pull-requests", "repository-projects",  "statuses",     "security-events", "id-token",
    "models",        "vulnerability-alerts",
};

const char *workflow_permission_name(enum workflow_permission p)
{
    return (unsigned)p < WORKFLOW_PERMISSION_COUNT ? permission_names[p] : "";
}

const char *workflow_permission_level_name(enum workflow_permission_level level)
{
    return level == WORKFLOW_LEVEL_WRITE ? "write" : level == WORKFLOW_LEVEL_READ ? "read" : "none";
}

/* All scopes at one level, as `read-all`/`write-all` and the policies give them. */
static void permissions_fill(struct workflow_permissions *p, enum workflow_permission_level level,
                             bool id_token, bool attestations, bool models, bool alerts)
{
    enum workflow_permission_level capped =
        level == WORKFLOW_LEVEL_WRITE ? WORKFLOW_LEVEL_READ : level;
    for (int i = 0; i < WORKFLOW_PERMISSION_COUNT; i++)
        p->level[i] = level;
    /* GitHub's service (the corpus) leaves these two out of read-all and write-all. */
    (void)attestations;
    p->level[WORKFLOW_PERMISSION_ARTIFACT_METADATA] = WORKFLOW_LEVEL_NONE;
    p->level[WORKFLOW_PERMISSION_ATTESTATIONS] = WORKFLOW_LEVEL_NONE;
    p->level[WORKFLOW_PERMISSION_ID_TOKEN] = id_token ? level : WORKFLOW_LEVEL_NONE;
    p->level[WORKFLOW_PERMISSION_MODELS] = models ? capped : WORKFLOW_LEVEL_NONE;
    p->level[WORKFLOW_PERMISSION_VULNERABILITY_ALERTS] = alerts ? capped : WORKFLOW_LEVEL_NONE;
}

static enum workflow_permission_level convert_level(struct converter *c, const struct token *t)
{
    const struct token *s = as_string(c, t, "permissions.value");
    if (key_is(s, "none"))
        return WORKFLOW_LEVEL_NONE;
    if (key_is(s, "read"))
        return WORKFLOW_LEVEL_READ;
    if (key_is(s, "write"))
        return WORKFLOW_LEVEL_WRITE;
    unexpected_value(c, s, s->u.string);
    return WORKFLOW_LEVEL_NONE;
}

static struct workflow_permissions *convert_permissions(struct converter *c, const struct token *t)
{
    const struct workflow_features *f = &c->ctx->options->features;
    struct workflow_permissions *p = arena_alloc(c->ctx->schema->arena, sizeof(*p));
    if (t->type == TOKEN_STRING) {
        if (key_is(t, "read-all"))
            permissions_fill(p, WORKFLOW_LEVEL_READ, true, true, f->models_permission,
                             f->vulnerability_alerts);
        else if (key_is(t, "write-all"))
            permissions_fill(p, WORKFLOW_LEVEL_WRITE, true, true, f->models_permission,
                             f->vulnerability_alerts);
        else
            unexpected_value(c, t, t->u.string);
        return p;
    }
    as_mapping(c, t, "permissions");
    FOR_PAIRS(t, i)
    {
        const struct token *key = as_string(c, KEY(t, i), "permissions.key");
        enum workflow_permission_level level = convert_level(c, VALUE(t, i));
        int scope = -1;
        for (int k = 0; k < WORKFLOW_PERMISSION_COUNT; k++)
            if (key_is(key, permission_names[k]))
                scope = k;
        if (scope == WORKFLOW_PERMISSION_ID_TOKEN && f->no_id_token) {
            workflow_context_error(c->ctx, key, "The key 'id-token' is not allowed");
            continue;
        }
        if ((scope == WORKFLOW_PERMISSION_MODELS && !f->models_permission) ||
            (scope == WORKFLOW_PERMISSION_VULNERABILITY_ALERTS && !f->vulnerability_alerts)) {
            workflow_context_error(c->ctx, key, "The permission '%s' is not allowed",
                                   key->u.string);
            continue;
        }
        if (scope == WORKFLOW_PERMISSION_MODELS ||
            scope == WORKFLOW_PERMISSION_VULNERABILITY_ALERTS)
            level = level == WORKFLOW_LEVEL_WRITE ? WORKFLOW_LEVEL_READ : level;
        if (scope >= 0)
            p->level[scope] = level;
    }
    return p;
}

/* ---- steps ------------------------------------------------------------------------------ */

static bool uses_is_valid(const char *uses)
{
    const char *at = strchr(uses, '@');
    if (!at || strchr(at + 1, '@') || !at[1])
        return false;
    int segments = 0;
    for (const char *p = uses; p < at;) {
        while (p < at && (*p == '/' || *p == '\\'))
            p++;
        if (p >= at)
            break;
        segments++;
        while (p < at && *p != '/' && *p != '\\')
            p++;
    }
    return segments >= 2;
}

/* The generated id's base: docker image, "self", "owner/repo", or "run". */
static char *default_step_id(const struct workflow_step *step)
{
    if (!step->uses)
        return xstrdup("run");
    const char *uses = str_of(step->uses);
    if (str_starts_with(uses, "docker://"))
        return xstrdup(uses + strlen("docker://"));
    if (str_starts_with(uses, "./") || str_starts_with(uses, ".\\") || str_starts_with(uses, "$/"))
        return xstrdup("self");
    if (!uses_is_valid(uses))
        return xstrdup("run");
    const char *at = strchr(uses, '@');
    const char *p = uses;
    while (*p == '/' || *p == '\\')
        p++;
    const char *first_end = p + strcspn(p, "/\\");
    const char *q = first_end;
    while (*q == '/' || *q == '\\')
        q++;
    const char *second_end = q + strcspn(q, "/\\@");
    if (second_end > at)
        second_end = at;
    return xasprintf("%.*s/%.*s", (int)(first_end - p), p, (int)(second_end - q), q);
}

static void convert_step(struct converter *c, const struct token *item, struct id_builder *ids,
                         struct workflow_step *step)
{
    const struct token *m = as_mapping(c, item, "steps item");
    const struct token *if_token = NULL;
    FOR_PAIRS(m, i)
    {
        const struct token *key = as_string(c, KEY(m, i), "steps item key");
        struct token *value = VALUE(m, i);
        const char *name = key->u.string;
        if (strcmp(name, "continue-on-error") == 0) {
            if (!is_expression(value))
                as_boolean(c, value, "step continue-on-error");
            step->continue_on_error = as_scalar(c, value, "steps continue-on-error");
        } else if (strcmp(name, "env") == 0) {
            check_string_map(c, value, "environment");
            step->env = value;
        } else if (strcmp(name, "id") == 0) {
            const struct token *id = as_string(c, value, "steps item id");
            step->id = id->u.string;
            if (id->u.string && *id->u.string) {
                cleanup_free char *error = id_builder_add_known(ids, id->u.string);
                if (error)
                    workflow_context_error(c->ctx, id, "%s", error);
            }
        } else if (strcmp(name, "if") == 0) {
            if_token = as_scalar(c, value, "steps item if");
        } else if (strcmp(name, "name") == 0) {
            step->name = as_scalar(c, value, "steps item name");
        } else if (strcmp(name, "run") == 0) {
            step->run = as_scalar(c, value, "steps item run");
        } else if (strcmp(name, "shell") == 0) {
            step->shell = as_scalar(c, value, "steps item shell");
        } else if (strcmp(name, "timeout-minutes") == 0) {
            if (!is_expression(value))
                as_number(c, value, "step timeout-minutes");
            step->timeout_minutes = as_scalar(c, value, "steps item timeout-minutes");
        } else if (strcmp(name, "uses") == 0) {
            step->uses = as_string(c, value, "steps item uses");
        } else if (strcmp(name, "with") == 0) {
            check_string_map(c, value, "inputs");
            step->with = value;
        } else if (strcmp(name, "working-directory") == 0) {
            step->working_directory = as_scalar(c, value, "steps item working-directory");
        } else {
            unexpected_value(c, key, "steps item key");
        }
    }
    step->if_condition = convert_if(c, if_token, "Step");
    if (step->run) {
        step->uses = NULL;
        step->with = NULL;
        return;
    }
    as_string(c, step->uses, "steps item uses");
    step->working_directory = step->shell = NULL;
    const char *uses = step->uses->u.string;
    if (!str_starts_with(uses, "docker://") && !str_starts_with(uses, "./") &&
        !str_starts_with(uses, ".\\") && !uses_is_valid(uses))
        workflow_context_error(c->ctx, step->uses,
                               "Expected format {org}/{repo}[/path]@ref. Actual '%s'", uses);
}

static void convert_steps(struct converter *c, const struct token *t, struct workflow_job *job)
{
    const struct token *seq = as_sequence(c, t, "job steps");
    struct id_builder ids;
    id_builder_init(&ids);
    job->steps =
        arena_alloc(c->ctx->schema->arena, (seq->u.sequence.count + 1) * sizeof(*job->steps));
    job->steps_count = seq->u.sequence.count;
    /* The builder is heap memory: free it even when a step throws. */
    struct converter inner = {.ctx = c->ctx, .success = c->success};
    if (setjmp(inner.thrown)) {
        id_builder_free(&ids);
        longjmp(c->thrown, 1);
    }
    for (size_t i = 0; i < seq->u.sequence.count; i++)
        convert_step(&inner, seq->u.sequence.items[i], &ids, &job->steps[i]);
    for (size_t i = 0; i < job->steps_count; i++) {
        struct workflow_step *step = &job->steps[i];
        if (step->id && *step->id)
            continue;
        cleanup_free char *base = default_step_id(step);
        cleanup_free char *segment = xasprintf("__%s", base);
        id_builder_append_segment(&ids, segment);
        const char *id = id_builder_build(&ids, true, ID_MAX_LENGTH);
        step->id = arena_strdup(c->ctx->schema->arena, id ? id : "");
    }
    id_builder_free(&ids);
}

/* ---- jobs ------------------------------------------------------------------------------- */

/* Jobs are counted across every file; the limit is checked once all are loaded. */
static void count_job(struct converter *c)
{
    c->ctx->job_count++;
}

static void check_job_limit(struct workflow_context *ctx)
{
    int max = ctx->options->max_job_limit;
    if (max > 0 && ctx->job_count > max)
        workflow_context_error(ctx, NULL, "The workflow may not contain more than %d jobs", max);
}

static void convert_needs(struct converter *c, struct token *value, struct workflow_job *job)
{
    if (value->type == TOKEN_STRING) {
        job->needs = arena_alloc(c->ctx->schema->arena, sizeof(*job->needs));
        job->needs[0] = value;
        job->needs_count = 1;
        return;
    }
    const struct token *seq = as_sequence(c, value, "job needs");
    job->needs =
        arena_alloc(c->ctx->schema->arena, (seq->u.sequence.count + 1) * sizeof(*job->needs));
    for (size_t i = 0; i < seq->u.sequence.count; i++)
        job->needs[job->needs_count++] = as_string(c, seq->u.sequence.items[i], "job needs item");
}

static void convert_job_property(struct converter *c, const struct token *key, struct token *value,
                                 struct workflow_job *job)
{
    const char *name = key->u.string;
    if (strcmp(name, "continue-on-error") == 0) {
        if (!is_expression(value))
            as_boolean(c, value, "job continue-on-error");
        job->continue_on_error = as_scalar(c, value, "job continue-on-error");
    } else if (strcmp(name, "if") == 0) {
        job->if_condition = convert_if(c, value, "Job");
    } else if (strcmp(name, "name") == 0) {
        job->name = as_scalar(c, value, "job name");
        if (!is_expression(value))
            as_string(c, value, "job name");
    } else if (strcmp(name, "needs") == 0) {
        convert_needs(c, value, job);
    } else if (strcmp(name, "runs-on") == 0) {
        check_runs_on(c, value);
        job->runs_on = value;
    } else if (strcmp(name, "snapshot") == 0) {
        if (c->ctx->options->features.no_snapshot) {
            workflow_context_error(c->ctx, key, "The key 'snapshot' is not allowed");
            return;
        }
        check_snapshot(c, value);
        job->snapshot = value;
    } else if (strcmp(name, "steps") == 0) {
        convert_steps(c, value, job);
    } else if (strcmp(name, "strategy") == 0) {
        check_strategy(c, value);
        job->strategy = value;
    } else if (strcmp(name, "timeout-minutes") == 0 ||
               strcmp(name, "cancel-timeout-minutes") == 0) {
        char *what = arena_printf(c->ctx->schema->arena, "job %s", name);
        if (!is_expression(value))
            as_number(c, value, what);
        struct token *scalar = is_scalar(value) ? value : NULL;
        if (name[0] == 't')
            job->timeout_minutes = scalar;
        else
            job->cancel_timeout_minutes = scalar;
    } else if (strcmp(name, "container") == 0) {
        check_container(c, value, false);
        job->container = value;
    } else if (strcmp(name, "services") == 0) {
        check_services(c, value);
        job->services = value;
    } else if (strcmp(name, "concurrency") == 0) {
        check_concurrency(c, value);
        job->concurrency = value;
    } else if (strcmp(name, "env") == 0) {
        job->env = value;
    } else if (strcmp(name, "environment") == 0) {
        check_environment(c, value);
        job->environment = value;
    } else if (strcmp(name, "outputs") == 0) {
        job->outputs = value;
    } else if (strcmp(name, "defaults") == 0) {
        job->defaults = value;
    } else if (strcmp(name, "permissions") == 0) {
        job->permissions = convert_permissions(c, value);
    } else if (strcmp(name, "uses") == 0) {
        job->ref = as_string(c, value, "job uses value");
    } else if (strcmp(name, "with") == 0) {
        job->input_values = as_mapping(c, value, "uses-with value");
    } else if (strcmp(name, "secrets") == 0) {
        if (value->type == TOKEN_STRING && strcmp(value->u.string, "inherit") == 0)
            job->inherit_secrets = true;
        else
            job->secret_values = as_mapping(c, value, "uses-secrets value");
    } else {
        unexpected_value(c, key, "job key");
    }
}

static void convert_job(struct converter *c, struct token *id, const struct token *definition,
                        struct workflow_job *job)
{
    struct id_builder ids;
    id_builder_init(&ids);
    char *error = id_builder_add_known(&ids, id->u.string);
    id_builder_free(&ids);
    if (error) {
        workflow_context_error(c->ctx, id, "%s", error);
        free(error);
    }
    job->id = id;
    FOR_PAIRS(definition, i)
    {
        const struct token *key = as_string(c, KEY(definition, i), "job property name");
        convert_job_property(c, key, VALUE(definition, i), job);
    }
    if (!job->if_condition)
        job->if_condition = new_expression(c, NULL, "success()");
    if (!job->name || (job->name->type == TOKEN_STRING && !*str_of(job->name)))
        job->name = id;
    job->reusable = job->ref != NULL;
    if (job->reusable) {
        /* GitHub keeps only what a call needs. */
        struct workflow_job call = {
            .reusable = true,
            .id = job->id,
            .name = job->name,
            .if_condition = job->if_condition,
            .needs = job->needs,
            .needs_count = job->needs_count,
            .ref = job->ref,
            .input_values = job->input_values,
            .secret_values = job->secret_values,
            .inherit_secrets = job->inherit_secrets,
            .permissions = job->permissions,
            .concurrency = job->concurrency,
            .strategy = job->strategy,
        };
        *job = call;
    } else {
        job->ref = job->input_values = job->secret_values = NULL;
        job->inherit_secrets = false;
    }
}

static void report_need(void *data, const struct token *at, const char *message)
{
    struct converter *c = data;
    workflow_context_error(c->ctx, at, "%s", message);
}

static void convert_jobs(struct converter *c, const struct token *t, struct workflow_job **out,
                         size_t *count)
{
    const struct token *jobs = as_mapping(c, t, "jobs");
    size_t n = jobs->u.mapping.count;
    struct workflow_job *result = arena_alloc(c->ctx->schema->arena, (n + 1) * sizeof(*result));
    *out = result;
    *count = 0;
    FOR_PAIRS(jobs, i)
    {
        struct token *id = as_string(c, KEY(jobs, i), "jobs key");
        count_job(c);
        const struct token *definition = as_mapping(c, VALUE(jobs, i), "jobs value");
        convert_job(c, id, definition, &result[(*count)++]);
    }
    if (c->ctx->schema->nerrors)
        return;
    struct needs_job *graph = arena_alloc(c->ctx->schema->arena, (n + 1) * sizeof(*graph));
    for (size_t i = 0; i < n; i++) {
        graph[i].id = str_of(result[i].id);
        graph[i].needs = result[i].needs;
        graph[i].needs_count = result[i].needs_count;
    }
    needs_graph_check(graph, n, jobs, NULL, report_need, c);
}

/* ---- the workflow ----------------------------------------------------------------------- */

static void collect_input_types(struct converter *c, const struct token *on,
                                struct workflow_template *t)
{
    if (on->type != TOKEN_MAPPING)
        return;
    const struct token *dispatch = NULL;
    FOR_PAIRS(on, i)
    if (key_is(KEY(on, i), "workflow_dispatch")) {
        dispatch = VALUE(on, i);
        break;
    }
    if (!dispatch || dispatch->type == TOKEN_NULL)
        return;
    as_mapping(c, dispatch, "workflow on value workflow_dispatch");
    const struct token *inputs = NULL;
    FOR_PAIRS(dispatch, i)
    if (key_is(KEY(dispatch, i), "inputs")) {
        inputs = VALUE(dispatch, i);
        break;
    }
    if (!inputs || inputs->type == TOKEN_NULL)
        return;
    as_mapping(c, inputs, "on-workflow_dispatch-inputs");
    t->input_types =
        arena_alloc(c->ctx->schema->arena, (inputs->u.mapping.count + 1) * sizeof(*t->input_types));
    FOR_PAIRS(inputs, i)
    {
        const char *name = as_string(c, KEY(inputs, i), "inputs key")->u.string;
        const struct token *spec = VALUE(inputs, i);
        const char *type = "string";
        if (spec->type != TOKEN_NULL) {
            char *what = arena_printf(c->ctx->schema->arena, "input %s", name);
            as_mapping(c, spec, what);
            FOR_PAIRS(spec, k)
            if (str_eq_nocase(str_of(KEY(spec, k)), "type") && VALUE(spec, k)->type == TOKEN_STRING)
                type = VALUE(spec, k)->u.string;
        }
        bool seen = false;
        for (size_t k = 0; k < t->input_types_count; k++)
            seen = seen || str_eq_nocase(t->input_types[k].name, name);
        if (!seen)
            t->input_types[t->input_types_count++] = (struct workflow_input_type){name, type};
    }
}

static void convert_root(struct converter *c, const struct token *root, struct workflow_template *t)
{
    const struct token *m = as_mapping(c, root, "root");
    FOR_PAIRS(m, i)
    {
        const struct token *key = as_string(c, KEY(m, i), "root key");
        struct token *value = VALUE(m, i);
        if (key_is(key, "on"))
            collect_input_types(c, value, t);
        else if (key_is(key, "description") || key_is(key, "name") || key_is(key, "run-name"))
            continue;
        else if (key_is(key, "defaults"))
            t->defaults = value;
        else if (key_is(key, "env"))
            t->env = value;
        else if (key_is(key, "concurrency")) {
            check_concurrency(c, value);
            t->concurrency = value;
        } else if (key_is(key, "jobs"))
            convert_jobs(c, value, &t->jobs, &t->jobs_count);
        else if (key_is(key, "permissions"))
            t->permissions = convert_permissions(c, value);
        else
            unexpected_value(c, key, "root key");
    }
    if (t->permissions)
        for (size_t i = 0; i < t->jobs_count; i++)
            if (!t->jobs[i].permissions)
                t->jobs[i].permissions = t->permissions;
}

static int reusable_load(struct converter *c, struct workflow_template *t);

int workflow_convert(struct workflow_context *ctx, const struct token *root,
                     struct workflow_template **out)
{
    *out = NULL;
    if (!root || ctx->schema->nerrors)
        return -1;
    struct converter c = {.ctx = ctx};
    c.success = new_expression(&c, NULL, "success()");
    struct workflow_template *t = arena_alloc(ctx->schema->arena, sizeof(*t));
    if (setjmp(c.thrown) == 0)
        convert_root(&c, root, t);
    if (ctx->schema->nerrors)
        return -1;
    if (reusable_load(&c, t) < 0)
        return -1;
    check_job_limit(ctx);
    if (ctx->schema->nerrors)
        return -1;
    *out = t;
    return 0;
}

/* ---- reusable workflows ----------------------------------------------------------------- */

static struct workflow_permissions policy_permissions(struct converter *c)
{
    const struct workflow_features *f = &c->ctx->options->features;
    const char *policy = c->ctx->options->permissions_policy;
    struct workflow_permissions p = {0};
    if (policy && strcmp(policy, "LimitedRead") == 0) {
        p.level[WORKFLOW_PERMISSION_CONTENTS] = WORKFLOW_LEVEL_READ;
        p.level[WORKFLOW_PERMISSION_PACKAGES] = WORKFLOW_LEVEL_READ;
        return p;
    }
    /* Write; the id token only for workflows in the caller's trust boundary (none here). */
    permissions_fill(&p, WORKFLOW_LEVEL_WRITE, false, true, f->models_permission,
                     f->vulnerability_alerts);
    p.level[WORKFLOW_PERMISSION_ATTESTATIONS] = WORKFLOW_LEVEL_WRITE;
    p.level[WORKFLOW_PERMISSION_ARTIFACT_METADATA] = WORKFLOW_LEVEL_WRITE;
    return p;
}

static void validate_embedded_permissions(struct converter *c, const struct workflow_job *call,
                                          const struct workflow_job *embedded,
                                          const struct workflow_permissions *requested,
                                          const struct workflow_permissions *explicit_max)
{
    if (!requested)
        return;
    struct workflow_permissions max = explicit_max ? *explicit_max : policy_permissions(c);
    struct buf want = BUF_INIT, allowed = BUF_INIT;
    for (int i = 0; i < WORKFLOW_PERMISSION_COUNT; i++) {
        if (requested->level[i] <= max.level[i])
            continue;
        buf_printf(&want, "%s%s: %s", want.len ? ", " : "", permission_names[i],
                   workflow_permission_level_name(requested->level[i]));
        buf_printf(&allowed, "%s%s: %s", allowed.len ? ", " : "", permission_names[i],
                   workflow_permission_level_name(max.level[i]));
    }
    const char *ref = str_of(call->ref);
    if (want.len && embedded)
        workflow_context_error(c->ctx, call->id,
                               "Error calling workflow '%s'. The nested job '%s' is requesting "
                               "'%s', but is only allowed '%s'.",
                               ref, token_to_display_string(c->ctx->schema->arena, embedded->name),
                               buf_cstr(&want), buf_cstr(&allowed));
    else if (want.len)
        workflow_context_error(c->ctx, call->id,
                               "Error calling workflow '%s'. The workflow '%s' is requesting "
                               "'%s', but is only allowed '%s'.",
                               ref, ref, buf_cstr(&want), buf_cstr(&allowed));
    buf_free(&want);
    buf_free(&allowed);
}

static const struct token *lookup_nocase(const struct token *m, const char *key)
{
    if (!m || m->type != TOKEN_MAPPING)
        return NULL;
    FOR_PAIRS(m, i)
    if (str_eq_nocase(str_of(KEY(m, i)), key))
        return VALUE(m, i);
    return NULL;
}

/* As GitHub's evaluation of a `with:` value or default against the input's declared type. */
static void check_input_value(struct converter *c, const char *type, const struct token *value)
{
    if (has_expression(value))
        return;
    if (value->type == TOKEN_MAPPING) {
        workflow_context_error(c->ctx, value, "A mapping was not expected");
        return;
    }
    if (value->type == TOKEN_SEQUENCE) {
        workflow_context_error(c->ctx, value, "A sequence was not expected");
        return;
    }
    /* A string input takes any scalar (GitHub turns literals into strings). */
    bool ok = strcmp(type, "boolean") == 0  ? value->type == TOKEN_BOOLEAN
              : strcmp(type, "number") == 0 ? value->type == TOKEN_NUMBER
                                            : true;
    if (!ok)
        workflow_context_error(c->ctx, value, "Unexpected value '%s'",
                               token_to_display_string(c->ctx->schema->arena, value));
}

static void check_undefined(struct converter *c, const struct token *definitions,
                            const struct token *values, const char *kind, const char *what)
{
    if (!values)
        return;
    FOR_PAIRS(values, i)
    {
        const char *key = as_string(c, KEY(values, i), what)->u.string;
        if (!lookup_nocase(definitions, key))
            workflow_context_error(c->ctx, VALUE(values, i),
                                   "Invalid %s, %s is not defined in the referenced workflow.",
                                   kind, key);
    }
}

static void validate_inputs(struct converter *c, struct workflow_job *job)
{
    const struct token *defs = job->input_definitions, *values = job->input_values;
    if (defs) {
        as_mapping(c, defs, "workflow job input definitions");
        FOR_PAIRS(defs, i)
        {
            const char *key = as_string(c, KEY(defs, i), "inputs key")->u.string;
            char *what = arena_printf(c->ctx->schema->arena, "input %s", key);
            const struct token *spec = as_mapping(c, VALUE(defs, i), what);
            const struct token *type_token = lookup_nocase(spec, "type");
            if (!type_token)
                throw(c, "The given key 'type' was not present in the dictionary.");
            char *type_what = arena_printf(c->ctx->schema->arena, "inputs %s type", key);
            const char *type = as_string(c, type_token, type_what)->u.string;
            const struct token *def = lookup_nocase(spec, "default");
            if (def)
                check_input_value(c, type, def);
            const struct token *given = lookup_nocase(values, key);
            if (given) {
                check_input_value(c, type, given);
                continue;
            }
            const struct token *required = lookup_nocase(spec, "required");
            if (required) {
                as_boolean(c, required, "required");
                if (required->u.boolean)
                    workflow_context_error(c->ctx, job->ref,
                                           "Input %s is required, but not provided while calling.",
                                           key);
            }
        }
    }
    check_undefined(c, defs, values, "input", "with key");
}

static void validate_secrets(struct converter *c, struct workflow_job *job)
{
    if (job->inherit_secrets)
        return;
    const struct token *defs = job->secret_definitions, *values = job->secret_values;
    if (defs) {
        FOR_PAIRS(defs, i)
        {
            const char *key = as_string(c, KEY(defs, i), "secrets key")->u.string;
            if (VALUE(defs, i)->type == TOKEN_NULL)
                continue;
            char *what = arena_printf(c->ctx->schema->arena, "secret %s", key);
            const struct token *spec = as_mapping(c, VALUE(defs, i), what);
            if (lookup_nocase(values, key))
                continue;
            const struct token *required = lookup_nocase(spec, "required");
            if (required) {
                as_boolean(c, required, "required");
                if (required->u.boolean)
                    workflow_context_error(c->ctx, job->ref,
                                           "Secret %s is required, but not provided while calling.",
                                           key);
            }
        }
    }
    check_undefined(c, defs, values, "secret", "secrets key");
}

static void read_workflow_call(struct converter *c, const struct token *call,
                               struct workflow_job *job)
{
    if (call->type != TOKEN_NULL) {
        as_mapping(c, call, "Reference workflow on value workflow_call");
        FOR_PAIRS(call, i)
        {
            const struct token *key = as_string(c, KEY(call, i), "on-workflow_call key");
            const char *what = "on-workflow_call value";
            if (key_is(key, "inputs"))
                job->input_definitions = as_mapping(c, VALUE(call, i), what);
            else if (key_is(key, "secrets"))
                job->secret_definitions = as_mapping(c, VALUE(call, i), what);
            else if (key_is(key, "outputs"))
                job->outputs = as_mapping(c, VALUE(call, i), what);
        }
    }
    validate_inputs(c, job);
    validate_secrets(c, job);
}

static void convert_on_trigger(struct converter *c, const struct token *on,
                               struct workflow_job *job)
{
    if (on->type == TOKEN_STRING && key_is(on, "workflow_call")) {
        validate_inputs(c, job);
        validate_secrets(c, job);
        return;
    }
    if (on->type == TOKEN_SEQUENCE) {
        for (size_t i = 0; i < on->u.sequence.count; i++) {
            if (key_is(as_string(c, on->u.sequence.items[i], "Reference workflow on value"),
                       "workflow_call")) {
                validate_inputs(c, job);
                validate_secrets(c, job);
                return;
            }
        }
    } else if (on->type == TOKEN_MAPPING) {
        FOR_PAIRS(on, i)
        {
            if (key_is(as_string(c, KEY(on, i), "Reference workflow on value"), "workflow_call")) {
                read_workflow_call(c, VALUE(on, i), job);
                return;
            }
        }
    }
    workflow_context_error(c->ctx, on,
                           "workflow_call key is not defined in the referenced workflow.");
}

static void convert_referenced(struct converter *c, const struct token *root,
                               struct workflow_job *job)
{
    struct workflow_permissions *explicit_max = job->permissions;
    const struct token *m = as_mapping(c, root, "root");
    FOR_PAIRS(m, i)
    {
        const struct token *key = as_string(c, KEY(m, i), "root key");
        struct token *value = VALUE(m, i);
        if (key_is(key, "on")) {
            convert_on_trigger(c, value, job);
        } else if (key_is(key, "description") || key_is(key, "name") || key_is(key, "run-name")) {
            continue;
        } else if (key_is(key, "defaults")) {
            job->defaults = value;
        } else if (key_is(key, "env")) {
            job->env = value;
        } else if (key_is(key, "concurrency")) {
            check_concurrency(c, value);
            job->embedded_concurrency = value;
        } else if (key_is(key, "jobs")) {
            convert_jobs(c, value, &job->jobs, &job->jobs_count);
        } else if (key_is(key, "permissions")) {
            struct workflow_permissions *root_permissions = convert_permissions(c, value);
            validate_embedded_permissions(c, job, NULL, root_permissions, explicit_max);
            job->permissions = root_permissions;
        } else {
            unexpected_value(c, key, "root key");
        }
    }
    for (size_t i = 0; i < job->jobs_count; i++) {
        struct workflow_job *embedded = &job->jobs[i];
        if (embedded->permissions)
            validate_embedded_permissions(c, job, embedded, embedded->permissions, explicit_max);
        else if (job->permissions)
            embedded->permissions = job->permissions;
    }
}

/* Errors from a called workflow say where it was called from. */
static void prefix_errors(struct converter *c, const struct workflow_job *job, size_t from,
                          size_t to)
{
    struct schema_context *schema = c->ctx->schema;
    const char *caller = workflow_context_file_name(c->ctx, job->ref->file);
    if (!caller)
        caller = "";
    for (size_t i = from; i < to && i < schema->nerrors; i++) {
        char *message = schema->errors[i].message;
        if (*caller && str_starts_with(message, caller))
            continue;
        /* GitHub's CalledWorkflowNotValidWithErrors, then the message as it was (which names
         * the called file itself when it has a position or a file). */
        schema->errors[i].message =
            xasprintf("In %s (Line: %d, Col: %d): Error from called workflow %s", caller,
                      job->ref->line, job->ref->col, message);
        free(message);
    }
}

static int max_depth(const struct workflow_options *o)
{
    return o->max_nested_depth < 0    ? 0
           : o->max_nested_depth == 0 ? WORKFLOW_MAX_NESTED_REUSABLE_DEPTH
                                      : o->max_nested_depth;
}

/* GitHub counts distinct files read; a file read again costs nothing. */
static bool file_limit_reached(const struct workflow_context *ctx, const char *ref)
{
    const struct schema_context *schema = ctx->schema;
    for (size_t i = 0; i < schema->nfiles; i++)
        if (str_eq_nocase(schema->files[i], ref))
            return false;
    int max = ctx->options->max_files > 0 ? ctx->options->max_files : WORKFLOW_MAX_FILES;
    return schema->nfiles + 1 > (size_t)max;
}

static void load_recursive(struct converter *c, struct workflow_job *job, int depth)
{
    struct workflow_context *ctx = c->ctx;
    const struct workflow_options *o = ctx->options;
    if (depth > max_depth(o))
        throw(c, "Nested reusable workflow depth exceeded %d.", max_depth(o));
    size_t first = ctx->schema->nerrors;
    bool found = true;
    struct token *root = NULL;
    if (file_limit_reached(ctx, str_of(job->ref)))
        workflow_context_error(ctx, NULL, "The maximum file count of %d has been exceeded",
                               o->max_files > 0 ? o->max_files : WORKFLOW_MAX_FILES);
    else
        root = o->load(o->load_data, ctx, str_of(job->ref), &found);
    if (!found && ctx->schema->nerrors == first)
        workflow_context_error(ctx, job->ref, "Unable to find reusable workflow");
    if (ctx->schema->nerrors == first && root) {
        struct converter inner = {.ctx = ctx, .success = c->success};
        if (setjmp(inner.thrown)) {
            /* The thrown error itself goes up unprefixed, as GitHub's exception does. */
            prefix_errors(c, job, first, ctx->schema->nerrors - 1);
            longjmp(c->thrown, 1);
        }
        convert_referenced(&inner, root, job);
    }
    prefix_errors(c, job, first, ctx->schema->nerrors);
    if (ctx->schema->nerrors)
        return;
    for (size_t i = 0; i < job->jobs_count; i++) {
        if (!job->jobs[i].reusable)
            continue;
        load_recursive(c, &job->jobs[i], depth + 1);
        if (ctx->schema->nerrors)
            return;
    }
}

static int reusable_load(struct converter *c, struct workflow_template *t)
{
    const struct workflow_options *o = c->ctx->options;
    if (o->skip_reusable || !o->load || c->ctx->schema->nerrors)
        return 0;
    if (setjmp(c->thrown))
        return -1;
    for (size_t i = 0; i < t->jobs_count; i++) {
        if (!t->jobs[i].reusable)
            continue;
        load_recursive(c, &t->jobs[i], 1);
        if (c->ctx->schema->nerrors)
            return -1;
    }
    return 0;
}

/* ---- serialisation ---------------------------------------------------------------------- */

static void set_token(json_t *o, const char *key, const struct token *t,
                      enum token_json_style style)
{
    if (t)
        json_object_set_new(o, key, token_to_json(t, style));
}

static json_t *permissions_json(const struct workflow_permissions *p)
{
    json_t *o = json_object();
    for (int i = 0; i < WORKFLOW_PERMISSION_COUNT; i++)
        if (p->level[i] != WORKFLOW_LEVEL_NONE)
            json_object_set_new(o, permission_names[i],
                                json_string(workflow_permission_level_name(p->level[i])));
    return o;
}

static json_t *step_json(const struct workflow_step *s, enum token_json_style style)
{
    json_t *o = json_object();
    if (s->id && *s->id)
        json_object_set_new(o, "id", json_string(s->id));
    set_token(o, "name", s->name, style);
    set_token(o, "if", s->if_condition, style);
    set_token(o, "continue-on-error", s->continue_on_error, style);
    set_token(o, "timeout-minutes", s->timeout_minutes, style);
    set_token(o, "env", s->env, style);
    set_token(o, "working-directory", s->working_directory, style);
    set_token(o, "shell", s->shell, style);
    set_token(o, "run", s->run, style);
    set_token(o, "uses", s->uses, style);
    set_token(o, "with", s->with, style);
    return o;
}

static json_t *jobs_json(const struct workflow_job *jobs, size_t count,
                         enum token_json_style style);

static json_t *job_json(const struct workflow_job *j, enum token_json_style style)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(j->reusable ? "reusableWorkflowJob" : "job"));
    set_token(o, "id", j->id, style);
    set_token(o, "name", j->name, style);
    /* A reusable workflow job always lists its needs, even none. */
    if (j->needs_count || j->reusable) {
        json_t *needs = json_array();
        for (size_t i = 0; i < j->needs_count; i++)
            json_array_append_new(needs, token_to_json(j->needs[i], style));
        json_object_set_new(o, "needs", needs);
    }
    set_token(o, "if", j->if_condition, style);
    set_token(o, "ref", j->ref, style);
    if (j->permissions)
        json_object_set_new(o, "permissions", permissions_json(j->permissions));
    set_token(o, "input-definitions", j->input_definitions, style);
    set_token(o, "input-values", j->input_values, style);
    set_token(o, "secret-definitions", j->secret_definitions, style);
    set_token(o, "secret-values", j->secret_values, style);
    if (j->inherit_secrets)
        json_object_set_new(o, "inherit-secrets", json_true());
    set_token(o, "strategy", j->strategy, style);
    set_token(o, "continue-on-error", j->continue_on_error, style);
    set_token(o, "timeout-minutes", j->timeout_minutes, style);
    set_token(o, "cancel-timeout-minutes", j->cancel_timeout_minutes, style);
    set_token(o, "concurrency", j->concurrency, style);
    set_token(o, "embedded-concurrency", j->embedded_concurrency, style);
    set_token(o, "env", j->env, style);
    set_token(o, "environment", j->environment, style);
    set_token(o, "defaults", j->defaults, style);
    set_token(o, "runs-on", j->runs_on, style);
    set_token(o, "container", j->container, style);
    set_token(o, "services", j->services, style);
    set_token(o, "outputs", j->outputs, style);
    if (j->steps_count) {
        json_t *steps = json_array();
        for (size_t i = 0; i < j->steps_count; i++)
            json_array_append_new(steps, step_json(&j->steps[i], style));
        json_object_set_new(o, "steps", steps);
    }
    set_token(o, "snapshot", j->snapshot, style);
    if (j->reusable)
        json_object_set_new(o, "jobs", jobs_json(j->jobs, j->jobs_count, style));
    return o;
}

static json_t *jobs_json(const struct workflow_job *jobs, size_t count, enum token_json_style style)
{
    json_t *a = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(a, job_json(&jobs[i], style));
    return a;
}

json_t *workflow_template_to_json(const struct workflow_context *ctx,
                                  const struct workflow_template *t, bool include_file_table,
                                  enum token_json_style style)
{
    json_t *o = json_object();
    if (t) {
        if (t->input_types_count) {
            json_t *types = json_object();
            for (size_t i = 0; i < t->input_types_count; i++)
                json_object_set_new(types, t->input_types[i].name,
                                    json_string(t->input_types[i].type));
            json_object_set_new(o, "input-types", types);
        }
        set_token(o, "env", t->env, style);
        if (t->permissions)
            json_object_set_new(o, "permissions", permissions_json(t->permissions));
        set_token(o, "defaults", t->defaults, style);
        set_token(o, "concurrency", t->concurrency, style);
        if (t->jobs_count)
            json_object_set_new(o, "jobs", jobs_json(t->jobs, t->jobs_count, style));
    }
    if (ctx && include_file_table && ctx->schema->nfiles) {
        json_t *files = json_array();
        for (size_t i = 0; i < ctx->schema->nfiles; i++)
            json_array_append_new(files, json_string(ctx->schema->files[i]));
        json_object_set_new(o, "file-table", files);
    }
    if (ctx && ctx->schema->nerrors) {
        json_t *errors = json_array();
        for (size_t i = 0; i < ctx->schema->nerrors; i++)
            json_array_append_new(errors,
                                  json_pack("{s:s}", "Message", ctx->schema->errors[i].message));
        json_object_set_new(o, "errors", errors);
    }
    return o;
}

/* ---- events (the TypeScript parser's model of `on:`) ------------------------------------ */

static json_t *string_list(const struct token *t)
{
    json_t *a = json_array();
    if (t->type == TOKEN_STRING) {
        json_array_append_new(a, json_string(t->u.string));
        return a;
    }
    for (size_t i = 0; t->type == TOKEN_SEQUENCE && i < t->u.sequence.count; i++) {
        const struct token *item = t->u.sequence.items[i];
        json_array_append_new(a, json_string(is_scalar(item) ? str_of(item) : ""));
    }
    return a;
}

static json_t *scalar_json(const struct token *t)
{
    switch (t->type) {
    case TOKEN_BOOLEAN:
        return json_boolean(t->u.boolean);
    case TOKEN_NUMBER:
        return json_real(t->u.number);
    case TOKEN_NULL:
        return json_null();
    default:
        return json_string(t->type == TOKEN_EXPRESSION ? t->u.expression : str_of(t));
    }
}

static json_t *input_config(struct workflow_context *ctx, const struct token *m, bool call)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("string"));
    const struct token *def = NULL;
    bool has_options = false;
    if (m->type != TOKEN_MAPPING)
        return o;
    FOR_PAIRS(m, i)
    {
        const struct token *key = KEY(m, i), *v = VALUE(m, i);
        if (key_is(key, "description"))
            json_object_set_new(o, "description", json_string(str_of(v)));
        else if (key_is(key, "required"))
            json_object_set_new(o, "required",
                                json_boolean(v->type == TOKEN_BOOLEAN && v->u.boolean));
        else if (key_is(key, "default"))
            def = v;
        else if (key_is(key, "type"))
            json_object_set_new(o, "type", json_string(str_of(v)));
        else if (key_is(key, "options")) {
            json_object_set_new(o, "options", string_list(v));
            has_options = json_array_size(json_object_get(o, "options")) > 0;
        } else
            workflow_context_error(ctx, key, "Invalid key '%s'", str_of(key));
    }
    const char *type = json_string_value(json_object_get(o, "type"));
    if (def && !(call && is_expression(def))) {
        bool boolean = strcmp(type, "boolean") == 0;
        bool stringy = strcmp(type, "string") == 0 || strcmp(type, "choice") == 0 ||
                       strcmp(type, "environment") == 0;
        if (boolean && def->type != TOKEN_BOOLEAN)
            workflow_context_error(ctx, def,
                                   "Unexpected type '%s' encountered while reading 'input "
                                   "default'. The type 'BooleanToken' was expected.",
                                   token_class(def));
        else if (stringy && def->type != TOKEN_STRING)
            workflow_context_error(ctx, def,
                                   "Unexpected type '%s' encountered while reading 'input "
                                   "default'. The type 'StringToken' was expected.",
                                   token_class(def));
        else if (boolean || stringy)
            json_object_set_new(o, "default", scalar_json(def));
    }
    if (strcmp(type, "choice") == 0 && !has_options)
        workflow_context_error(ctx, m, "Missing 'options' for choice input");
    else if (strcmp(type, "choice") != 0 && json_object_get(o, "options"))
        workflow_context_error(ctx, m, "Input type is not 'choice', but 'options' is defined");
    return o;
}

static json_t *inputs_config(struct workflow_context *ctx, const struct token *m, bool call)
{
    json_t *o = json_object();
    for (size_t i = 0; m->type == TOKEN_MAPPING && i < m->u.mapping.count; i++)
        json_object_set_new(o, str_of(KEY(m, i)), input_config(ctx, VALUE(m, i), call));
    return o;
}

static json_t *secrets_config(const struct token *m)
{
    json_t *o = json_object();
    for (size_t i = 0; m->type == TOKEN_MAPPING && i < m->u.mapping.count; i++) {
        json_t *secret = json_object();
        const struct token *spec = VALUE(m, i);
        for (size_t k = 0; spec->type == TOKEN_MAPPING && k < spec->u.mapping.count; k++) {
            if (key_is(KEY(spec, k), "description"))
                json_object_set_new(secret, "description", json_string(str_of(VALUE(spec, k))));
            else if (key_is(KEY(spec, k), "required"))
                json_object_set_new(secret, "required",
                                    json_boolean(VALUE(spec, k)->type == TOKEN_BOOLEAN &&
                                                 VALUE(spec, k)->u.boolean));
        }
        json_object_set_new(o, str_of(KEY(m, i)), secret);
    }
    return o;
}

static json_t *schedule_config(struct workflow_context *ctx, const struct token *seq)
{
    json_t *a = json_array();
    for (size_t i = 0; seq->type == TOKEN_SEQUENCE && i < seq->u.sequence.count; i++) {
        const struct token *m = seq->u.sequence.items[i];
        if (m->type != TOKEN_MAPPING)
            continue;
        json_t *entry = json_object();
        bool valid = true;
        FOR_PAIRS(m, k)
        {
            if (key_is(KEY(m, k), "cron"))
                json_object_set_new(entry, "cron", json_string(str_of(VALUE(m, k))));
            else if (key_is(KEY(m, k), "timezone"))
                json_object_set_new(entry, "timezone", json_string(str_of(VALUE(m, k))));
            else {
                workflow_context_error(ctx, KEY(m, k), "Invalid schedule key");
                valid = false;
            }
        }
        const char *cron = json_string_value(json_object_get(entry, "cron"));
        if (valid && cron && *cron)
            json_array_append(a, entry);
        else if (valid)
            workflow_context_error(ctx, m, "Missing required key 'cron' in schedule entry");
        json_decref(entry);
    }
    return a;
}

static json_t *event_config(struct workflow_context *ctx, const char *name, const struct token *v)
{
    static const char *const filters[] = {"branches", "branches-ignore", "tags",  "tags-ignore",
                                          "paths",    "paths-ignore",    "types", "versions",
                                          "names",    "workflows"};
    json_t *o = json_object();
    if (v->type != TOKEN_MAPPING)
        return o;
    bool dispatch = strcmp(name, "workflow_dispatch") == 0;
    bool call = strcmp(name, "workflow_call") == 0;
    FOR_PAIRS(v, i)
    {
        const struct token *key = KEY(v, i), *value = VALUE(v, i);
        if ((dispatch || call) && key_is(key, "inputs")) {
            json_object_set_new(o, "inputs", inputs_config(ctx, value, call));
        } else if (call && key_is(key, "secrets")) {
            json_object_set_new(o, "secrets", secrets_config(value));
        } else if (!dispatch && !call) {
            for (size_t f = 0; f < sizeof(filters) / sizeof(filters[0]); f++)
                if (key_is(key, filters[f]))
                    json_object_set_new(o, filters[f], string_list(value));
        }
    }
    return o;
}

json_t *workflow_events_to_json(struct workflow_context *ctx, const struct token *on)
{
    json_t *events = json_object();
    if (!on)
        return events;
    if (on->type == TOKEN_STRING) {
        json_object_set_new(events, on->u.string, json_object());
    } else if (on->type == TOKEN_SEQUENCE) {
        for (size_t i = 0; i < on->u.sequence.count; i++)
            json_object_set_new(events, str_of(on->u.sequence.items[i]), json_object());
    } else if (on->type == TOKEN_MAPPING) {
        FOR_PAIRS(on, i)
        {
            const char *name = str_of(KEY(on, i));
            const struct token *value = VALUE(on, i);
            if (value->type == TOKEN_NULL)
                json_object_set_new(events, name, json_object());
            else if (strcmp(name, "schedule") == 0)
                json_object_set_new(events, name, schedule_config(ctx, value));
            else
                json_object_set_new(events, name, event_config(ctx, name, value));
        }
    } else {
        workflow_context_error(ctx, on, "Invalid format for 'on'");
    }
    return events;
}
