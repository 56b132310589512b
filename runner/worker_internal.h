/* worker_internal: what runner/worker.c (the job path: set-up, steps in order, the job's end)
 * and runner/worker_actions.c (uses: steps: finding and downloading actions, JavaScript
 * actions, composite actions, the checkout copy) share, with runner/worker_hooks.c (the job
 * hooks). Only these files include it. */
#ifndef HARRIER_RUNNER_WORKER_INTERNAL_H
#define HARRIER_RUNNER_WORKER_INTERNAL_H

#include "actions/action.h"
#include "lib/buf.h"
#include "protocol/runner_service.h"
#include "runner/events.h"
#include "runner/file_commands.h"
#include "runner/masker.h"
#include "runner/step_commands.h"
#include "runner/worker.h"
#include "workflow/status.h"
#include "workflow/template.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum job_status { JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED };

/* The file commands of one step: name in the step's env, file name prefix. */
enum { FC_OUTPUT, FC_ENV, FC_PATH, FC_STATE, FC_SUMMARY, FC_COUNT };

struct worker;

/* What a uses: step runs: found once per step. Repository actions are downloaded and read at
 * set-up, those inside composite actions too (recursively); local actions when their step
 * starts, and the repository actions inside a local composite when it starts. */
struct resolved_action {
    struct resolved_action *next;
    const struct job_step *step;
    struct resolved_action *parent; /* the composite action it sits in; NULL: the job's */
    struct action *action;          /* NULL for the checkout copy */
    char *dir;                      /* the action's folder */
    char *repository;               /* owner/repo, "" for local actions */
    char *ref;
    bool checkout_copy;     /* local mode: actions/checkout could not be fetched; copy the tree */
    json_t *state;          /* STATE_* saved by its pre and main steps */
    bool post_registered;   /* its pre or main step ran and it has a post step: that runs at the
                               job's end, or in the post step of the composite it sits in */
    json_t *steps_scope;    /* composite: the steps context of its main steps, which its post
                               steps see (the official runner's SiblingScopeName) */
    struct job_step *steps; /* composite: its runs.steps, converted once (stable pointers: the
                               steps' own resolved actions are found by them) */
    size_t step_count;
    bool steps_ready;
    struct arena arena;
};

/* The steps being run: the job's, or a composite action's (pushed when it starts). */
struct frame {
    struct frame *parent, *next_all;
    struct running_step *owner; /* the composite's step; NULL for the job */
    struct resolved_action *resolved;
    struct job_step *steps;
    size_t count, next;
    json_t *steps_context, *inputs_context;
    json_t *env_overlay; /* the env: of the uses: steps around this frame */
    bool failed;
    enum events_stage stage; /* MAIN; PRE: a composite's pre, its actions' pre steps; POST: its
                                post, the post steps registered inside it, last first */
    uv_timer_t timer;        /* the composite step's timeout-minutes, over all its steps */
    bool timer_open, timed_out;
    struct arena arena; /* conditions built for its steps */
};

/* A job-level pre step, or a post step waiting for the job's end (registered when its action's
 * pre or main step ran). */
struct post_step {
    struct post_step *next;
    const struct job_step *step;
    struct resolved_action *resolved;
    struct frame *frame;
    char *display_name;
};

struct running_step {
    struct worker *w;
    const struct job_step *step;
    int number;
    char *display_name;
    struct sandbox_step *handle;
    uv_pipe_t out;
    bool out_open, out_closing; /* open: reading; closing: uv_close called, callback pending */
    uv_timer_t timer;
    bool timer_open, timer_closing;
    struct buf partial; /* output after the last newline */
    struct step_commands *commands;
    json_t *env;     /* the step's env context: job env + step env */
    json_t *outputs; /* steps.<id>.outputs */
    char *files[FC_COUNT];
    char *script_path;
    bool exited;
    struct sandbox_step_result result;
    bool timed_out, failed_by_command, continue_on_error;
    bool timed_out_by_composite; /* the timeout of a composite it runs in ended it */
    double timeout_minutes;
    const char *condition; /* its if:, tested again when the job is cancelled; not owned */
    uint64_t started_ms;
    enum events_stage stage;
    struct frame *frame;
    struct resolved_action *resolved; /* uses: steps */
    bool inner;                       /* in a composite: logs under the composite's number */
    json_t *input_values;             /* the action's inputs: with: and defaults */
};

