/* worker: runs one job from GitHub's job message (runner/job_message.h) on this machine, as
 * the official runner's worker does: sets up the workspace and temp folders, masks secrets,
 * evaluates each step's condition, env and inputs, runs it in the job's sandbox, applies its
 * workflow and file commands, then evaluates the job's outputs. It reports through events,
 * JSON lines written to a file descriptor (runner/EVENTS.md); nothing else reaches the parent. */
#ifndef HARRIER_RUNNER_WORKER_H
#define HARRIER_RUNNER_WORKER_H

#include "lib/error.h"
#include "runner/job_message.h"
#include "sandbox/sandbox.h"

#include <stdbool.h>

struct worker_options {
    const char *work_root; /* the runner's work folder (_work): workspace, _temp, _tool… */
    const char *runner_name;
    enum sandbox_level sandbox_level;
    bool sandbox_fallback;         /* use a lower level when this one cannot be had */
    const char *const *hide_paths; /* runner credentials, other jobs' folders */
    int events_fd;                 /* where events go (JSON lines) */
    const char *actions_cache;     /* downloaded actions; NULL = <work_root>/_actions */
    const char *actions_url;       /* tarball URL pattern; NULL: the job's service when its
                                      message names one (runner mode, actiondownloadinfo),
                                      else GitHub's tarballs */
    const char *node;              /* node for JavaScript actions; NULL = node on PATH */
    const char *checkout_dir;      /* local mode: the checkout actions/checkout copies */
    bool offline;                  /* only the action cache */
    bool no_checkout_copy;
};

/* Runs the job to its end; returns 0 when the job ran (its result is in the job-finished
 * event, and in *succeeded), negative with err set when it could not be set up at all. */
int worker_run(struct job_message *message, const struct worker_options *options, bool *succeeded,
               struct error *err);

/* Asks a running worker to cancel the job (from a signal handler's loop callback or the
 * listener): running steps get SIGINT, SIGTERM, SIGKILL as the official runner sends them;
 * later steps run only when their condition asks for always() or cancelled(). */
void worker_cancel_current(void);

#endif
