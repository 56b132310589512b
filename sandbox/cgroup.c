/* Per-job limits through cgroups. Controllers are found by name: cgroup v2 where the
 * job's parent cgroup delegates memory, pids and cpu (memory.max, pids.max, cpu.max,
 * cgroup.kill), else cgroup v1 mounts of those controllers (writable as root). A machine
 * can mix both (memory, pids and cpu on v1 with only hugetlb on v2). */
#include "sandbox/sandbox_internal.h"

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/path.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CONTROLLER_MEMORY, CONTROLLER_PIDS, CONTROLLER_CPU, CONTROLLER_COUNT };
static const char *const controller_names[CONTROLLER_COUNT] = {"memory", "pids", "cpu"};

static bool wanted(const struct sandbox_limits *l, int controller)
{
    switch (controller) {
    case CONTROLLER_MEMORY:
        return l->memory_bytes != 0;
    case CONTROLLER_PIDS:
        return l->pids_max != 0;
    default:
        return l->cpu_percent != 0;
    }
}

static bool word_in(const char *list, const char *word, char sep)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, word, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* The mount point of the v1 hierarchy holding controller (version 1), or of the v2
 * hierarchy (controller NULL), and its root, from /proc/self/mountinfo. */
static int find_mount(const char *controller, char **mountpoint, char **root)
{
    cleanup_free char *text = path_read_file("/proc/self/mountinfo", NULL, NULL);
    if (!text)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *fields[16];
        int n = 0;
        char *fsave = NULL;
        for (char *f = strtok_r(line, " ", &fsave); f && n < 16; f = strtok_r(NULL, " ", &fsave))
            fields[n++] = f;
        int dash = -1;
        for (int i = 6; i < n; i++)
            if (strcmp(fields[i], "-") == 0) {
                dash = i;
                break;
            }
        if (dash < 0 || dash + 3 >= n)
            continue;
        const char *fstype = fields[dash + 1], *super = fields[dash + 3];
        bool match = controller ? strcmp(fstype, "cgroup") == 0 && word_in(super, controller, ',')
                                : strcmp(fstype, "cgroup2") == 0;
        if (match) {
            *root = xstrdup(fields[3]);
            *mountpoint = xstrdup(fields[4]);
            return 0;
        }
    }
    return -1;
}

/* Our own cgroup path in the hierarchy of controller (v1), or the v2 one (NULL). */
static char *own_path(const char *controller)
{
    cleanup_free char *text = path_read_file("/proc/self/cgroup", NULL, NULL);
    if (!text)
        return NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *list = c1 + 1;
        if (controller ? word_in(list, controller, ',') : (*list == '\0' && line[0] == '0'))
            return xstrdup(c2 + 1);
    }
    return NULL;
}

/* mountpoint + (path below the mount's root). */
static char *cgroup_dir(const char *controller)
{
    cleanup_free char *mountpoint = NULL, *root = NULL, *path = NULL;
    if (find_mount(controller, &mountpoint, &root) < 0)
        return NULL;
    path = own_path(controller);
    if (!path)
        return NULL;
    const char *rel = path;
    size_t rlen = strlen(root);
    if (strcmp(root, "/") != 0 && strncmp(path, root, rlen) == 0)
        rel = path + rlen;
    return xasprintf("%s%s", mountpoint, strcmp(rel, "/") == 0 ? "" : rel);
}

