/* The job's helper: a single-threaded process forked from the worker that creates the
 * job's namespaces, sets up its mounts, starts the pid-1 reaper, then creates each step with
 * clone(CLONE_PARENT | CLONE_VM | CLONE_VFORK | CLONE_PIDFD) so that the step is the
 * worker's child inside the job, and passes back only the pidfd. A multithreaded process
 * (the libuv worker) cannot setns into user or mount namespaces; this one can.
 *
 * Two user namespaces: the outer one (only when not root) gives the right to mount; the
 * inner one, created after every mount is in place, owns the steps' mount namespace, so
 * the kernel locks the mounts that hide files: a step cannot umount or move them.
 *
 * After fork from a multithreaded parent only async-signal-safe calls are safe: no malloc,
 * no stdio, no locale. Everything here is system calls on stack or static buffers. */
#include "sandbox/sandbox_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

/* <linux/mount.h> clashes with <sys/mount.h> on glibc 2.36. */
struct helper_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define HELPER_MOUNT_ATTR_RDONLY 0x00000001ULL
#define HELPER_AT_RECURSIVE 0x8000

static const struct {
    const char *feature;
} stage_table[STAGE_COUNT] = {
    [STAGE_NONE] = {"the sandbox helper"},
    [STAGE_USERNS] = {"user namespaces"},
    [STAGE_MAPS] = {"user namespace id maps"},
    [STAGE_MOUNTNS] = {"mount namespaces"},
    [STAGE_PIDNS] = {"pid namespaces"},
    [STAGE_IPCNS] = {"ipc namespaces"},
    [STAGE_UTSNS] = {"uts namespaces"},
    [STAGE_NETNS] = {"network namespaces"},
    [STAGE_LOOPBACK] = {"the loopback interface of a network namespace"},
    [STAGE_PRIVATE] = {"private mount propagation"},
    [STAGE_READONLY] = {"mount_setattr (Linux 5.12) for a read-only root"},
    [STAGE_TMPFS] = {"tmpfs mounts in a user namespace"},
    [STAGE_DEV] = {"a minimal /dev (tmpfs, device binds, devpts)"},
    [STAGE_WRITABLE] = {"bind mounts of writable folders"},
    [STAGE_HIDE] = {"bind mounts that hide paths"},
    [STAGE_REAPER] = {"a pid-1 reaper"},
    [STAGE_PROC] = {"mounting /proc in a pid namespace"},
    [STAGE_SPAWN] = {"starting a step"},
};

const char *helper_stage_feature(enum helper_stage stage)
{
    if (stage < 0 || stage >= STAGE_COUNT || !stage_table[stage].feature)
        return "the sandbox";
    return stage_table[stage].feature;
}

/* ---- messages ---- */

static void copy_detail(char *dst, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= sizeof(((struct helper_msg *)0)->detail))
        n = sizeof(((struct helper_msg *)0)->detail) - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static int send_msg(int sock, struct helper_msg *msg, const int *fds, int nfds)
{
    struct iovec iov = {msg, sizeof *msg};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } control;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

/* Once started, the reaper is the worker's child: a failure hands its pidfd over, so that
 * the worker ends and reaps it. */
static int reaper_pidfd = -1;

static _Noreturn void fail(int sock, enum helper_stage stage, int error, const char *detail)
{
    struct helper_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = HELPER_FAIL;
    msg.stage = stage;
    msg.error = error ? error : EINVAL;
    copy_detail(msg.detail, detail);
    send_msg(sock, &msg, &reaper_pidfd, reaper_pidfd >= 0 ? 1 : 0);
    _exit(1);
}

/* Waits for the worker's GO; the worker going away ends us. */
static void wait_go(int sock)
{
    struct helper_msg msg;
    for (;;) {
        ssize_t n = recv(sock, &msg, sizeof msg, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof msg || msg.type != HELPER_GO)
            _exit(1);
        return;
    }
}

/* /proc/self as the host's /proc shows it, opened before the job's /proc covers it. */
static int proc_self = -1;

