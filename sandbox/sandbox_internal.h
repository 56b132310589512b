/* sandbox_internal: what the files of sandbox/ share (the exec child, the namespace helper,
 * cgroups, process trees). Only the files of sandbox/ include it. */
#ifndef HARRIER_SANDBOX_SANDBOX_INTERNAL_H
#define HARRIER_SANDBOX_SANDBOX_INTERNAL_H

#include "sandbox/sandbox.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- exec: the child that becomes a step (exec.c) ----
 * Created with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), so its cost does not grow with
 * the caller's memory; it runs only async-signal-safe calls until execve. */
enum { EXEC_MAX_CGROUP_FDS = 3, EXEC_STACK_SIZE = 256 * 1024 };

struct sandbox_exec {
    char *const *argv;
    char *const *envp;
    const char *cwd; /* NULL = inherit */
    int stdio[3];
    int cgroup_fds[EXEC_MAX_CGROUP_FDS]; /* cgroup.procs files to join ("0"); -1 = none */
    rlim_t cpu_seconds, open_files, file_size;
    /* Set by the child when it could not exec (it has exited with 127 by then). */
    int error;
    const char *stage;
};

/* Starts ex's child with clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD|extra_flags), exit signal 0
 * (execve turns that back into SIGCHLD; the parent reaps it with waitid(P_PIDFD), never by
 * waiting for any child, and so does libuv: no race). stack is EXEC_STACK_SIZE bytes.
 * Returns the pid and sets *pidfd, or a negative errno. ex->error is set when the child
 * failed before or at execve. */
pid_t exec_start(struct sandbox_exec *ex, void *stack, int extra_flags, int *pidfd);

/* waitid(P_PIDFD) with rusage (the raw syscall; glibc's wrapper drops rusage). Returns 0
 * when the process had exited and is now reaped, -EAGAIN when it still runs (nonblocking
 * pidfd or WNOHANG), or a negative errno. */
int exec_reap(int pidfd, int options, int *exit_code, int *term_signal, struct rusage *usage);

/* ---- helper: the single-threaded process that owns a job's namespaces (helper.c) ---- */
enum helper_msg_type {
    HELPER_GO = 1,  /* worker -> helper: carry on */
    HELPER_MAPS,    /* helper -> worker: write my uid/gid maps, then GO */
    HELPER_READY,   /* helper -> worker: + the reaper's pidfd */
    HELPER_FAIL,    /* helper -> worker: setup failed at stage, errno */
    HELPER_SPAWN,   /* worker -> helper: request inline or in a memfd, + stdio fds */
    HELPER_SPAWNED, /* helper -> worker: pid, exec errno, + pidfd */
};

/* Setup stages, so that a failure names the kernel feature that is missing. */
enum helper_stage {
    STAGE_NONE,
    STAGE_USERNS,
    STAGE_MAPS,
    STAGE_MOUNTNS,
    STAGE_PIDNS,
    STAGE_IPCNS,
    STAGE_UTSNS,
    STAGE_NETNS,
    STAGE_LOOPBACK,
    STAGE_PRIVATE,
    STAGE_READONLY,
    STAGE_TMPFS,
    STAGE_DEV,
    STAGE_WRITABLE,
    STAGE_HIDE,
    STAGE_REAPER,
    STAGE_PROC,
    STAGE_SPAWN,
    STAGE_COUNT
};

struct helper_msg {
    int32_t type;
    int32_t stage; /* enum helper_stage, for HELPER_FAIL and exec failures */
    int32_t error; /* positive errno */
    int32_t pid;
    uint32_t inline_len; /* HELPER_SPAWN: request bytes after this header, 0 = in a memfd */
    uint32_t memfd_len;
    char detail[200]; /* a path or the exec stage, NUL-terminated */
};

/* What the helper sets up; built by the worker before fork, read by the helper. */
struct helper_setup {
    enum sandbox_level level;
    bool network;
    bool root; /* real root: no outer user namespace needed, full uid map */
    uid_t uid;
    gid_t gid;
    pid_t worker;
    char **hide;     /* NULL-terminated */
    char **writable; /* NULL-terminated */
};

/* The helper's life after fork: never returns. */
void helper_main(int sock, const struct helper_setup *setup) __attribute__((noreturn));

/* What each stage needs, for messages: "user namespaces", "mounting /proc", … */
const char *helper_stage_feature(enum helper_stage stage);

/* Spawn request encoding: header fields then NUL-separated argv, env, cwd. */
struct spawn_request {
    uint32_t argc, envc, has_cwd, pad;
    uint64_t cpu_seconds, open_files, file_size;
};

/* ---- cgroups (cgroup.c) ---- */
struct cgroup_job {
    int version;   /* 0 = no limits, 1 or 2 */
    char *dirs[3]; /* the job's cgroup folders (v1: one per controller; v2: dirs[0]) */
    int ndirs;
};

/* Creates the job's cgroups with limits (nothing when no limit is set). When no cgroup can
 * be had, leaves version 0 and says so once in a log line. */
void cgroup_job_create(struct cgroup_job *cg, const struct sandbox_limits *limits,
                       const char *name);
int cgroup_job_add(struct cgroup_job *cg, pid_t pid, struct error *err);
/* Opens each cgroup.procs for writing (fds[i], O_CLOEXEC); returns how many. */
int cgroup_job_open_procs(struct cgroup_job *cg, int fds[EXEC_MAX_CGROUP_FDS]);
/* Kills what is left (v2 cgroup.kill, v1 SIGKILL to each of cgroup.procs) and removes
 * the folders. */
void cgroup_job_destroy(struct cgroup_job *cg);

/* ---- process trees (tree.c) ---- */
struct tree_proc {
    pid_t pid;                /* 0 once gone */
    unsigned long long start; /* /proc/<pid>/stat starttime, against pid reuse */
    int sent;                 /* the last signal sent to it */
};

struct tree {
    struct tree_proc *procs;
    size_t count, cap;
};

/* Adds to tree every live process that descends from a process already in it, or belongs
 * to the process group of root; root itself is added too (root <= 0: neither, for a root
 * already reaped, whose pid may be reused). Reads /proc. */
void tree_scan(struct tree *tree, pid_t root);
/* Sends sig to every live member not sent sig yet (0: none); returns how many are alive
 * (zombies are not). */
size_t tree_signal(struct tree *tree, int sig);
void tree_free(struct tree *tree);

#endif
