/* sandbox: the API as the executor uses it: jobs at each level, steps with argv, env, cwd,
 * pipes, exit codes, signals, rusage, cancel, and ending the job. (The promises about
 * isolation are checked end to end, as root and unprivileged, in tests/e2e/test_sandbox.py.) */
#include "sandbox/sandbox.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A step that hangs fails its test rather than the whole run. */
// cppcheck-suppress unknownMacro
TestSuite(sandbox, .timeout = 30);

struct outcome {
    bool done;
    struct sandbox_step_result result;
    struct buf out;
    uv_pipe_t pipe;
    bool piped;
};

static void on_exit_cb(struct sandbox_step *step, const struct sandbox_step_result *r, void *data)
{
    (void)step;
    struct outcome *o = data;
    o->done = true;
    o->result = *r;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(size);
    buf->len = size;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct outcome *o = s->data;
    if (n > 0)
        buf_append(&o->out, buf->base, (size_t)n);
    else if (n < 0)
        uv_close((uv_handle_t *)s, NULL);
    free(buf->base);
}

static struct sandbox_job *job_at(uv_loop_t *loop, enum sandbox_level level)
{
    struct sandbox_job_options opts = {
        .level = level, .cancel_interrupt_ms = 200, .cancel_terminate_ms = 200};
    struct sandbox_job *job = NULL;
    struct error err = {0};
    int r = sandbox_job_new(loop, &opts, &job, &err);
    cr_assert_eq(r, 0, "sandbox_job_new(%s): %s", sandbox_level_name(level), err.message);
    cr_assert_eq(sandbox_job_level(job), level);
    return job;
}

/* Runs argv in job with stdout piped into o->out, and the loop until it has exited. */
static void run_step(uv_loop_t *loop, struct sandbox_job *job, const char *const *argv,
                     const char *const *env, const char *cwd, struct outcome *o)
{
    struct sandbox_spawn_options so = {.argv = argv, .env = env, .cwd = cwd};
    so.stdio[1].kind = SANDBOX_STDIO_PIPE;
    so.stdio[2] = (struct sandbox_stdio){SANDBOX_STDIO_FD, 2};
    so.on_exit = on_exit_cb;
    so.data = o;
    struct sandbox_step *step;
    struct error err = {0};
    cr_assert_eq(sandbox_spawn(job, &so, &step, &err), 0, "%s", err.message);
    uv_pipe_init(loop, &o->pipe, 0);
    o->pipe.data = o;
    uv_pipe_open(&o->pipe, so.stdio[1].fd);
    uv_read_start((uv_stream_t *)&o->pipe, on_alloc, on_read);
    while (!o->done || !uv_is_closing((uv_handle_t *)&o->pipe))
        uv_run(loop, UV_RUN_ONCE);
}

static void finish(uv_loop_t *loop, struct sandbox_job *job)
{
    sandbox_job_free(job);
    uv_run(loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(loop), 0, "a handle was left open");
}

Test(sandbox, level_names_round_trip)
{
    for (int l = SANDBOX_NONE; l <= SANDBOX_STRICT; l++)
        cr_assert_eq(sandbox_level_parse(sandbox_level_name((enum sandbox_level)l)), l);
    cr_assert_eq(sandbox_level_parse("container"), -1);
    cr_assert_eq(sandbox_level_parse(NULL), -1);
}

static void exit_code_output_env_and_cwd(enum sandbox_level *level)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, *level);
    const char *argv[] = {"sh", "-c", "echo \"$GREETING from $(pwd) home=$HOME\"; exit 7", NULL};
    const char *env[] = {"GREETING=hello", "PATH=/usr/bin:/bin", NULL};
    struct outcome o = {0};
    run_step(&loop, job, argv, env, "/usr", &o);
    cr_assert_str_eq(buf_cstr(&o.out), "hello from /usr home=\n"); /* only the env given */
    cr_assert_eq(o.result.exit_code, 7);
    cr_assert_eq(o.result.term_signal, 0);
    cr_assert_not(o.result.canceled);
    buf_free(&o.out);
    finish(&loop, job);
}

Test(sandbox, signal_and_rusage)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, SANDBOX_PROCESS);
    const char *argv[] = {"/bin/sh", "-c",
                          "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; kill -USR1 $$", NULL};
    struct outcome o = {0};
    run_step(&loop, job, argv, NULL, NULL, &o);
    cr_assert_eq(o.result.term_signal, SIGUSR1);
    double cpu = (double)o.result.usage.ru_utime.tv_sec + o.result.usage.ru_utime.tv_usec / 1e6 +
                 (double)o.result.usage.ru_stime.tv_sec + o.result.usage.ru_stime.tv_usec / 1e6;
    cr_assert_gt(cpu, 0.0, "rusage came back empty");
    cr_assert_gt(o.result.usage.ru_maxrss, 0);
    buf_free(&o.out);
    finish(&loop, job);
}

