/* planner: local mode's stand-in for GitHub's service. Reads a workflow file (YAML, schema,
 * conversion), decides whether it runs for an event, evaluates each job's `if`, `strategy`
 * and name as GitHub does when a job becomes ready, and produces GitHub's own job message
 * (AgentJobRequestMessage) for every matrix configuration, so the worker runs exactly what a
 * real GitHub job would hand it. No processes, no I/O beyond reading the workflow file. */
#ifndef HARRIER_RUNNER_PLANNER_H
#define HARRIER_RUNNER_PLANNER_H

#include "lib/error.h"
#include "lib/mem.h"
#include "runner/gitinfo.h"
#include "workflow/matrix.h"
#include "workflow/schema.h"
#include "workflow/workflow.h"

#include <jansson.h>
#include <stdbool.h>

struct plan_workflow {
    struct arena arena;
    struct schema_context schema;
    struct workflow_context context;
    struct workflow_options options;
    struct token *root;
    struct workflow_template *template;
    char *rel_path; /* .github/workflows/ci.yml: the name GitHub gives the file */
    char *name;     /* `name:`, or rel_path */
    json_t *events; /* on:, as workflow_events_to_json models it */
};

/* Reads and converts the workflow at path (rel_path is how messages name it). On an invalid
 * workflow returns negative with err holding GitHub's messages, one per line, the first one's
 * file, line and column in err->where/line/col. */
int planner_load(const char *path, const char *rel_path, struct plan_workflow **out,
                 struct error *err);
void planner_workflow_free(struct plan_workflow *wf);

/* Whether the workflow runs for event_name with this payload and checkout, as GitHub applies
 * `on:` and its filters (branches, tags, paths and their -ignore forms, types). */
bool planner_matches_event(const struct plan_workflow *wf, const char *event_name,
                           const json_t *payload, const struct gitinfo *git);

/* What a job's expressions see at plan time. All borrowed. */
struct plan_contexts {
    json_t *github;  /* without "job": the planner adds it per job */
    json_t *vars;    /* object */
    json_t *inputs;  /* object */
    json_t *secrets; /* object: name → value */
};

/* The needs of a job as its `if` and contexts see them. */
struct plan_needs {
    json_t *context; /* object: job id → {result, outputs} (borrowed) */
    bool any_failed; /* a needed job failed */
    bool any_cancelled;
    bool all_succeeded;    /* every needed job succeeded (true when there are none) */
    bool cancel_requested; /* the run is being cancelled */
};

const char *planner_job_id(const struct workflow_job *job);

/* Evaluates the job's `if` (status functions over its needs). Returns 0 with *run set, or
 * negative with err set (the job then fails). */
int planner_job_condition(struct plan_workflow *wf, const struct workflow_job *job,
                          const struct plan_contexts *ctx, const struct plan_needs *needs,
                          bool *run, struct error *err);

/* Evaluates the job's strategy and expands its matrix (one configuration without one).
 * Returns 0, or negative with err set in GitHub's words. */
int planner_job_matrix(struct plan_workflow *wf, const struct workflow_job *job,
                       const struct plan_contexts *ctx, const struct plan_needs *needs,
                       struct matrix *out, struct error *err);

/* The display name of one configuration: the job's `name:` evaluated with the matrix, or
 * the configuration's name. Caller frees. */
char *planner_job_display_name(struct plan_workflow *wf, const struct workflow_job *job,
                               const struct plan_contexts *ctx, const struct plan_needs *needs,
                               const struct matrix_configuration *config);

/* GitHub's job message for one configuration (new reference). run_id and job_guid identify
 * it; system_url and token fill SystemVssConnection (the embedded services' URL and the
 * job's token). */
struct plan_message_options {
    const char *display_name;
    const char *system_url;
    const char *token;
};
json_t *planner_job_message(struct plan_workflow *wf, const struct workflow_job *job,
                            const struct plan_contexts *ctx, const struct plan_needs *needs,
                            const struct matrix_configuration *config,
                            const struct plan_message_options *options, struct error *err);

#endif
