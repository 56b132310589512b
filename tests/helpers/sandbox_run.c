/* sandbox_run: runs one command through the sandbox API, for the end-to-end tests.
 *
 *   sandbox_run [--level none|process|strict] [--fallback] [--network] [--hide PATH]...
 *               [--writable PATH]... [--memory BYTES] [--pids N] [--cpu PERCENT]
 *               [--cancel-after MS] [--interrupt-ms MS] [--terminate-ms MS]
 *               [--marker TEXT] [--pipe] [--cwd DIR] [--steps N] -- COMMAND [ARG]...
 *
 * The command gets this program's stdin, stdout and stderr (with --pipe its stdout goes
 * through a pipe this program copies to its own). --steps N runs it N times in the same
 * job, one after the other. After the step ends, with --marker, it counts the processes whose
 * command line holds TEXT (still inside the job), then ends the job and counts again. Last
 * line on stderr:
 *   sandbox_run: level L exit C signal S canceled 0|1 limits 0|1 [left N after M]
 * Exit status: the step's code, 128 + its signal, or 125 when the sandbox failed. */
#include "lib/log.h"
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

struct run {
    uv_loop_t *loop;
    struct sandbox_job *job;
    struct sandbox_spawn_options spawn;
    struct sandbox_step *step;
    uv_timer_t cancel_timer;
    uv_pipe_t out;
    bool piped;
    unsigned cancel_after;
    int steps_left;
    struct sandbox_step_result result;
    bool failed;
};

/* Processes other than this program's (its helper and reaper are copies of it) whose
 * command line holds marker. */
static int count_marker(const char *marker)
{
    char self[4096];
    ssize_t self_len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[self_len > 0 ? self_len : 0] = '\0';
    int count = 0;
    DIR *dir = opendir("/proc");
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        char path[300], cmd[4096];
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || atoi(de->d_name) == getpid())
            continue;
        char exe[4096];
        snprintf(path, sizeof path, "/proc/%s/exe", de->d_name);
        ssize_t exe_len = readlink(path, exe, sizeof exe - 1);
        if (exe_len > 0 && (exe[exe_len] = '\0', strcmp(exe, self) == 0))
            continue;
        snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, cmd, sizeof cmd - 1);
        close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        cmd[n] = '\0';
        if (strstr(cmd, marker))
            count++;
    }
    if (dir)
        closedir(dir);
    return count;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(size);
    buf->len = size;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n > 0)
        fwrite(buf->base, 1, (size_t)n, stdout), fflush(stdout);
    else if (n < 0)
        uv_close((uv_handle_t *)s, NULL);
    free(buf->base);
}

static void start_step(struct run *run);

static void on_cancel(uv_timer_t *t)
{
    struct run *run = t->data;
    if (run->step)
        sandbox_step_cancel(run->step);
}

static void on_exit_cb(struct sandbox_step *step, const struct sandbox_step_result *r, void *data)
{
    (void)step;
    struct run *run = data;
    run->result = *r;
    run->step = NULL;
    uv_timer_stop(&run->cancel_timer);
    if (--run->steps_left > 0 && r->exit_code == 0 && r->term_signal == 0)
        start_step(run);
}

static void start_step(struct run *run)
{
    struct error err = {0};
    run->spawn.stdio[1].kind = run->piped ? SANDBOX_STDIO_PIPE : SANDBOX_STDIO_FD;
    run->spawn.stdio[1].fd = 1;
    if (sandbox_spawn(run->job, &run->spawn, &run->step, &err) < 0) {
        fprintf(stderr, "sandbox_run: %s\n", err.message);
        run->failed = true;
        return;
    }
    if (run->piped) {
        uv_pipe_init(run->loop, &run->out, 0);
        uv_pipe_open(&run->out, run->spawn.stdio[1].fd);
        uv_read_start((uv_stream_t *)&run->out, on_alloc, on_read);
    }
    if (run->cancel_after)
        uv_timer_start(&run->cancel_timer, on_cancel, run->cancel_after, 0);
}