Test(sandbox, a_big_environment_reaches_the_step)
{
    /* Over 64 KiB: the request travels in a memfd rather than in one socket message. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, SANDBOX_PROCESS);
    enum { COUNT = 3000 };
    char **env = calloc(COUNT + 1, sizeof *env);
    for (int i = 0; i < COUNT; i++) {
        env[i] = malloc(80);
        snprintf(env[i], 80, "VAR%d=value-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i, i);
    }
    const char *argv[] = {"/bin/sh", "-c", "echo $VAR0 $VAR2999", NULL};
    struct outcome o = {0};
    run_step(&loop, job, argv, (const char *const *)env, NULL, &o);
    cr_assert_str_eq(buf_cstr(&o.out), "value-0-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx "
                                       "value-2999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    for (int i = 0; i < COUNT; i++)
        free(env[i]);
    free(env);
    buf_free(&o.out);
    finish(&loop, job);
}

static void start_failures_say_what_failed(enum sandbox_level *level)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, *level);
    struct sandbox_step *step = NULL;
    struct error err = {0};
    const char *missing[] = {"no-such-program-harrier", NULL};
    const char *env[] = {"PATH=/usr/bin:/bin", NULL};
    struct sandbox_spawn_options so = {.argv = missing, .env = env, .on_exit = on_exit_cb};
    cr_assert_lt(sandbox_spawn(job, &so, &step, &err), 0);
    cr_assert_null(step);
    cr_assert(strstr(err.message, "cannot start no-such-program-harrier"), "%s", err.message);
    cr_assert(strstr(err.message, "No such file or directory"), "%s", err.message);
    const char *ok[] = {"true", NULL};
    struct sandbox_spawn_options bad_cwd = {
        .argv = ok, .env = env, .cwd = "/no/such/folder", .on_exit = on_exit_cb};
    cr_assert_lt(sandbox_spawn(job, &bad_cwd, &step, &err), 0);
    cr_assert(strstr(err.message, "working directory"), "%s", err.message);
    const char *empty[] = {NULL};
    struct sandbox_spawn_options no_argv = {.argv = empty, .on_exit = on_exit_cb};
    cr_assert_lt(sandbox_spawn(job, &no_argv, &step, &err), 0);
    finish(&loop, job);
}

static void cancel_now(uv_timer_t *t)
{
    sandbox_step_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void cancel_sends_sigint_first(enum sandbox_level *level)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, *level);
    const char *argv[] = {"sleep", "1000", NULL};
    const char *env[] = {"PATH=/usr/bin:/bin", NULL};
    struct outcome o = {0};
    struct sandbox_spawn_options so = {.argv = argv, .env = env, .on_exit = on_exit_cb, .data = &o};
    struct sandbox_step *step;
    struct error err = {0};
    cr_assert_eq(sandbox_spawn(job, &so, &step, &err), 0, "%s", err.message);
    /* The step is the caller's own child, whatever the level. */
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", sandbox_step_pid(step));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(stat, sizeof stat, f));
    fclose(f);
    int ppid = 0;
    cr_assert_eq(sscanf(strrchr(stat, ')') + 2, "%*c %d", &ppid), 1);
    cr_assert_eq(ppid, getpid());
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = step;
    uv_timer_start(&timer, cancel_now, 100, 0);
    while (!o.done)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(o.result.canceled);
    cr_assert_eq(o.result.term_signal, SIGINT);
    finish(&loop, job);
}

static void no_fd_leaks(enum sandbox_level *level)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, *level);
    int leaky = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
    cr_assert_geq(leaky, 3);
    char script[128];
    snprintf(script, sizeof script, "test -e /proc/self/fd/%d && echo leaked; echo checked", leaky);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct outcome o = {0};
    run_step(&loop, job, argv, NULL, NULL, &o);
    cr_assert_str_eq(buf_cstr(&o.out), "checked\n");
    close(leaky);
    buf_free(&o.out);
    finish(&loop, job);
}

struct end_in_callback {
    struct sandbox_job *job;
    int calls;
};

static void end_job_on_exit(struct sandbox_step *step, const struct sandbox_step_result *r,
                            void *data)
{
    (void)step;
    (void)r;
    struct end_in_callback *e = data;
    e->calls++;
    sandbox_job_free(e->job); /* the executor may end the job from a step's callback */
}

