/* listener: `harrier run`, the long-running side of runner mode (PROTOCOL.md §4, §7). One
 * process on one libuv loop: a session with the runner service, the long-poll, decryption of
 * messages, job dispatch to a `harrier worker`, lock renewal, cancellation, and the worker's
 * events turned into timeline records, live console lines, logs, summaries and completion.
 * With --slots N, one process serves N registrations: N sessions, N jobs at once, one loop,
 * one HTTP client and one shared action cache. */
#ifndef HARRIER_RUNNER_LISTENER_H
#define HARRIER_RUNNER_LISTENER_H

#include "sandbox/sandbox.h"

#include <stdbool.h>

struct listener_options {
    const char *dir;  /* where .runner and the credentials are */
    bool once;        /* one job, then exit (--once, ephemeral, JIT) */
    bool jit;         /* the configuration came from --jitconfig */
    int slots;        /* registrations served (config --slots N wrote them); 0: 1 */
    bool finish_jobs; /* on SIGTERM/SIGINT let running jobs finish instead of cancelling */
    enum sandbox_level sandbox_level;
    bool sandbox_fallback;
};

/* Runs until stopped; returns the exit code of §2.1 (0, 1, 2, 5 or 7). */
int listener_run(const struct listener_options *options);

#endif
