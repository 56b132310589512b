/* worker_hooks: the runner administrator's job hooks, ACTIONS_RUNNER_HOOK_JOB_STARTED and
 * ACTIONS_RUNNER_HOOK_JOB_COMPLETED, each run as a step of its own ("Set up runner" before the
 * job's first step, "Complete runner" after its last), as the official runner runs them.
 * Only runner/worker.c and runner/worker_hooks.c include this. */
#ifndef HARRIER_RUNNER_WORKER_HOOKS_INTERNAL_H
#define HARRIER_RUNNER_WORKER_HOOKS_INTERNAL_H

#include "runner/worker_internal.h"

#include <stdbool.h>

enum worker_hook { WORKER_HOOK_JOB_STARTED, WORKER_HOOK_JOB_COMPLETED, WORKER_HOOK_COUNT };

struct worker_hooks;

/* The hooks the worker's environment names (the runner's, with its .env file), read once when
 * the job has been set up, as the official runner reads them; NULL when none is set. */
struct worker_hooks *worker_hooks_new(void);
void worker_hooks_free(struct worker_hooks *hooks);

/* Starts the given hook when it is configured and has not run yet: false when there is none
 * to run; else *started says whether its process is running (w->current) or the step already
 * finished (it failed to start: a missing file, an extension no interpreter runs). */
bool worker_hook_start(struct worker *w, enum worker_hook which, enum step_start *started);

/* Whether the job's cancellation leaves this step running: the job-completed hook is the
 * runner's clean-up, so only the listener's kill deadline ends it. */
bool worker_hook_outlives_cancel(const struct running_step *rs);

#endif