static int write_file(const char *path, const char *text)
{
    int fd = strncmp(path, "/proc/self/", 11) == 0 && proc_self >= 0
                 ? openat(proc_self, path + 11, O_WRONLY | O_CLOEXEC)
                 : open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

/* "<id> <id> 1\n" without stdio. */
static void format_map(char *out, unsigned id)
{
    char digits[16];
    int n = 0;
    do {
        digits[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    char *p = out;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = n - 1; i >= 0; i--)
            *p++ = digits[i];
        *p++ = ' ';
    }
    *p++ = '1';
    *p++ = '\n';
    *p = '\0';
}

/* Maps our own uid and gid to themselves, the one mapping an unprivileged process may
 * write (setgroups must be denied first, and a nested namespace inherits the denial). */
static void self_maps(int sock, const struct helper_setup *s, bool deny_setgroups)
{
    char map[48];
    if (deny_setgroups && write_file("/proc/self/setgroups", "deny") < 0)
        fail(sock, STAGE_MAPS, errno, "/proc/self/setgroups");
    format_map(map, s->uid);
    if (write_file("/proc/self/uid_map", map) < 0)
        fail(sock, STAGE_MAPS, errno, "/proc/self/uid_map");
    format_map(map, s->gid);
    if (write_file("/proc/self/gid_map", map) < 0)
        fail(sock, STAGE_MAPS, errno, "/proc/self/gid_map");
}

static void outer_user_namespace(int sock, const struct helper_setup *s)
{
    if (unshare(CLONE_NEWUSER) < 0)
        fail(sock, STAGE_USERNS, errno, "unshare(CLONE_NEWUSER)");
    self_maps(sock, s, true);
}

static void inner_maps(int sock, const struct helper_setup *s)
{
    self_maps(sock, s, false);
}

/* ---- mounts ---- */

static bool exists(const char *path, bool *is_dir)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    if (is_dir)
        *is_dir = S_ISDIR(st.st_mode);
    return true;
}

static int mkdir_all(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        buf[i] = c;
    }
    return 0;
}

static int set_readonly(const char *path, bool readonly, bool recursive)
{
    struct helper_mount_attr attr;
    memset(&attr, 0, sizeof attr);
    if (readonly)
        attr.attr_set = HELPER_MOUNT_ATTR_RDONLY;
    else
        attr.attr_clr = HELPER_MOUNT_ATTR_RDONLY;
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? HELPER_AT_RECURSIVE : 0,
                        &attr, sizeof attr);
}

static int touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* A tmpfs of mode 755 with null, zero, full, random, urandom, tty bound from the host, a
 * private devpts and shm: no block devices. Built aside in the new /tmp, then moved. */
static void minimal_dev(int sock)
{
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    static const char *const links[][2] = {
        {"pts/ptmx", "/tmp/.harrier-dev/ptmx"},
        {"/proc/self/fd", "/tmp/.harrier-dev/fd"},
        {"/proc/self/fd/0", "/tmp/.harrier-dev/stdin"},
        {"/proc/self/fd/1", "/tmp/.harrier-dev/stdout"},
        {"/proc/self/fd/2", "/tmp/.harrier-dev/stderr"},
    };
    const char *stage = "/tmp/.harrier-dev";
    if (mkdir(stage, 0755) < 0 ||
        mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") < 0)
        fail(sock, STAGE_DEV, errno, stage);
    char src[64], dst[64];
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        size_t n = strlen(nodes[i]);
        memcpy(src, "/dev/", 5);
        memcpy(src + 5, nodes[i], n + 1);
        memcpy(dst, "/tmp/.harrier-dev/", 18);
        memcpy(dst + 18, nodes[i], n + 1);
        if (touch(dst) < 0 || mount(src, dst, NULL, MS_BIND, NULL) < 0)
            fail(sock, STAGE_DEV, errno, src);
    }
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        if (symlink(links[i][0], links[i][1]) < 0)
            fail(sock, STAGE_DEV, errno, links[i][1]);
    if (mkdir("/tmp/.harrier-dev/pts", 0755) < 0 || mkdir("/tmp/.harrier-dev/shm", 01777) < 0)
        fail(sock, STAGE_DEV, errno, "/dev/pts");
    if (mount(stage, "/dev", NULL, MS_MOVE, NULL) < 0)
        fail(sock, STAGE_DEV, errno, "/dev");
    rmdir(stage);
    if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=620") < 0)
        fail(sock, STAGE_DEV, errno, "/dev/pts");
    if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
        fail(sock, STAGE_DEV, errno, "/dev/shm");
}