struct worker {
    uv_loop_t loop;
    struct job_message *msg;
    const struct worker_options *opt;
    struct masker *masker;
    struct events_writer *events;
    int step_counter; /* steps are numbered from 1 in the order they run (events.h) */
    struct sandbox_job *sandbox;
    char *workspace, *temp, *tool_cache, *file_commands_dir, *event_path;
    json_t *contexts; /* github, env, vars, secrets, matrix, strategy, needs, inputs, job, runner,
                         steps */
    json_t *job_env;  /* workflow + job env, then GITHUB_ENV additions */
    struct file_commands_path_list path;
    const char *default_shell, *default_working_directory;
    char *defaults_shell, *defaults_working_directory;
    enum job_status status;
    struct status_source status_source; /* what success(), failure()… read (workflow/status.h) */
    bool cancel_requested;
    struct running_step *current;
    uv_signal_t sigint, sigterm;
    uv_async_t cancel_async;
    uv_prepare_t flush; /* the events held in a loop turn go out before the loop waits */
    uv_timer_t advance; /* moves to the next step from a fresh loop turn, never from a
                           callback of the step that just ended */
    struct resolved_action *resolved;
    struct frame *frame, *frames;             /* the current frame; every frame, freed at the end */
    struct post_step *pre_steps, *post_steps; /* pre: in order; post: a stack */
    char *actions_cache;
    struct actions_prepare *prepare; /* actions being resolved and downloaded, or NULL */
    struct http_client *http;        /* for actions: made when first needed */
    struct vss_conn *job_conn;       /* runner mode: the job's service (actiondownloadinfo) */
    json_t *download_infos;          /* "owner/repo@ref" → what the service said */
    json_t *action_roots;            /* cache folders fetched or found in this job */
    uv_timer_t actions_timer;        /* back-off between actiondownloadinfo tries */
    bool actions_timer_open;
    char *node_version; /* "v20.1.0", once asked */
    int probe_fd;
    struct worker_hooks *hooks; /* runner/worker_hooks_internal.h; NULL: none configured */
};

/* STEP_WAITING: a composite waits for the actions inside it to be downloaded; it goes on by
 * itself (worker_advance) */
enum step_start { STEP_FINISHED, STEP_RUNNING, STEP_ENTERED, STEP_WAITING };

/* worker.c */
void worker_template_context(struct worker *w, struct expr_context *ec,
                             struct template_context *tc);
void worker_log_line(struct worker *w, const struct running_step *rs, const char *line);
void worker_log_warning(struct worker *w, const struct running_step *rs, const char *message);
void worker_report_error(struct worker *w, const struct running_step *rs, const struct error *err);
/* Records the step in its steps context and the job status, and reports it. */
void worker_finish_step(struct running_step *rs, enum events_result outcome);
void worker_running_step_free(struct running_step *rs);
/* The step's GITHUB_OUTPUT, GITHUB_ENV… files, empty, in the job's file-command folder. */
int worker_create_file_command_files(struct running_step *rs, struct error *err);
/* Moves on to the next step from a fresh loop turn. */
void worker_advance(struct worker *w);
/* Starts argv in the job's sandbox, its output read into the step's log. */
int worker_spawn_process(struct running_step *rs, const char *const *argv, const char *cwd,
                         struct error *err);

/* worker_actions.c */
/* Job set-up: every repository action of the job (and inside its composite actions) resolved
 * (runner mode: the service's actiondownloadinfo), downloaded into the cache unless there, and
 * read; pre steps queued. done comes once, maybe before this returns. */
typedef void worker_actions_ready_fn(struct worker *w, int rc, const struct error *err);
void worker_prepare_actions(struct worker *w, worker_actions_ready_fn *done);
/* Stops a preparation under way (cancellation); its continuation sees -ECANCELED. */
void worker_actions_cancel(struct worker *w);
/* The job's end: the action download's client and handles closed. */
void worker_actions_close(struct worker *w);
/* In a composite's pre or post frame: the condition a step runs under (its action's pre-if or
 * post-if), or NULL when the step does not appear there (no pre step; no post step registered,
 * its action's pre and main steps having not run). */
const char *worker_stage_condition(struct worker *w, struct frame *f, const struct job_step *s);
/* Whether f or a composite around it ran out of time: a step of it that starts is cancelled at
 * once (its remaining steps keep their deadline, as on GitHub). */
bool worker_frame_timed_out(const struct frame *f);
/* Finds what a uses: step runs, once per step (read from the prepared cache). */
int worker_resolve_step(struct worker *w, const struct job_step *s, struct resolved_action **out,
                        struct error *err);
void worker_resolved_action_free(struct resolved_action *r);
/* github.action* for the step. */
void worker_set_action_context(struct running_step *rs);
/* A uses: step: the checkout copy (finished at once), a JavaScript action's process
 * (*started = STEP_RUNNING) or a composite's frame (STEP_ENTERED). */
int worker_start_action(struct running_step *rs, json_t *with, const struct template_context *tc,
                        enum step_start *started, struct error *err);
void worker_enter_frame(struct worker *w, struct frame *f);
/* The composite's steps have run: its outputs and result from theirs. */
void worker_end_composite(struct worker *w, struct frame *f);
void worker_frame_free(struct frame *f);

#endif
