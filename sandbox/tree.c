/* A step's process tree, found through /proc: its descendants by parent pid, and its process
 * group. A step is the child subreaper of its orphans while it runs, so a process that left
 * the group with setsid keeps a parent inside the tree. Members are remembered with their
 * start time, so that a member reparented to the job's reaper (after its parent died) is
 * still signalled, and a reused pid is not. */
#include "sandbox/sandbox_internal.h"

#include "lib/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct proc_stat {
    pid_t pid, ppid, pgrp;
    char state;
    unsigned long long start;
};

/* Parses /proc/<pid>/stat: "pid (comm) state ppid pgrp session ... starttime(22)". */
static int proc_stat_read(pid_t pid, struct proc_stat *out)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *p = strrchr(text, ')'); /* comm may hold spaces and parentheses */
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    out->pid = pid;
    out->state = *p;
    char *end;
    strtol(p + 1, &end, 10);
    out->ppid = (pid_t)strtol(p + 1, &end, 10);
    out->pgrp = (pid_t)strtol(end, &end, 10);
    /* fields 6..21, then starttime (field 22) */
    for (int field = 6; field <= 21; field++)
        strtoll(end, &end, 10);
    out->start = strtoull(end, &end, 10);
    return 0;
}

static bool tree_has(const struct tree *tree, pid_t pid, unsigned long long start)
{
    for (size_t i = 0; i < tree->count; i++)
        if (tree->procs[i].pid == pid && tree->procs[i].start == start)
            return true;
    return false;
}

static bool tree_has_pid(const struct tree *tree, pid_t pid)
{
    if (pid <= 1) /* a member that is gone has pid 0; nothing adopts the host's init */
        return false;
    for (size_t i = 0; i < tree->count; i++)
        if (tree->procs[i].pid == pid)
            return true;
    return false;
}

static void tree_add(struct tree *tree, pid_t pid, unsigned long long start)
{
    if (tree->count == tree->cap) {
        tree->cap = tree->cap ? tree->cap * 2 : 16;
        tree->procs = xrealloc(tree->procs, tree->cap * sizeof *tree->procs);
    }
    tree->procs[tree->count++] = (struct tree_proc){pid, start, 0};
}

void tree_scan(struct tree *tree, pid_t root)
{
    struct proc_stat st;
    if (root > 1 && !tree_has_pid(tree, root) && proc_stat_read(root, &st) == 0)
        tree_add(tree, root, st.start);
    DIR *dir = opendir("/proc");
    if (!dir)
        return;
    struct proc_stat *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        if (proc_stat_read((pid_t)pid, &st) < 0 || st.state == 'Z' || st.state == 'X')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            all = xrealloc(all, cap * sizeof *all);
        }
        all[n++] = st;
    }
    closedir(dir);
    /* Grow to a fixed point: a child is in when its parent is. */
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < n; i++) {
            if (tree_has(tree, all[i].pid, all[i].start))
                continue;
            if ((root > 1 && all[i].pgrp == root) || tree_has_pid(tree, all[i].ppid)) {
                tree_add(tree, all[i].pid, all[i].start);
                grew = true;
            }
        }
    }
    free(all);
}

size_t tree_signal(struct tree *tree, int sig)
{
    size_t alive = 0;
    for (size_t i = 0; i < tree->count; i++) {
        struct tree_proc *p = &tree->procs[i];
        if (p->pid <= 0)
            continue;
        /* Open a pidfd first, then check the start time: the pidfd pins the process. */
        int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
        struct proc_stat st;
        if (fd < 0 || proc_stat_read(p->pid, &st) < 0 || st.start != p->start || st.state == 'Z' ||
            st.state == 'X') {
            if (fd >= 0)
                close(fd);
            p->pid = 0; /* gone for good */
            continue;
        }
        alive++;
        if (sig && p->sent != sig) {
            syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
            p->sent = sig;
        }
        close(fd);
    }
    return alive;
}

void tree_free(struct tree *tree)
{
    free(tree->procs);
    memset(tree, 0, sizeof *tree);
}