static void hide(int sock, const char *path)
{
    bool is_dir = false;
    if (!exists(path, &is_dir))
        return;
    unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (is_dir) {
        if (mount("tmpfs", path, "tmpfs", MS_RDONLY | flags, "mode=755,size=4k") < 0)
            fail(sock, STAGE_HIDE, errno, path);
        return;
    }
    /* /dev/null, so that the path reads as an empty file (nodev would refuse to open it). */
    if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
        fail(sock, STAGE_HIDE, errno, path);
}

enum { MAX_WRITABLE = 64 };

static void setup_mounts(int sock, const struct helper_setup *s)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        fail(sock, STAGE_PRIVATE, errno, "/");
    if (s->level == SANDBOX_STRICT) {
        /* Writable folders are held open first: the new /tmp may cover them. */
        int held[MAX_WRITABLE];
        int nheld = 0;
        for (size_t i = 0; s->writable[i] && nheld < MAX_WRITABLE; i++)
            held[nheld++] = open(s->writable[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (set_readonly("/", true, true) < 0)
            fail(sock, STAGE_READONLY, errno, "/");
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
            fail(sock, STAGE_TMPFS, errno, "/tmp");
        minimal_dev(sock);
        for (int i = 0; i < nheld; i++) {
            if (held[i] < 0)
                continue;
            const char *path = s->writable[i];
            char from[32] = "/proc/self/fd/";
            int fd = held[i], n = 0;
            char digits[12];
            do {
                digits[n++] = (char)('0' + fd % 10);
                fd /= 10;
            } while (fd);
            size_t at = strlen(from);
            while (n)
                from[at++] = digits[--n];
            from[at] = '\0';
            if ((!exists(path, NULL) && mkdir_all(path) < 0) ||
                mount(from, path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
                set_readonly(path, false, false) < 0)
                fail(sock, STAGE_WRITABLE, errno, path);
            close(held[i]);
        }
    }
    for (size_t i = 0; s->hide[i]; i++)
        hide(sock, s->hide[i]);
}

/* ---- the reaper: pid 1 of the job ---- */

static void reaper_on_child(int sig)
{
    (void)sig;
}

static _Noreturn void reaper_main(int report, bool root)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    prctl(PR_SET_NAME, "harrier-reaper", 0, 0, 0);
    /* The OOM killer of a job over its memory limit should take the step that grew, not
     * pid 1 (whose death ends the whole job). Only root may lower the score. */
    int fd = root ? open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        if (write(fd, "-1000", 5) < 0) {
        } /* best effort */
        close(fd);
    }
    int error = 0;
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        error = errno;
    while (write(report, &error, sizeof error) < 0 && errno == EINTR) {
    }
    if (error)
        _exit(1);
    syscall(SYS_close_range, 0U, ~0U, 0U);
    sigset_t block, none;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &block, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reaper_on_child;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG | __WALL) > 0) {
        }
        sigsuspend(&none);
    }
}

/* clone without a new stack is fork without glibc's atfork work; CLONE_PARENT makes the
 * reaper the worker's child, so the worker holds its pidfd and its death ends the job. */
