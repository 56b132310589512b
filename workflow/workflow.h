/* workflow: a read workflow file (schema-checked template tokens) into GitHub's workflow
 * template, as GitHub's WorkflowTemplateConverter builds it: jobs with their defaults (name =
 * id, if = success(), generated step ids), needs checked, strategies, containers, services,
 * concurrency and environments validated early, permissions, and reusable workflows loaded
 * through a callback, with GitHub's limits and errors. Everything lives in the context's arena.
 * The context shares the schema's (workflow/schema.h): one file table and one error list (at
 * most 10 errors, each cut at 500 characters) for reading and converting, as GitHub's
 * TemplateContext. */
#ifndef HARRIER_WORKFLOW_WORKFLOW_H
#define HARRIER_WORKFLOW_WORKFLOW_H

#include "lib/mem.h"
#include "workflow/schema.h"
#include "workflow/token.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    WORKFLOW_MAX_ERRORS = 10,
    WORKFLOW_MAX_ERROR_LENGTH = 500,
    WORKFLOW_MAX_NESTED_REUSABLE_DEPTH = 4, /* GitHub's default */
    WORKFLOW_MAX_FILES = 51,                /* the workflow and 50 called workflows */
};

/* The GITHUB_TOKEN scopes, in GitHub's order. */
enum workflow_permission {
    WORKFLOW_PERMISSION_ACTIONS,
    WORKFLOW_PERMISSION_ARTIFACT_METADATA,
    WORKFLOW_PERMISSION_ATTESTATIONS,
    WORKFLOW_PERMISSION_CHECKS,
    WORKFLOW_PERMISSION_CONTENTS,
    WORKFLOW_PERMISSION_DEPLOYMENTS,
    WORKFLOW_PERMISSION_DISCUSSIONS,
    WORKFLOW_PERMISSION_ISSUES,
    WORKFLOW_PERMISSION_PACKAGES,
    WORKFLOW_PERMISSION_PAGES,
    WORKFLOW_PERMISSION_PULL_REQUESTS,
    WORKFLOW_PERMISSION_REPOSITORY_PROJECTS,
    WORKFLOW_PERMISSION_STATUSES,
    WORKFLOW_PERMISSION_SECURITY_EVENTS,
    WORKFLOW_PERMISSION_ID_TOKEN,
    WORKFLOW_PERMISSION_MODELS,
    WORKFLOW_PERMISSION_VULNERABILITY_ALERTS,
    WORKFLOW_PERMISSION_COUNT,
};

enum workflow_permission_level {
    WORKFLOW_LEVEL_NONE,
    WORKFLOW_LEVEL_READ,
    WORKFLOW_LEVEL_WRITE,
};

struct workflow_permissions {
    enum workflow_permission_level level[WORKFLOW_PERMISSION_COUNT];
};

/* The scope's name ("pull-requests") and a level's ("none", "read", "write"). */
const char *workflow_permission_name(enum workflow_permission p);
const char *workflow_permission_level_name(enum workflow_permission_level level);

struct workflow_step {
    const char *id; /* given, or generated: __run, __actions_checkout, __run_2… */
    struct token *name, *if_condition, *continue_on_error, *timeout_minutes, *env;
    struct token *working_directory, *shell, *run; /* run steps */
    struct token *uses, *with;                     /* action steps */
};

struct workflow_job {
    bool reusable; /* `uses:` a workflow: ref, inputs, secrets, and the called jobs */
    struct token *id, *name, *if_condition;
    struct token **needs; /* string tokens */
    size_t needs_count;
    struct token *strategy, *continue_on_error, *timeout_minutes, *cancel_timeout_minutes;
    struct token *concurrency, *env, *environment, *defaults, *runs_on, *container, *services;
    struct token *outputs, *snapshot;
    struct workflow_permissions *permissions; /* NULL: not set */
    struct workflow_step *steps;
    size_t steps_count;
    /* Reusable workflow jobs. */
    struct token *ref, *input_definitions, *input_values, *secret_definitions, *secret_values;
    struct token *embedded_concurrency;
    bool inherit_secrets;
    struct workflow_job *jobs; /* the called workflow's jobs, once loaded */
    size_t jobs_count;
};