int main(int argc, char **argv)
{
    static const char *hide[64], *writable[64];
    int nhide = 0, nwritable = 0;
    struct sandbox_job_options opts = {.level = SANDBOX_PROCESS};
    const char *marker = NULL;
    struct run run = {.steps_left = 1};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--fallback") == 0) {
            opts.allow_fallback = true;
        } else if (strcmp(a, "--network") == 0) {
            opts.network = true;
        } else if (strcmp(a, "--pipe") == 0) {
            run.piped = true;
        } else if (!v) {
            fprintf(stderr, "sandbox_run: %s needs a value\n", a);
            return 125;
        } else if (strcmp(a, "--level") == 0 && sandbox_level_parse(v) >= 0) {
            opts.level = (enum sandbox_level)sandbox_level_parse(v), i++;
        } else if (strcmp(a, "--hide") == 0 && nhide < 63) {
            hide[nhide++] = v, i++;
        } else if (strcmp(a, "--writable") == 0 && nwritable < 63) {
            writable[nwritable++] = v, i++;
        } else if (strcmp(a, "--memory") == 0) {
            opts.limits.memory_bytes = strtoull(v, NULL, 10), i++;
        } else if (strcmp(a, "--pids") == 0) {
            opts.limits.pids_max = (uint32_t)atoi(v), i++;
        } else if (strcmp(a, "--cpu") == 0) {
            opts.limits.cpu_percent = (uint32_t)atoi(v), i++;
        } else if (strcmp(a, "--cancel-after") == 0) {
            run.cancel_after = (unsigned)atoi(v), i++;
        } else if (strcmp(a, "--interrupt-ms") == 0) {
            opts.cancel_interrupt_ms = (unsigned)atoi(v), i++;
        } else if (strcmp(a, "--terminate-ms") == 0) {
            opts.cancel_terminate_ms = (unsigned)atoi(v), i++;
        } else if (strcmp(a, "--marker") == 0) {
            marker = v, i++;
        } else if (strcmp(a, "--cwd") == 0) {
            run.spawn.cwd = v, i++;
        } else if (strcmp(a, "--steps") == 0) {
            run.steps_left = atoi(v), i++;
        } else {
            fprintf(stderr, "sandbox_run: unknown option %s %s\n", a, v);
            return 125;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "sandbox_run: no command\n");
        return 125;
    }
    opts.hide_paths = hide;
    opts.writable_paths = writable;
    run.loop = uv_default_loop();
    struct error err = {0};
    if (sandbox_job_new(run.loop, &opts, &run.job, &err) < 0) {
        fprintf(stderr, "sandbox_run: %s\n", err.message);
        return 125;
    }
    uv_timer_init(run.loop, &run.cancel_timer);
    run.cancel_timer.data = &run;
    run.spawn.argv = (const char *const *)argv + i;
    run.spawn.env = (const char *const *)environ;
    run.spawn.stdio[0] = (struct sandbox_stdio){SANDBOX_STDIO_FD, 0};
    run.spawn.stdio[2] = (struct sandbox_stdio){SANDBOX_STDIO_FD, 2};
    run.spawn.on_exit = on_exit_cb;
    run.spawn.data = &run;
    start_step(&run);
    uv_run(run.loop, UV_RUN_DEFAULT);
    int left = marker ? count_marker(marker) : 0;
    enum sandbox_level level = sandbox_job_level(run.job);
    bool limits = sandbox_job_has_limits(run.job);
    sandbox_job_free(run.job);
    uv_close((uv_handle_t *)&run.cancel_timer, NULL);
    uv_run(run.loop, UV_RUN_DEFAULT);
    uv_loop_close(run.loop);
    int after = marker ? count_marker(marker) : 0;
    fprintf(stderr, "sandbox_run: level %s exit %d signal %d canceled %d limits %d",
            sandbox_level_name(level), run.result.exit_code, run.result.term_signal,
            run.result.canceled, limits);
    if (marker)
        fprintf(stderr, " left %d after %d", left, after);
    fprintf(stderr, "\n");
    if (run.failed)
        return 125;
    return run.result.term_signal ? 128 + run.result.term_signal : run.result.exit_code;
}
