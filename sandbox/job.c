/* The worker's side of a job sandbox: creating it (through the helper, helper.c), spawning
 * steps, watching them on the libuv loop through their pidfds and reaping each with
 * waitid(P_PIDFD) (libuv waits only for the pids it spawned, so no SIGCHLD race; the worker
 * must not set SIGCHLD to SIG_IGN, which would reap steps behind our back), cancelling
 * their trees, ending the job. */
#include "sandbox/sandbox_internal.h"

#include "lib/log.h"
#include "lib/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { HELPER_TIMEOUT_MS = 10000, CANCEL_TICK_MS = 50, CANCEL_GIVE_UP_MS = 5000 };

struct sandbox_step {
    struct sandbox_job *job;
    struct sandbox_step *prev, *next;
    pid_t pid;
    int pidfd;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    sandbox_exit_cb on_exit;
    void *data;
    bool exited, done, closed;
    int cancel_signal; /* 0, SIGINT, SIGTERM, SIGKILL */
    uint64_t cancel_deadline;
    struct tree tree;
    struct sandbox_step_result result;
};

struct sandbox_job {
    uv_loop_t *loop;
    enum sandbox_level level;
    bool network;
    unsigned interrupt_ms, terminate_ms;
    char **hide, **writable;
    struct cgroup_job cgroup;
    int cgroup_fds[EXEC_MAX_CGROUP_FDS]; /* level none: cgroup.procs files steps join */
    void *stack;                         /* level none: the exec child's stack */
    int sock;                            /* the helper's socket */
    pid_t helper;
    int helper_pidfd;
    pid_t reaper;
    int reaper_pidfd;
    struct sandbox_step *steps;
    int refs; /* 1 for the caller + 1 per step not yet closed */
};

static const char *const level_names[] = {"none", "process", "strict"};

const char *sandbox_level_name(enum sandbox_level level)
{
    return (unsigned)level < 3 ? level_names[level] : "unknown";
}