static int start_reaper(int sock, int *pidfd, bool root)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        fail(sock, STAGE_REAPER, errno, "pipe");
    long pid =
        syscall(SYS_clone, (unsigned long)(CLONE_PARENT | CLONE_PIDFD), 0UL, pidfd, 0UL, 0UL);
    if (pid < 0)
        fail(sock, STAGE_REAPER, errno, "clone");
    if (pid == 0) {
        close(pipefd[0]);
        reaper_main(pipefd[1], root);
    }
    close(pipefd[1]);
    int error = 0;
    ssize_t n;
    while ((n = read(pipefd[0], &error, sizeof error)) < 0 && errno == EINTR) {
    }
    close(pipefd[0]);
    if (n != (ssize_t)sizeof error)
        fail(sock, STAGE_REAPER, EIO, "the reaper died");
    if (error)
        fail(sock, STAGE_PROC, error, "/proc");
    return (int)pid;
}

/* ---- the network of strict: loopback only ---- */

static void loopback_up(int sock)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail(sock, STAGE_LOOPBACK, errno, "socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        fail(sock, STAGE_LOOPBACK, errno, "lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        fail(sock, STAGE_LOOPBACK, errno, "lo");
    close(fd);
}

/* ---- serving spawn requests ---- */

static char request_buf[sizeof(struct helper_msg) + 65536];

/* Splits count NUL-terminated strings starting at *p (bounded by end) into out. */
static int split_strings(char **p, const char *end, uint32_t count, char **out)
{
    for (uint32_t i = 0; i < count; i++) {
        if (*p >= end)
            return -1;
        out[i] = *p;
        size_t n = strnlen(*p, (size_t)(end - *p));
        if (*p + n >= end)
            return -1;
        *p += n + 1;
    }
    out[count] = NULL;
    return 0;
}

static void serve_one(int sock, void *stack, char *payload, size_t len, const int *fds, int nfds)
{
    struct helper_msg reply;
    memset(&reply, 0, sizeof reply);
    reply.type = HELPER_SPAWNED;
    struct spawn_request req;
    if (!payload || len < sizeof req || nfds < 3) {
        reply.stage = STAGE_SPAWN;
        reply.error = EPROTO;
        send_msg(sock, &reply, NULL, 0);
        return;
    }
    memcpy(&req, payload, sizeof req);
    char *p = payload + sizeof req, *end = payload + len;
    size_t slots = (size_t)req.argc + 1 + (size_t)req.envc + 1;
    char **ptrs = mmap(NULL, slots * sizeof(char *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptrs == MAP_FAILED) {
        reply.stage = STAGE_SPAWN;
        reply.error = errno;
        send_msg(sock, &reply, NULL, 0);
        return;
    }
    char *cwd_slot[2] = {NULL, NULL};
    if (req.argc == 0 || split_strings(&p, end, req.argc, ptrs) < 0 ||
        split_strings(&p, end, req.envc, ptrs + req.argc + 1) < 0 ||
        (req.has_cwd && split_strings(&p, end, 1, cwd_slot) < 0)) {
        reply.stage = STAGE_SPAWN;
        reply.error = EPROTO;
        send_msg(sock, &reply, NULL, 0);
        munmap(ptrs, slots * sizeof(char *));
        return;
    }
    struct sandbox_exec ex = {
        .argv = ptrs,
        .envp = ptrs + req.argc + 1,
        .cwd = cwd_slot[0],
        .stdio = {fds[0], fds[1], fds[2]},
        .cgroup_fds = {-1, -1, -1},
        .cpu_seconds = req.cpu_seconds,
        .open_files = req.open_files,
        .file_size = req.file_size,
    };
    int pidfd = -1;
    pid_t pid = exec_start(&ex, stack, CLONE_PARENT, &pidfd);
    munmap(ptrs, slots * sizeof(char *));
    if (pid < 0) {
        reply.stage = STAGE_SPAWN;
        reply.error = -pid;
        copy_detail(reply.detail, "clone");
        send_msg(sock, &reply, NULL, 0);
        return;
    }
    reply.pid = pid;
    if (ex.error) {
        reply.stage = STAGE_SPAWN;
        reply.error = ex.error;
        copy_detail(reply.detail, ex.stage);
    }
    send_msg(sock, &reply, &pidfd, 1);
    close(pidfd);
}

static _Noreturn void serve(int sock)
{
    void *stack = mmap(NULL, EXEC_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        _exit(1);
    for (;;) {
        struct iovec iov = {request_buf, sizeof request_buf};
        union {
            char buf[CMSG_SPACE(sizeof(int) * 4)];
            struct cmsghdr align;
        } control;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); /* the worker closed the job */
        int fds[4] = {-1, -1, -1, -1}, nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                if (nfds > 4)
                    nfds = 4;
                memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
            }
        }
        struct helper_msg msg;
        if ((size_t)n < sizeof msg) {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            continue;
        }
        memcpy(&msg, request_buf, sizeof msg);
        /* Every request gets a reply, an error one when it makes no sense: the worker
         * waits for it. A large request (a big environment) comes in a memfd, 4th fd. */
        char *payload = NULL, *map = MAP_FAILED;
        size_t len = 0;
        if (msg.type == HELPER_SPAWN && msg.inline_len) {
            payload = request_buf + sizeof msg;
            len = (size_t)n - sizeof msg;
        } else if (msg.type == HELPER_SPAWN && nfds == 4 && msg.memfd_len) {
            map = mmap(NULL, msg.memfd_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[3], 0);
            if (map != MAP_FAILED) {
                payload = map;
                len = msg.memfd_len;
            }
        }
        serve_one(sock, stack, payload, len, fds, payload ? 3 : 0);
        if (map != MAP_FAILED)
            munmap(map, msg.memfd_len);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    }
}

