/* The child that becomes a step: started with clone(CLONE_VM | CLONE_VFORK), it shares its
 * parent's memory until execve, so it may run only async-signal-safe calls (no malloc, no
 * stdio), exactly as posix_spawn's child. */
#include "sandbox/sandbox_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static const char default_path[] = "/usr/local/bin:/usr/bin:/bin";

static int child_fail(struct sandbox_exec *ex, const char *stage)
{
    ex->error = errno ? errno : EINVAL;
    ex->stage = stage;
    _exit(127);
}

static const char *env_path(char *const *envp)
{
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], "PATH=", 5) == 0)
            return envp[i] + 5;
    return default_path;
}

/* execvpe without malloc: each PATH entry is joined in a stack buffer. As execvp, an EACCES
 * seen on the way is reported over a later ENOENT. */
static void child_exec(struct sandbox_exec *ex)
{
    const char *file = ex->argv[0];
    if (strchr(file, '/')) {
        execve(file, ex->argv, ex->envp);
        return;
    }
    size_t flen = strlen(file);
    int seen_eacces = 0;
    char full[PATH_MAX];
    for (const char *p = env_path(ex->envp);; p++) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        if (dlen == 0)
            dlen = 1, p = "."; /* an empty entry means the current folder */
        if (dlen + 1 + flen < sizeof full) {
            memcpy(full, p, dlen);
            full[dlen] = '/';
            memcpy(full + dlen + 1, file, flen + 1);
            execve(full, ex->argv, ex->envp);
            if (errno == EACCES)
                seen_eacces = 1;
        }
        if (*end == '\0')
            break;
        p = end;
    }
    if (seen_eacces)
        errno = EACCES;
}

static int child_stdio(struct sandbox_exec *ex)
{
    int fds[3] = {ex->stdio[0], ex->stdio[1], ex->stdio[2]};
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i) {
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0)
                return -1;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        if (fds[i] == i) {
            if (fcntl(i, F_SETFD, 0) < 0)
                return -1;
        } else if (dup2(fds[i], i) < 0) {
            return -1;
        }
    }
    return 0;
}

static int child_limit(int resource, rlim_t value)
{
    if (!value)
        return 0;
    struct rlimit rl = {value, value};
    return setrlimit(resource, &rl);
}

static int child_main(void *arg)
{
    struct sandbox_exec *ex = arg;
    errno = 0;
    /* Handlers and ignored signals of the parent must not leak into the step (a step with
     * SIGPIPE ignored breaks `yes | head`). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    /* Its own group, and the reaper of its orphans while it runs, so that cancel finds
     * every descendant, even one that left the group with setsid. */
    if (setpgid(0, 0) < 0)
        child_fail(ex, "setpgid");
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        child_fail(ex, "prctl(PR_SET_CHILD_SUBREAPER)");
    for (int i = 0; i < EXEC_MAX_CGROUP_FDS; i++)
        if (ex->cgroup_fds[i] >= 0 && write(ex->cgroup_fds[i], "0", 1) != 1)
            child_fail(ex, "joining the job's cgroup");
    if (child_stdio(ex) < 0)
        child_fail(ex, "setting up stdin, stdout and stderr");
    /* No other descriptor of the caller reaches the step, even one opened without
     * O_CLOEXEC (our fd table is a copy: this does not touch the caller's). */
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        child_fail(ex, "close_range (Linux 5.11)");
    if (ex->cwd && chdir(ex->cwd) < 0)
        child_fail(ex, "changing to the working directory");
    if (child_limit(RLIMIT_CPU, ex->cpu_seconds) < 0 ||
        child_limit(RLIMIT_NOFILE, ex->open_files) < 0 ||
        child_limit(RLIMIT_FSIZE, ex->file_size) < 0)
        child_fail(ex, "setting resource limits");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    child_exec(ex);
    child_fail(ex, "running the program");
    return 127;
}

pid_t exec_start(struct sandbox_exec *ex, void *stack, int extra_flags, int *pidfd)
{
    ex->error = 0;
    ex->stage = NULL;
    /* As posix_spawn: no signal handler may run in the child while it shares our memory. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    *pidfd = -1;
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | extra_flags; /* exit signal 0 */
    pid_t pid = clone(child_main, (char *)stack + EXEC_STACK_SIZE, flags, ex, pidfd);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -saved;
    return pid;
}

int exec_reap(int pidfd, int options, int *exit_code, int *term_signal, struct rusage *usage)
{
    siginfo_t info;
    struct rusage ru;
    memset(&info, 0, sizeof info);
    memset(&ru, 0, sizeof ru);
    for (;;) {
        long r = syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | __WALL | options, &ru);
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        return -errno;
    }
    if (info.si_pid == 0)
        return -EAGAIN;
    *exit_code = info.si_code == CLD_EXITED ? info.si_status : 0;
    *term_signal = info.si_code == CLD_EXITED ? 0 : info.si_status;
    if (usage)
        *usage = ru;
    return 0;
}