int sandbox_level_parse(const char *name)
{
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

enum sandbox_level sandbox_job_level(const struct sandbox_job *job)
{
    return job->level;
}

bool sandbox_job_has_limits(const struct sandbox_job *job)
{
    return job->cgroup.version != 0;
}

int sandbox_step_pid(const struct sandbox_step *step)
{
    return step->pid;
}

/* ---- small helpers ---- */

static char **strv_copy(const char *const *list)
{
    size_t n = 0;
    while (list && list[n])
        n++;
    char **out = xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(list[i]);
    return out;
}

static void strv_free(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Waits for a process through its pidfd (which libuv may have made nonblocking) and reaps
 * it. */
static int reap_blocking(int pidfd, int *code, int *sig, struct rusage *usage)
{
    struct pollfd p = {pidfd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    int c, s;
    return exec_reap(pidfd, 0, code ? code : &c, sig ? sig : &s, usage);
}

static int helper_recv(struct sandbox_job *job, struct helper_msg *msg, int *fd, struct error *err)
{
    struct pollfd p = {job->sock, POLLIN, 0};
    int r;
    while ((r = poll(&p, 1, HELPER_TIMEOUT_MS)) < 0 && errno == EINTR) {
    }
    if (r == 0)
        return error_set(err, ETIMEDOUT, "the sandbox helper did not answer within %d s",
                         HELPER_TIMEOUT_MS / 1000);
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {msg, sizeof *msg};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    ssize_t n;
    while ((n = recvmsg(job->sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof *msg)
        return error_set(err, EPIPE, "the sandbox helper ended unexpectedly");
    if (fd)
        *fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int fds[4];
        memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)(nfds > 4 ? 4 : nfds));
        for (int i = 0; i < nfds && i < 4; i++) {
            if (fd && *fd < 0)
                *fd = fds[i];
            else
                close(fds[i]);
        }
    }
    return 0;
}

static int helper_send(struct sandbox_job *job, struct helper_msg *msg, const void *payload,
                       size_t len, const int *fds, int nfds)
{
    struct iovec iov[2] = {{msg, sizeof *msg}, {(void *)payload, len}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (nfds) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    while (sendmsg(job->sock, &mh, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -saved;
}

/* The inner user namespace's maps, for real root: root maps to root, and every other id to
 * itself, so that apt can still drop to _apt. (Others map themselves, in the helper.) */
static int write_maps(struct sandbox_job *job, struct error *err)
{
    const char *uid_map = "0 0 4294967295\n", *gid_map = uid_map;
    static const char *const files[] = {"uid_map", "gid_map"};
    const char *maps[] = {uid_map, gid_map};
    for (int i = 0; i < 2; i++) {
        int r = write_proc(job->helper, files[i], maps[i]);
        if (r < 0)
            return error_set_errno(err, -r, "writing /proc/%d/%s of the job's user namespace",
                                   (int)job->helper, files[i]);
    }
    return 0;
}

/* ---- creating a job ---- */

struct setup_failure {
    enum helper_stage stage;
};

/* Real root: uid 0 in the initial user namespace, whose uid_map maps every id. Root inside
 * another user namespace (a rootless container) takes the unprivileged path. */
static bool real_root(void)
{
    if (geteuid() != 0)
        return false;
    char text[128] = "";
    int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof text - 1);
        text[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    unsigned long long inside, outside, count;
    return sscanf(text, "%llu %llu %llu", &inside, &outside, &count) == 3 && inside == 0 &&
           outside == 0 && count == 4294967295ULL;
}

static int start_helper(struct sandbox_job *job, enum sandbox_level level,
                        struct setup_failure *failure, struct error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return error_set_errno(err, errno, "creating the sandbox helper's socket");
    struct helper_setup setup = {
        .level = level,
        .network = job->network,
        .root = real_root(),
        .uid = geteuid(),
        .gid = getegid(),
        .worker = getpid(),
        .hide = job->hide,
        .writable = job->writable,
    };
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        return error_set_errno(err, saved, "starting the sandbox helper");
    }
    if (pid == 0) {
        close(sv[0]);
        helper_main(sv[1], &setup);
    }
    close(sv[1]);
    job->sock = sv[0];
    job->helper = pid;
    job->helper_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (job->helper_pidfd < 0)
        return error_set_errno(err, errno, "pidfd_open (Linux 5.3) of the sandbox helper");
    if (job->cgroup.version && cgroup_job_add(&job->cgroup, pid, err) < 0)
        return err->code;
    struct helper_msg msg = {.type = HELPER_GO};
    if (helper_send(job, &msg, NULL, 0, NULL, 0) < 0)
        return error_set(err, EPIPE, "the sandbox helper ended unexpectedly");
    for (;;) {
        int fd = -1;
        if (helper_recv(job, &msg, &fd, err) < 0)
            return err->code;
        if (msg.type == HELPER_MAPS) {
            if (write_maps(job, err) < 0)
                return err->code;
            msg = (struct helper_msg){.type = HELPER_GO};
            if (helper_send(job, &msg, NULL, 0, NULL, 0) < 0)
                return error_set(err, EPIPE, "the sandbox helper ended unexpectedly");
        } else if (msg.type == HELPER_READY && fd >= 0) {
            job->reaper = msg.pid;
            job->reaper_pidfd = fd;
            return 0;
        } else if (msg.type == HELPER_FAIL) {
            job->reaper_pidfd = fd; /* when the reaper was started: stop_helper ends it */
            failure->stage = (enum helper_stage)msg.stage;
            msg.detail[sizeof msg.detail - 1] = '\0';
            return error_set(err, msg.error, "needs %s (%s: %s)",
                             helper_stage_feature(failure->stage), msg.detail, strerror(msg.error));
        } else {
            close_fd(&fd);
            return error_set(err, EPROTO, "the sandbox helper sent an unexpected message");
        }
    }
}

/* Undoes a half-made job at process level: the helper and reaper go, with the namespace. */
static void stop_helper(struct sandbox_job *job)
{
    if (job->reaper_pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, job->reaper_pidfd, SIGKILL, NULL, 0);
        reap_blocking(job->reaper_pidfd, NULL, NULL, NULL);
        close_fd(&job->reaper_pidfd);
    }
    close_fd(&job->sock);
    if (job->helper_pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, job->helper_pidfd, SIGKILL, NULL, 0);
        reap_blocking(job->helper_pidfd, NULL, NULL, NULL);
        close_fd(&job->helper_pidfd);
    } else if (job->helper > 0) {
        kill(job->helper, SIGKILL);
        waitpid(job->helper, NULL, 0);
    }
    job->helper = job->reaper = 0;
}

static void say_fallback(enum sandbox_level level, const struct error *why)
{
    static bool said[3];
    if (said[level])
        return;
    said[level] = true;
    log_warn("sandbox: level %s %s; using %s", sandbox_level_name(level), why->message,
             sandbox_level_name(level - 1));
}

int sandbox_job_new(uv_loop_t *loop, const struct sandbox_job_options *o, struct sandbox_job **out,
                    struct error *err)
{
    static unsigned sequence;
    *out = NULL;
    if ((unsigned)o->level > SANDBOX_STRICT)
        return error_set(err, EINVAL, "unknown sandbox level %d", (int)o->level);
    struct sandbox_job *job = xcalloc(1, sizeof *job);
    job->loop = loop;
    job->network = o->network;
    job->interrupt_ms = o->cancel_interrupt_ms ? o->cancel_interrupt_ms : 7500;
    job->terminate_ms = o->cancel_terminate_ms ? o->cancel_terminate_ms : 2500;
    job->hide = strv_copy(o->hide_paths);
    job->writable = strv_copy(o->writable_paths);
    job->sock = job->helper_pidfd = job->reaper_pidfd = -1;
    for (int i = 0; i < EXEC_MAX_CGROUP_FDS; i++)
        job->cgroup_fds[i] = -1;
    job->refs = 1;
    char name[64];
    snprintf(name, sizeof name, "harrier-%d-%u", (int)getpid(), ++sequence);
    cgroup_job_create(&job->cgroup, &o->limits, name);

    enum sandbox_level level = o->level;
    while (level != SANDBOX_NONE) {
        struct setup_failure failure = {STAGE_NONE};
        if (start_helper(job, level, &failure, err) == 0)
            break;
        stop_helper(job);
        if (!o->allow_fallback) {
            char why[ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%s", err->message);
            error_set(err, err->code,
                      "cannot create the %s sandbox: %s; enable that, or choose a lower "
                      "--sandbox level",
                      sandbox_level_name(level), why);
            job->level = level;
            sandbox_job_free(job);
            return err->code;
        }
        say_fallback(level, err);
        error_clear(err);
        level--;
    }
    job->level = level;
    if (level == SANDBOX_NONE) {
        job->stack = mmap(NULL, EXEC_STACK_SIZE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (job->stack == MAP_FAILED) {
            job->stack = NULL;
            sandbox_job_free(job);
            return error_set_errno(err, errno, "allocating a stack for spawning steps");
        }
        if (job->cgroup.version)
            cgroup_job_open_procs(&job->cgroup, job->cgroup_fds);
    }
    *out = job;
    return 0;
}

/* ---- steps ---- */

static void job_unref(struct sandbox_job *job)
{
    if (--job->refs > 0)
        return;
    strv_free(job->hide);
    strv_free(job->writable);
    free(job);
}

static void step_on_close(uv_handle_t *handle)
{
    struct sandbox_step *step = handle->data;
    if (--step->handles_open > 0)
        return;
    close_fd(&step->pidfd);
    tree_free(&step->tree);
    struct sandbox_job *job = step->job;
    free(step);
    job_unref(job);
}

static void step_unlink(struct sandbox_step *step)
{
    struct sandbox_job *job = step->job;
    if (step->prev)
        step->prev->next = step->next;
    else if (job->steps == step)
        job->steps = step->next;
    if (step->next)
        step->next->prev = step->prev;
    step->prev = step->next = NULL;
}

static void step_close(struct sandbox_step *step)
{
    if (step->closed) /* the exit callback may have ended the job, closing it already */
        return;
    step->closed = true;
    step_unlink(step);
    uv_close((uv_handle_t *)&step->poll, step_on_close);
    uv_close((uv_handle_t *)&step->timer, step_on_close);
}

static void step_finish(struct sandbox_step *step)
{
    if (step->done)
        return;
    step->done = true;
    uv_timer_stop(&step->timer);
    if (step->on_exit)
        step->on_exit(step, &step->result, step->data);
    step_close(step);
}

/* A cancelled step ends when its process has exited and its tree is empty. */
static void cancel_tick(uv_timer_t *timer)
{
    struct sandbox_step *step = timer->data;
    struct sandbox_job *job = step->job;
    uint64_t now = uv_now(job->loop);
    tree_scan(&step->tree, step->exited ? 0 : step->pid);
    if (now >= step->cancel_deadline) {
        if (step->cancel_signal == SIGINT) {
            step->cancel_signal = SIGTERM;
            step->cancel_deadline = now + job->terminate_ms;
        } else if (step->cancel_signal == SIGTERM) {
            step->cancel_signal = SIGKILL;
            step->cancel_deadline = now + CANCEL_GIVE_UP_MS;
        } else if (step->exited) {
            step_finish(step); /* unkillable (stuck in the kernel): give up waiting */
            return;
        }
    }
    size_t alive = tree_signal(&step->tree, step->cancel_signal);
    if (alive == 0 && step->exited)
        step_finish(step);
}

void sandbox_step_cancel(struct sandbox_step *step)
{
    if (step->done || step->cancel_signal)
        return;
    struct sandbox_job *job = step->job;
    step->result.canceled = true;
    step->cancel_signal = SIGINT;
    step->cancel_deadline = uv_now(job->loop) + job->interrupt_ms;
    tree_scan(&step->tree, step->exited ? 0 : step->pid);
    tree_signal(&step->tree, SIGINT);
    uv_timer_start(&step->timer, cancel_tick, CANCEL_TICK_MS, CANCEL_TICK_MS);
}

static void step_on_poll(uv_poll_t *poll, int status, int events)
{
    (void)events;
    struct sandbox_step *step = poll->data;
    struct sandbox_step_result *r = &step->result;
    int rc = exec_reap(step->pidfd, WNOHANG, &r->exit_code, &r->term_signal, &r->usage);
    if (rc == -EAGAIN && status == 0)
        return;
    uv_poll_stop(poll);
    step->exited = true;
    if (step->cancel_signal)
        cancel_tick(&step->timer); /* the rest of its tree, if any, ends first */
    else
        step_finish(step);
}

/* Encodes argv, env and cwd for the helper (see struct spawn_request). */
static char *encode_request(const struct sandbox_spawn_options *o, size_t *len)
{
    struct spawn_request req = {0};
    size_t size = sizeof req;
    for (; o->argv[req.argc]; req.argc++)
        size += strlen(o->argv[req.argc]) + 1;
    for (; o->env && o->env[req.envc]; req.envc++)
        size += strlen(o->env[req.envc]) + 1;
    if (o->cwd) {
        req.has_cwd = 1;
        size += strlen(o->cwd) + 1;
    }
    req.cpu_seconds = o->cpu_seconds;
    req.open_files = o->open_files;
    req.file_size = o->file_size;
    char *buf = xmalloc(size), *p = buf;
    memcpy(p, &req, sizeof req);
    p += sizeof req;
    for (uint32_t i = 0; i < req.argc; i++)
        p = stpcpy(p, o->argv[i]) + 1;
    for (uint32_t i = 0; i < req.envc; i++)
        p = stpcpy(p, o->env[i]) + 1;
    if (o->cwd)
        p = stpcpy(p, o->cwd) + 1;
    *len = size;
    return buf;
}

static int spawn_in_helper(struct sandbox_job *job, const struct sandbox_spawn_options *o,
                           const int stdio[3], int *pidfd, struct error *err)
{
    size_t len;
    cleanup_free char *req = encode_request(o, &len);
    struct helper_msg msg = {.type = HELPER_SPAWN};
    int fds[4] = {stdio[0], stdio[1], stdio[2], -1};
    int r;
    if (len <= 65536) {
        msg.inline_len = (uint32_t)len;
        r = helper_send(job, &msg, req, len, fds, 3);
    } else {
        /* A big environment travels in a memfd rather than through the socket buffer. */
        cleanup_fd int memfd = memfd_create("harrier-spawn", MFD_CLOEXEC);
        if (memfd < 0 || write(memfd, req, len) != (ssize_t)len)
            return error_set_errno(err, errno, "passing the step's environment");
        msg.memfd_len = (uint32_t)len;
        fds[3] = memfd;
        r = helper_send(job, &msg, NULL, 0, fds, 4);
    }
    if (r < 0)
        return error_set_errno(err, -r, "asking the sandbox helper to start %s", o->argv[0]);
    if (helper_recv(job, &msg, pidfd, err) < 0)
        return err->code;
    if (msg.type != HELPER_SPAWNED)
        return error_set(err, EPROTO, "the sandbox helper sent an unexpected message");
    msg.detail[sizeof msg.detail - 1] = '\0';
    if (msg.error && *pidfd >= 0) {
        reap_blocking(*pidfd, NULL, NULL, NULL);
        close_fd(pidfd);
    }
    if (msg.error || *pidfd < 0)
        return error_set(err, msg.error ? msg.error : EPROTO, "cannot start %s: %s: %s", o->argv[0],
                         msg.detail[0] ? msg.detail : "clone",
                         strerror(msg.error ? msg.error : EPROTO));
    return msg.pid;
}

static int spawn_direct(struct sandbox_job *job, const struct sandbox_spawn_options *o,
                        const int stdio[3], int *pidfd, struct error *err)
{
    static char *const no_env[] = {NULL};
    struct sandbox_exec ex = {
        .argv = (char *const *)o->argv,
        .envp = o->env ? (char *const *)o->env : no_env,
        .cwd = o->cwd,
        .stdio = {stdio[0], stdio[1], stdio[2]},
        .cpu_seconds = o->cpu_seconds,
        .open_files = o->open_files,
        .file_size = o->file_size,
    };
    memcpy(ex.cgroup_fds, job->cgroup_fds, sizeof ex.cgroup_fds);
    pid_t pid = exec_start(&ex, job->stack, 0, pidfd);
    if (pid < 0)
        return error_set_errno(err, -pid, "cannot start %s: clone", o->argv[0]);
    if (ex.error) {
        reap_blocking(*pidfd, NULL, NULL, NULL);
        close_fd(pidfd);
        return error_set_errno(err, ex.error, "cannot start %s: %s", o->argv[0], ex.stage);
    }
    return pid;
}

/* Child ends of stdio in child[], the caller's ends of pipes in o->stdio[i].fd. */
static int open_stdio(struct sandbox_spawn_options *o, int child[3], int parent[3],
                      struct error *err)
{
    for (int i = 0; i < 3; i++) {
        child[i] = parent[i] = -1;
        struct sandbox_stdio *s = &o->stdio[i];
        if (s->kind == SANDBOX_STDIO_FD) {
            child[i] = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
        } else if (s->kind == SANDBOX_STDIO_PIPE) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0)
                return error_set_errno(err, errno, "creating a pipe for the step");
            child[i] = i == 0 ? p[0] : p[1];
            parent[i] = i == 0 ? p[1] : p[0];
            fcntl(parent[i], F_SETFL, O_NONBLOCK);
        } else {
            child[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
        }
        if (child[i] < 0)
            return error_set_errno(err, errno, "setting up the step's fd %d", i);
    }
    return 0;
}

int sandbox_spawn(struct sandbox_job *job, struct sandbox_spawn_options *o,
                  struct sandbox_step **out, struct error *err)
{
    *out = NULL;
    if (!o->argv || !o->argv[0] || !o->argv[0][0])
        return error_set(err, EINVAL, "a step needs a program to run");
    int child[3], parent[3], pidfd = -1;
    int pid = open_stdio(o, child, parent, err);
    if (pid == 0)
        pid = job->level == SANDBOX_NONE ? spawn_direct(job, o, child, &pidfd, err)
                                         : spawn_in_helper(job, o, child, &pidfd, err);
    for (int i = 0; i < 3; i++)
        close_fd(&child[i]);
    if (pid < 0) {
        for (int i = 0; i < 3; i++)
            close_fd(&parent[i]);
        return pid;
    }
    for (int i = 0; i < 3; i++)
        if (o->stdio[i].kind == SANDBOX_STDIO_PIPE)
            o->stdio[i].fd = parent[i];

    struct sandbox_step *step = xcalloc(1, sizeof *step);
    step->job = job;
    step->pid = pid;
    step->pidfd = pidfd;
    step->on_exit = o->on_exit;
    step->data = o->data;
    step->poll.data = step->timer.data = step;
    uv_timer_init(job->loop, &step->timer);
    int r = uv_poll_init(job->loop, &step->poll, pidfd);
    if (r == 0)
        r = uv_poll_start(&step->poll, UV_READABLE, step_on_poll);
    step->handles_open = 2;
    job->refs++;
    step->next = job->steps;
    if (job->steps)
        job->steps->prev = step;
    job->steps = step;
    if (r < 0) {
        /* Cannot watch it: end it now rather than leave it unwatched. */
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        reap_blocking(pidfd, NULL, NULL, NULL);
        step->done = true;
        step_close(step);
        return error_set(err, r, "watching the step's pidfd: %s", uv_strerror(r));
    }
    *out = step;
    return 0;
}

/* ---- ending a job ---- */

static void kill_step_trees(struct sandbox_job *job)
{
    for (struct sandbox_step *s = job->steps; s; s = s->next) {
        for (int round = 0; round < 200; round++) {
            tree_scan(&s->tree, s->exited ? 0 : s->pid);
            if (tree_signal(&s->tree, SIGKILL) == 0)
                break;
            usleep(1000);
        }
    }
}

void sandbox_job_free(struct sandbox_job *job)
{
    if (!job)
        return;
    if (job->level == SANDBOX_NONE)
        kill_step_trees(job);
    else if (job->reaper_pidfd >= 0)
        syscall(SYS_pidfd_send_signal, job->reaper_pidfd, SIGKILL, NULL, 0);
    /* Every step is our child: reap them (the reaper's own exit waits for that). */
    for (struct sandbox_step *s = job->steps; s; s = s->next) {
        if (!s->exited) {
            if (job->level == SANDBOX_NONE)
                syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
            reap_blocking(s->pidfd, NULL, NULL, NULL);
            s->exited = true;
        }
    }
    stop_helper(job);
    cgroup_job_destroy(&job->cgroup);
    for (int i = 0; i < EXEC_MAX_CGROUP_FDS; i++)
        close_fd(&job->cgroup_fds[i]);
    if (job->stack)
        munmap(job->stack, EXEC_STACK_SIZE);
    job->stack = NULL;
    while (job->steps) {
        struct sandbox_step *s = job->steps;
        s->done = true; /* no exit callback: the caller is ending the job */
        uv_timer_stop(&s->timer);
        step_close(s);
    }
    job_unref(job);
}
