/* sandbox: the one way harrier starts a step's process. A job sandbox is one namespace set
 * per job (user, pid, mount, ipc, uts; net for strict) with a pid-1 reaper inside; steps are
 * spawned into it and watched on the libuv loop through their pidfds. See sandbox/README.md. */
#ifndef HARRIER_SANDBOX_SANDBOX_H
#define HARRIER_SANDBOX_SANDBOX_H

#include "lib/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <uv.h>

/* Chosen by the admin (--sandbox), never by a workflow. */
enum sandbox_level {
    SANDBOX_NONE,    /* a plain child in its own process group, as the official runner */
    SANDBOX_PROCESS, /* + user, pid, mount, ipc, uts namespaces; hidden paths; no orphans */
    SANDBOX_STRICT,  /* + read-only root, private /tmp and /dev/shm, minimal /dev, no network */
};

const char *sandbox_level_name(enum sandbox_level level);
/* "none", "process" or "strict"; -1 when unknown. */
int sandbox_level_parse(const char *name);

/* Per-job limits through cgroups (v2 where delegated, v1 as root); 0 = no limit. */
struct sandbox_limits {
    uint64_t memory_bytes;
    uint32_t pids_max;
    uint32_t cpu_percent; /* 100 = one CPU */
};

struct sandbox_job_options {
    enum sandbox_level level;
    bool allow_fallback; /* use the next level down when this one cannot be had */
    bool network;        /* strict only: keep the host network (--network) */
    /* NULL-terminated lists of absolute paths. hide: files get an empty read-only file
     * bound over them, folders an empty read-only tmpfs (runner config, credentials,
     * other jobs' work folders). writable: stay writable under strict's read-only root
     * (the job's workspace and temp folders). Missing paths are skipped. */
    const char *const *hide_paths;
    const char *const *writable_paths;
    struct sandbox_limits limits;
    /* Cancel timings; 0 = the official runner's 7500 ms and 2500 ms. */
    unsigned cancel_interrupt_ms; /* SIGINT, then this long before SIGTERM */
    unsigned cancel_terminate_ms; /* SIGTERM, then this long before SIGKILL */
};

struct sandbox_job;
struct sandbox_step;

/* Creates a job sandbox on loop (blocks for the few milliseconds the namespaces take).
 * When options->level cannot be had and allow_fallback is set, says so once in one log
 * line naming the missing kernel feature and uses the next level down; otherwise fails
 * with that message. Free with sandbox_job_free. */
int sandbox_job_new(uv_loop_t *loop, const struct sandbox_job_options *options,
                    struct sandbox_job **job, struct error *err);
/* The level in effect (after any fallback). */
enum sandbox_level sandbox_job_level(const struct sandbox_job *job);
/* True when options->limits are enforced (false: said once in a log line, then ignored). */
bool sandbox_job_has_limits(const struct sandbox_job *job);
/* Ends every process of the job (the reaper's death takes the pid namespace with it; at
 * level none, every step's tree), reaps them, and closes the job's handles: run the loop
 * afterwards so their close callbacks finish. Exit callbacks of steps still running are
 * not called. */
void sandbox_job_free(struct sandbox_job *job);

enum sandbox_stdio_kind {
    SANDBOX_STDIO_NULL, /* /dev/null */
    SANDBOX_STDIO_FD,   /* fd (the caller keeps it; the step gets a copy) */
    SANDBOX_STDIO_PIPE, /* a new pipe; fd receives the caller's end (O_CLOEXEC|O_NONBLOCK) */
};

struct sandbox_stdio {
    enum sandbox_stdio_kind kind;
    int fd;
};

struct sandbox_step_result {
    int exit_code;   /* when term_signal is 0 */
    int term_signal; /* the signal that ended the step, or 0 */
    bool canceled;   /* sandbox_step_cancel was called */
    struct rusage usage;
};

typedef void (*sandbox_exit_cb)(struct sandbox_step *step, const struct sandbox_step_result *r,
                                void *data);

struct sandbox_spawn_options {
    const char *const *argv; /* argv[0] is looked up in env's PATH when it has no '/' */
    const char *const *env;  /* NULL-terminated "K=V"; NULL = empty */
    const char *cwd;         /* NULL = the caller's */
    struct sandbox_stdio stdio[3];
    /* Per-step resource limits (setrlimit); 0 = inherit. */
    rlim_t cpu_seconds, open_files, file_size;
    sandbox_exit_cb on_exit; /* called once, on the loop; the step is freed after it */
    void *data;
};

/* Starts a step in job. On success *step is running and on_exit will be called once: when
 * its process has exited, or, after sandbox_step_cancel, once every process it started has
 * ended. A step that fails to start (no such program, bad cwd) returns an error saying so. */
int sandbox_spawn(struct sandbox_job *job, struct sandbox_spawn_options *options,
                  struct sandbox_step **step, struct error *err);
/* The step's pid as the caller sees it. */
int sandbox_step_pid(const struct sandbox_step *step);
/* Ends the step's whole process tree, even children that left its group with setsid: as the
 * official runner, SIGINT, 7.5 s, SIGTERM, 2.5 s, then SIGKILL. Returns at once. */
void sandbox_step_cancel(struct sandbox_step *step);

#endif