struct workflow_input_type {
    const char *name, *type; /* workflow_dispatch input and its type ("string" when unset) */
};

struct workflow_template {
    struct workflow_input_type *input_types;
    size_t input_types_count;
    struct token *env, *defaults, *concurrency;
    struct workflow_permissions *permissions;
    struct workflow_job *jobs;
    size_t jobs_count;
};

/* Features GitHub switches per installation; the defaults are GitHub's. */
struct workflow_features {
    bool no_id_token;               /* refuse permissions: id-token */
    bool long_matrix_ids;           /* matrix ids up to 100 characters, not 25 */
    bool no_snapshot;               /* refuse jobs' `snapshot:` (custom images) */
    bool models_permission;         /* allow permissions: models */
    bool vulnerability_alerts;      /* allow permissions: vulnerability-alerts */
    bool service_container_command; /* allow services' entrypoint/command */
};

struct workflow_context;

/* Reads a called workflow (ref as written after `uses:`, e.g. "org/repo/.github/workflows/
 * x.yml@v1" or "./.github/workflows/x.yml"), typically with schema_read_workflow(ctx->schema,
 * ref, …), and returns its root token; or NULL with the errors in the context. found is set
 * false when there is no such workflow. */
typedef struct token *workflow_load_fn(void *data, struct workflow_context *ctx, const char *ref,
                                       bool *found);

struct workflow_options {
    struct workflow_features features;
    /* "LimitedRead" or "Write" (GitHub's permission policies); NULL = "Write". Caps the
     * permissions called workflows may ask for. */
    const char *permissions_policy;
    int max_job_limit;      /* jobs across all files; 0 = no limit */
    int max_nested_depth;   /* reusable workflow nesting; 0 = GitHub's 4; <0 = none allowed */
    int max_files;          /* files read, the workflow included; 0 = GitHub's 51 */
    bool skip_reusable;     /* do not load called workflows */
    workflow_load_fn *load; /* NULL: reusable workflows are not loaded */
    void *load_data;
};

/* One parse: the schema context (file table, errors, arena) the workflow was read with, and
 * what the conversion adds. */
struct workflow_context {
    struct schema_context *schema;
    const struct workflow_options *options;
    int job_count; /* across every file, for max_job_limit */
};

/* Sets up ctx over a schema context (both borrowed; they must outlive ctx). */
void workflow_context_init(struct workflow_context *ctx, struct schema_context *schema,
                           const struct workflow_options *options);
/* The file id of name (1-based), adding it to the file table when new. */
int workflow_context_add_file(struct workflow_context *ctx, const char *name);
const char *workflow_context_file_name(const struct workflow_context *ctx, int file);
/* Adds an error as GitHub words it: "<file> (Line: l, Col: c): <message>", "<file>: <message>"
 * or just the message, as much as `at` tells. at may be NULL. */
void workflow_context_error(struct workflow_context *ctx, const struct token *at, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));
/* Adds a message as it is (no position). */
void workflow_context_add_error(struct workflow_context *ctx, const char *message);
size_t workflow_context_error_count(const struct workflow_context *ctx);

/* Converts the root token of a read workflow. Returns 0 with *out set, or -1 when ctx has
 * errors (then *out is NULL, as GitHub throws the model away). Errors already in ctx (from
 * reading) stop the conversion before it starts. */
int workflow_convert(struct workflow_context *ctx, const struct token *root,
                     struct workflow_template **out);

/* The `on:` triggers as GitHub's TypeScript parser models them (EventsConfig): each event with
 * its branches/tags/paths (and -ignore), types, versions, names, workflows filters as string
 * lists, schedule as [{cron, timezone}], workflow_dispatch and workflow_call inputs with types
 * and defaults, workflow_call secrets. Errors about inputs go to ctx. New reference. */
json_t *workflow_events_to_json(struct workflow_context *ctx, const struct token *on);

/* The template as GitHub serialises it (the workflow-parser corpus's form), with errors and
 * the file table when given; style as token_to_json. New reference. */
json_t *workflow_template_to_json(const struct workflow_context *ctx,
                                  const struct workflow_template *t, bool include_file_table,
                                  enum token_json_style style);

#endif
