/* exec: `harrier exec`, local mode. Picks the workflows the event triggers (or the one named
 * with -W), plans their jobs with runner/planner.h as GitHub's service would, starts one
 * `harrier worker` per job (several at once), feeds each its job message, follows its events
 * to the terminal and to the jobs that need it, and reports the run. */
#ifndef HARRIER_RUNNER_EXEC_H
#define HARRIER_RUNNER_EXEC_H

#include "lib/error.h"
#include "sandbox/sandbox.h"

#include <jansson.h>
#include <stdbool.h>

struct exec_options {
    const char *directory;           /* where to look for the checkout; NULL = "." */
    const char *workflow_file;       /* -W: run this file whatever the event */
    const char *job;                 /* -j: this job and what it needs */
    const char *event_name;          /* default "push" */
    const char *event_path;          /* the payload JSON */
    json_t *secrets, *vars, *inputs; /* objects of strings (borrowed) */
    json_t *matrix_filter;           /* object k → v: only configurations that match (borrowed) */
    int max_jobs;                    /* jobs at once; 0 = the number of cores */
    bool list, graph, dry_run, json, color, verbose;
    const char *logs_dir;
    const char *messages_dir; /* also write each job message there (<job>-<n>.json) */
    const char *needs_path;   /* jobs done elsewhere: {"<job>": {"result", "outputs"}} */
    const char *work_dir;     /* where jobs' workspaces go; NULL = ~/.cache/harrier/work */
    enum sandbox_level sandbox_level;
    bool sandbox_fallback;
    const char *self_exe; /* the harrier binary that runs workers */
    /* uses: (passed to each worker; the action cache is <work>/_actions, shared by runs) */
    const char *actions_url; /* tarball URL pattern; NULL = GitHub's */
    const char *node;        /* node binary for JavaScript actions; NULL = node on PATH */
    bool offline;            /* only the action cache */
    bool no_checkout_copy;   /* actions/checkout that cannot be fetched fails */
};

/* Runs and returns the exit code of `harrier exec`: 0 every job succeeded, 1 a job failed or
 * the run was cancelled, 2 bad usage or an invalid workflow (printed to stderr). */
int exec_run(const struct exec_options *options);

#endif
