/* job_message: GitHub's job message (AgentJobRequestMessage, PROTOCOL.md §6), decoded into
 * what the worker runs: steps with their template tokens, contexts as plain JSON, variables
 * and secrets, endpoints. Local mode's planner produces the same message, so this is the one
 * decoder for both modes. Members are matched ignoring case, unknown ones ignored. Everything
 * lives in the message's arena and dies with job_message_free(). */
#ifndef HARRIER_RUNNER_JOB_MESSAGE_H
#define HARRIER_RUNNER_JOB_MESSAGE_H

#include "lib/error.h"
#include "lib/mem.h"
#include "workflow/token.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum job_step_kind {
    JOB_STEP_SCRIPT,     /* run: */
    JOB_STEP_REPOSITORY, /* uses: owner/repo[/path]@ref, or ./local (repository_type "self") */
    JOB_STEP_CONTAINER,  /* uses: docker://image */
};

struct job_step {
    const char *id;           /* GUID: the step's timeline record */
    const char *name;         /* reference name (== context_name for GitHub) */
    const char *display_name; /* legacy pre-evaluated name; NULL when absent */
    const char *context_name; /* key in the steps context */
    const char *condition;    /* full expression; "success()" when absent */
    enum job_step_kind kind;
    const char *repository_name; /* owner/repo */
    const char *repository_ref;
    const char *repository_type;      /* "GitHub" or "self" */
    const char *repository_path;      /* sub-folder or ./local path; "" when none */
    const char *image;                /* JOB_STEP_CONTAINER */
    struct token *continue_on_error;  /* NULL = false */
    struct token *timeout_minutes;    /* NULL = none */
    struct token *display_name_token; /* NULL = derived */
    struct token *environment;        /* mapping, or NULL */
    struct token *inputs; /* mapping, or NULL (script, shell, workingDirectory for run:) */
};

struct job_message {
    struct arena arena;
    json_t *json; /* the whole message, as received */
    const char *message_type;
    const char *job_id, *job_display_name, *job_name;
    int64_t request_id;
    const char *plan_id, *plan_type, *scope_identifier, *timeline_id;
    int64_t plan_version;
    json_t *variables; /* object: name → {value, isSecret} (borrowed from json) */
    json_t *contexts;  /* object: context name → plain JSON value (owned) */
    const char **file_table;
    size_t file_count;
    struct token **environment; /* workflow env, then job env: mappings, evaluated in order */
    size_t environment_count;
    struct token **defaults; /* workflow defaults, then job defaults */
    size_t defaults_count;
    struct token *job_container, *job_services, *job_outputs;
    struct job_step *steps;
    size_t step_count;
    /* SystemVssConnection */
    const char *connection_url, *access_token;
    json_t *connection_data; /* object, borrowed; may be NULL */
    json_t *mask;            /* array of {type, value}, borrowed; may be NULL */
};

/* Decodes text. Returns 0, or negative with err saying which member is wrong. */
int job_message_decode(const char *text, size_t len, struct job_message **out, struct error *err);
void job_message_free(struct job_message *message);

/* A variable's value (name matched ignoring case), or NULL. */
const char *job_message_variable(const struct job_message *message, const char *name,
                                 bool *is_secret);

#endif