static int write_value(const char *dir, const char *file, const char *value)
{
    cleanup_free char *path = xasprintf("%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int saved = errno;
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -saved;
}

static bool file_exists(const char *dir, const char *file)
{
    cleanup_free char *path = xasprintf("%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

static int v2_limits(const char *dir, const struct sandbox_limits *l)
{
    char value[64];
    int r = 0;
    if (l->memory_bytes) {
        snprintf(value, sizeof value, "%" PRIu64, l->memory_bytes);
        r = r ? r : write_value(dir, "memory.max", value);
        if (file_exists(dir, "memory.swap.max"))
            r = r ? r : write_value(dir, "memory.swap.max", "0");
    }
    if (l->pids_max) {
        snprintf(value, sizeof value, "%" PRIu32, l->pids_max);
        r = r ? r : write_value(dir, "pids.max", value);
    }
    if (l->cpu_percent) {
        snprintf(value, sizeof value, "%" PRIu32 "000 100000", l->cpu_percent);
        r = r ? r : write_value(dir, "cpu.max", value);
    }
    return r;
}

/* v2: every wanted controller must be enabled in our cgroup's subtree_control, or be
 * enableable there (possible only when our cgroup holds no process itself). */
static int try_v2(struct cgroup_job *cg, const struct sandbox_limits *l, const char *name,
                  struct buf *why)
{
    cleanup_free char *parent = cgroup_dir(NULL);
    if (!parent) {
        buf_puts(why, "no cgroup v2 hierarchy");
        return -1;
    }
    cleanup_free char *controllers_path = xasprintf("%s/cgroup.controllers", parent);
    cleanup_free char *controllers = path_read_file(controllers_path, NULL, NULL);
    cleanup_free char *subtree_path = xasprintf("%s/cgroup.subtree_control", parent);
    cleanup_free char *subtree = path_read_file(subtree_path, NULL, NULL);
    for (int c = 0; c < CONTROLLER_COUNT; c++) {
        if (!wanted(l, c))
            continue;
        if (!controllers || !word_in(str_trim(controllers), controller_names[c], ' ')) {
            buf_printf(why, "cgroup v2 at %s has no %s controller", parent, controller_names[c]);
            return -1;
        }
        if (!subtree || !word_in(str_trim(subtree), controller_names[c], ' ')) {
            char enable[32];
            snprintf(enable, sizeof enable, "+%s", controller_names[c]);
            if (write_value(parent, "cgroup.subtree_control", enable) < 0) {
                buf_printf(why, "cgroup v2 at %s does not delegate %s", parent,
                           controller_names[c]);
                return -1;
            }
        }
    }
    char *dir = xasprintf("%s/%s", parent, name);
    if (mkdir(dir, 0755) < 0 || v2_limits(dir, l) < 0) {
        buf_printf(why, "cannot set up %s: %s", dir, strerror(errno));
        rmdir(dir);
        free(dir);
        return -1;
    }
    cg->version = 2;
    cg->dirs[cg->ndirs++] = dir;
    return 0;
}

static int v1_limit(const char *dir, int controller, const struct sandbox_limits *l)
{
    char value[64];
    int r;
    switch (controller) {
    case CONTROLLER_MEMORY:
        snprintf(value, sizeof value, "%" PRIu64, l->memory_bytes);
        r = write_value(dir, "memory.limit_in_bytes", value);
        /* Without the swap limit too a step would swap instead of meeting its limit. */
        if (r == 0 && file_exists(dir, "memory.memsw.limit_in_bytes"))
            r = write_value(dir, "memory.memsw.limit_in_bytes", value);
        return r;
    case CONTROLLER_PIDS:
        snprintf(value, sizeof value, "%" PRIu32, l->pids_max);
        return write_value(dir, "pids.max", value);
    default:
        r = write_value(dir, "cpu.cfs_period_us", "100000");
        snprintf(value, sizeof value, "%" PRIu32 "000", l->cpu_percent);
        return r ? r : write_value(dir, "cpu.cfs_quota_us", value);
    }
}

static int try_v1(struct cgroup_job *cg, const struct sandbox_limits *l, const char *name,
                  struct buf *why)
{
    for (int c = 0; c < CONTROLLER_COUNT; c++) {
        if (!wanted(l, c))
            continue;
        cleanup_free char *parent = cgroup_dir(controller_names[c]);
        if (!parent) {
            buf_printf(why, "; no cgroup v1 %s hierarchy", controller_names[c]);
            return -1;
        }
        char *dir = xasprintf("%s/%s", parent, name);
        int r = mkdir(dir, 0755) < 0 ? -errno : v1_limit(dir, c, l);
        cg->dirs[cg->ndirs++] = dir; /* destroy removes it, even half set up */
        if (r < 0) {
            buf_printf(why, "; cgroup v1 %s at %s: %s", controller_names[c], parent, strerror(-r));
            return -1;
        }
    }
    cg->version = 1;
    return 0;
}

void cgroup_job_create(struct cgroup_job *cg, const struct sandbox_limits *limits, const char *name)
{
    static bool said;
    memset(cg, 0, sizeof *cg);
    bool any = false;
    for (int c = 0; c < CONTROLLER_COUNT; c++)
        any = any || wanted(limits, c);
    if (!any)
        return;
    cleanup_buf struct buf why = BUF_INIT;
    if (try_v2(cg, limits, name, &why) == 0)
        return;
    if (try_v1(cg, limits, name, &why) == 0)
        return;
    cgroup_job_destroy(cg);
    if (!said) {
        said = true;
        log_warn("sandbox: no memory, pids or cpu limits can be had: %s", buf_cstr(&why));
    }
}

int cgroup_job_add(struct cgroup_job *cg, pid_t pid, struct error *err)
{
    char value[32];
    snprintf(value, sizeof value, "%d", (int)pid);
    for (int i = 0; i < cg->ndirs; i++) {
        int r = write_value(cg->dirs[i], "cgroup.procs", value);
        if (r < 0)
            return error_set_errno(err, -r, "adding a process to cgroup %s", cg->dirs[i]);
    }
    return 0;
}

int cgroup_job_open_procs(struct cgroup_job *cg, int fds[EXEC_MAX_CGROUP_FDS])
{
    int n = 0;
    for (int i = 0; i < cg->ndirs && n < EXEC_MAX_CGROUP_FDS; i++) {
        cleanup_free char *path = xasprintf("%s/cgroup.procs", cg->dirs[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0)
            fds[n++] = fd;
    }
    return n;
}

/* v1 has no cgroup.kill: each process listed is killed, until none is left. */
static void v1_kill_all(const char *dir)
{
    cleanup_free char *path = xasprintf("%s/cgroup.procs", dir);
    for (int round = 0; round < 50; round++) {
        cleanup_free char *text = path_read_file(path, NULL, NULL);
        if (!text || !*text)
            return;
        for (char *p = text; *p;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            if (pid > 1)
                kill((pid_t)pid, SIGKILL);
            p = end;
        }
        usleep(2000);
    }
}

void cgroup_job_destroy(struct cgroup_job *cg)
{
    for (int i = 0; i < cg->ndirs; i++) {
        if (cg->version == 2)
            write_value(cg->dirs[i], "cgroup.kill", "1");
        else if (cg->version == 1 && i == 0)
            v1_kill_all(cg->dirs[i]);
        /* The last process may still be leaving; rmdir says EBUSY until it has. */
        for (int tries = 0; tries < 200 && rmdir(cg->dirs[i]) < 0 && errno == EBUSY; tries++)
            usleep(5000);
        free(cg->dirs[i]);
        cg->dirs[i] = NULL;
    }
    cg->ndirs = 0;
    cg->version = 0;
}