void helper_main(int sock, const struct helper_setup *s)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    prctl(PR_SET_NAME, "harrier-sandbox", 0, 0, 0);
    if (getppid() != s->worker)
        _exit(1);
    wait_go(sock); /* the worker has put us in the job's cgroups */
    proc_self = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);

    /* Outer: the right to mount (when not root), the mounts, the pid namespace whose
     * first process, the reaper, mounts its /proc. */
    if (!s->root)
        outer_user_namespace(sock, s);
    if (unshare(CLONE_NEWNS) < 0)
        fail(sock, STAGE_MOUNTNS, errno, "unshare(CLONE_NEWNS)");
    setup_mounts(sock, s);
    if (unshare(CLONE_NEWPID) < 0)
        fail(sock, STAGE_PIDNS, errno, "unshare(CLONE_NEWPID)");
    int reaper = start_reaper(sock, &reaper_pidfd, s->root);

    /* Inner: the user namespace that owns the steps' mount namespace (locking every mount
     * above), with ipc, uts and, for strict, network. */
    if (unshare(CLONE_NEWUSER) < 0)
        fail(sock, STAGE_USERNS, errno, "unshare(CLONE_NEWUSER)");
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* a new credential clears it */
    if (getppid() != s->worker)
        _exit(1);
    struct helper_msg msg;
    if (s->root) {
        /* Only a writer outside may map every id (root to root); the kernel takes it only
         * from a process in the parent namespace, which the worker is. */
        memset(&msg, 0, sizeof msg);
        msg.type = HELPER_MAPS;
        if (send_msg(sock, &msg, NULL, 0) < 0)
            _exit(1);
        wait_go(sock);
    } else {
        inner_maps(sock, s);
    }
    if (unshare(CLONE_NEWNS) < 0)
        fail(sock, STAGE_MOUNTNS, errno, "unshare(CLONE_NEWNS)");
    if (unshare(CLONE_NEWIPC) < 0)
        fail(sock, STAGE_IPCNS, errno, "unshare(CLONE_NEWIPC)");
    if (unshare(CLONE_NEWUTS) < 0)
        fail(sock, STAGE_UTSNS, errno, "unshare(CLONE_NEWUTS)");
    if (s->level == SANDBOX_STRICT && !s->network) {
        if (unshare(CLONE_NEWNET) < 0)
            fail(sock, STAGE_NETNS, errno, "unshare(CLONE_NEWNET)");
        loopback_up(sock);
    }
    memset(&msg, 0, sizeof msg);
    msg.type = HELPER_READY;
    msg.pid = reaper;
    if (send_msg(sock, &msg, &reaper_pidfd, 1) < 0)
        _exit(1);
    close(reaper_pidfd);
    serve(sock);
}
