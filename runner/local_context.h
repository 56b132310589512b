/* local_context: local mode's `github` context and event payload, built from the checkout
 * (runner/gitinfo.h) and the exec options, with the members GitHub's service sends in a job
 * message (PROTOCOL.md §6.5) so that workflows read the same values they read on GitHub. */
#ifndef HARRIER_RUNNER_LOCAL_CONTEXT_H
#define HARRIER_RUNNER_LOCAL_CONTEXT_H

#include "lib/error.h"
#include "runner/gitinfo.h"

#include <jansson.h>

struct local_context_options {
    const char *event_name;    /* "push" when NULL */
    json_t *event;             /* the payload (--eventpath); NULL = one made for event_name */
    json_t *inputs;            /* workflow_dispatch inputs (object) or NULL */
    const char *workflow_name; /* the workflow's `name:` or its file path */
    const char *workflow_path; /* relative to the checkout: .github/workflows/ci.yml */
    const char *run_id;        /* unique per run */
};

/* A new object: the github context (without the per-job and per-step members: job,
 * workspace, action*, env, path, output, state, step_summary, token, event_path). */
json_t *local_context_github(const struct gitinfo *git, const struct local_context_options *o);

/* The API URL of a server: https://api.github.com for github.com, <server>/api/v3 otherwise. */
char *local_context_api_url(const char *server_url);

#endif