Test(sandbox, the_job_can_end_inside_an_exit_callback)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct end_in_callback e = {job_at(&loop, SANDBOX_PROCESS), 0};
    const char *quick[] = {"/bin/true", NULL}, *slow[] = {"/bin/sleep", "1000", NULL};
    struct sandbox_spawn_options a = {.argv = slow, .on_exit = end_job_on_exit, .data = &e};
    struct sandbox_spawn_options b = {.argv = quick, .on_exit = end_job_on_exit, .data = &e};
    struct sandbox_step *step;
    struct error err = {0};
    cr_assert_eq(sandbox_spawn(e.job, &a, &step, &err), 0, "%s", err.message);
    cr_assert_eq(sandbox_spawn(e.job, &b, &step, &err), 0, "%s", err.message);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(e.calls, 1);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

static void on_sigchld(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
}

Test(sandbox, libuv_sigchld_handling_does_not_take_a_steps_status)
{
    /* libuv reaps only the children it spawned itself, by pid: a step's status stays ours
     * (execve turns a step's exit signal back into SIGCHLD, so the handler does run). */
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_t sig;
    uv_signal_init(&loop, &sig);
    uv_signal_start(&sig, on_sigchld, SIGCHLD);
    for (int level = SANDBOX_NONE; level <= SANDBOX_PROCESS; level++) {
        struct sandbox_job *job = job_at(&loop, (enum sandbox_level)level);
        for (int i = 0; i < 5; i++) {
            const char *argv[] = {"/bin/sh", "-c", "exit 3", NULL};
            struct outcome o = {0};
            run_step(&loop, job, argv, NULL, NULL, &o);
            cr_assert_eq(o.result.exit_code, 3, "level %d", level);
            buf_free(&o.out);
        }
        sandbox_job_free(job);
    }
    uv_close((uv_handle_t *)&sig, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

static void ending_the_job_ends_running_steps(enum sandbox_level *level)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *job = job_at(&loop, *level);
    const char *argv[] = {"/bin/sh", "-c", "sleep 1000 & setsid sleep 1000 & wait", NULL};
    struct outcome o = {0};
    struct sandbox_spawn_options so = {.argv = argv, .on_exit = on_exit_cb, .data = &o};
    struct sandbox_step *step;
    struct error err = {0};
    cr_assert_eq(sandbox_spawn(job, &so, &step, &err), 0, "%s", err.message);
    int pid = sandbox_step_pid(step);
    usleep(200 * 1000);
    finish(&loop, job);
    cr_assert_not(o.done, "no exit callback once the caller ends the job");
    cr_assert_eq(kill(pid, 0), -1);
    cr_assert_eq(errno, ESRCH);
}

Test(sandbox, exit_code_output_env_and_cwd_none)
{
    enum sandbox_level level = SANDBOX_NONE;
    exit_code_output_env_and_cwd(&level);
}

Test(sandbox, exit_code_output_env_and_cwd_process)
{
    enum sandbox_level level = SANDBOX_PROCESS;
    exit_code_output_env_and_cwd(&level);
}

Test(sandbox, exit_code_output_env_and_cwd_strict)
{
    enum sandbox_level level = SANDBOX_STRICT;
    exit_code_output_env_and_cwd(&level);
}

Test(sandbox, start_failures_say_what_failed_none)
{
    enum sandbox_level level = SANDBOX_NONE;
    start_failures_say_what_failed(&level);
}

Test(sandbox, start_failures_say_what_failed_process)
{
    enum sandbox_level level = SANDBOX_PROCESS;
    start_failures_say_what_failed(&level);
}

Test(sandbox, cancel_sends_sigint_first_none)
{
    enum sandbox_level level = SANDBOX_NONE;
    cancel_sends_sigint_first(&level);
}

Test(sandbox, cancel_sends_sigint_first_process)
{
    enum sandbox_level level = SANDBOX_PROCESS;
    cancel_sends_sigint_first(&level);
}

Test(sandbox, cancel_sends_sigint_first_strict)
{
    enum sandbox_level level = SANDBOX_STRICT;
    cancel_sends_sigint_first(&level);
}

Test(sandbox, ending_the_job_ends_running_steps_none)
{
    enum sandbox_level level = SANDBOX_NONE;
    ending_the_job_ends_running_steps(&level);
}

Test(sandbox, ending_the_job_ends_running_steps_process)
{
    enum sandbox_level level = SANDBOX_PROCESS;
    ending_the_job_ends_running_steps(&level);
}

Test(sandbox, ending_the_job_ends_running_steps_strict)
{
    enum sandbox_level level = SANDBOX_STRICT;
    ending_the_job_ends_running_steps(&level);
}

Test(sandbox, no_fd_leaks_none)
{
    enum sandbox_level level = SANDBOX_NONE;
    no_fd_leaks(&level);
}

Test(sandbox, no_fd_leaks_process)
{
    enum sandbox_level level = SANDBOX_PROCESS;
    no_fd_leaks(&level);
}
