/* worker_process: a `harrier worker` child, started through sandbox/ with its stdout (the event
 * stream, runner/EVENTS.md) on a pipe that is read on the loop line by line. What starts one
 * (harrier exec's scheduler, the listener's job) gets every line, then one call once the worker
 * has exited and its stream is drained; the handle is freed after that call. */
#ifndef HARRIER_RUNNER_WORKER_PROCESS_H
#define HARRIER_RUNNER_WORKER_PROCESS_H

#include "lib/error.h"
#include "sandbox/sandbox.h"

#include <stddef.h>
#include <uv.h>

struct worker_process;

struct worker_process_options {
    const char *const *argv; /* argv[0] the harrier binary, argv[1] "worker" */
    /* One event line, without its '\n'. */
    void (*on_line)(void *data, const char *line, size_t len);
    /* The worker exited (exit code, or 128 + signal) and every line was read. */
    void (*on_exit)(void *data, int exit_code);
    void *data;
};

/* Starts the worker in procs (the caller's process tree); its stderr is the caller's. */
int worker_process_start(uv_loop_t *loop, struct sandbox_job *procs,
                         const struct worker_process_options *options, struct worker_process **out,
                         struct error *err);
/* A signal to the worker itself: SIGINT cancels its job, SIGTERM is the runner's shutdown. */
void worker_process_signal(struct worker_process *worker, int signum);
/* The sandbox's end of a process tree: SIGINT, SIGTERM, then SIGKILL to the worker and its steps.
 */
void worker_process_end(struct worker_process *worker);

#endif
