/* bench_spawn: /bin/true, 1,000 times through each sandbox level, against posix_spawn of the
 * same from the same process in the same run (interleaved in rounds, so that drift hits
 * both alike). Targets: none <= 1.2x posix_spawn; a step into an existing process-level
 * job <= posix_spawn + 1 ms. The cost of creating and ending a job sandbox is reported on
 * its own, and the none level again with a big heap (the spawn path must stay flat). */
#include "sandbox/sandbox.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { ROUNDS = 10 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double posix_spawn_batch(int n)
{
    char *argv[] = {"/bin/true", NULL};
    double start = now_ms();
    for (int i = 0; i < n; i++) {
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0) {
            fprintf(stderr, "bench_spawn: posix_spawn failed\n");
            exit(1);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        if (status != 0) {
            fprintf(stderr, "bench_spawn: /bin/true failed (status %d)\n", status);
            exit(1);
        }
    }
    return now_ms() - start;
}

static void on_exit_cb(struct sandbox_step *step, const struct sandbox_step_result *r, void *data)
{
    (void)step;
    if (r->exit_code || r->term_signal) {
        fprintf(stderr, "bench_spawn: /bin/true failed (exit %d, signal %d)\n", r->exit_code,
                r->term_signal);
        exit(1);
    }
    *(bool *)data = true;
}

static double sandbox_batch(uv_loop_t *loop, struct sandbox_job *job, int n)
{
    const char *argv[] = {"/bin/true", NULL};
    double start = now_ms();
    for (int i = 0; i < n; i++) {
        bool done = false;
        struct sandbox_spawn_options so = {.argv = argv,
                                           .env = (const char *const *)environ,
                                           .on_exit = on_exit_cb,
                                           .data = &done};
        struct sandbox_step *step;
        struct error err = {0};
        if (sandbox_spawn(job, &so, &step, &err) < 0) {
            fprintf(stderr, "bench_spawn: %s\n", err.message);
            exit(1);
        }
        while (!done)
            uv_run(loop, UV_RUN_ONCE);
    }
    return now_ms() - start;
}

static struct sandbox_job *job_new(uv_loop_t *loop, enum sandbox_level level)
{
    struct sandbox_job_options o = {.level = level};
    struct sandbox_job *job;
    struct error err = {0};
    if (sandbox_job_new(loop, &o, &job, &err) < 0) {
        fprintf(stderr, "bench_spawn: %s\n", err.message);
        exit(1);
    }
    return job;
}

static void job_end(uv_loop_t *loop, struct sandbox_job *job)
{
    sandbox_job_free(job);
    uv_run(loop, UV_RUN_DEFAULT);
}

static double job_cycle_batch(uv_loop_t *loop, enum sandbox_level level, int n)
{
    double start = now_ms();
    for (int i = 0; i < n; i++)
        job_end(loop, job_new(loop, level));
    return now_ms() - start;
}

int main(void)
{
    int n = 1000;
    const char *env_n = getenv("HARRIER_BENCH_SPAWNS");
    if (env_n && atoi(env_n) >= ROUNDS)
        n = atoi(env_n);
    int per_round = n / ROUNDS;
    n = per_round * ROUNDS;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sandbox_job *jobs[3];
    for (int l = 0; l < 3; l++)
        jobs[l] = job_new(&loop, (enum sandbox_level)l);

    double base = 0, level_ms[3] = {0};
    for (int r = 0; r < ROUNDS; r++) {
        base += posix_spawn_batch(per_round);
        for (int l = 0; l < 3; l++)
            level_ms[l] += sandbox_batch(&loop, jobs[l], per_round);
    }
    base /= n;
    for (int l = 0; l < 3; l++)
        level_ms[l] /= n;

    double none_ratio = level_ms[0] / base;
    printf("bench spawn none: %.3f ms vs posix_spawn %.3f ms: %.2fx (target <= 1.2x) %s\n",
           level_ms[0], base, none_ratio, none_ratio <= 1.2 ? "ok" : "MISSED");
    for (int l = 1; l < 3; l++) {
        double extra = level_ms[l] - base;
        printf("bench spawn %s (into an existing job sandbox): %.3f ms vs posix_spawn %.3f ms: "
               "%+.3f ms, %.2fx (target <= +1 ms) %s\n",
               sandbox_level_name((enum sandbox_level)l), level_ms[l], base, extra,
               level_ms[l] / base, extra <= 1.0 ? "ok" : "MISSED");
    }
    for (int l = 0; l < 3; l++)
        job_end(&loop, jobs[l]);

    /* A job sandbox is made once per job: its cost, on its own. */
    int cycles = 50;
    for (int l = 1; l < 3; l++) {
        double b = posix_spawn_batch(cycles) / cycles;
        double c = job_cycle_batch(&loop, (enum sandbox_level)l, cycles) / cycles;
        printf("bench job sandbox %s create+teardown: %.3f ms vs posix_spawn %.3f ms: %.2fx "
               "(reported, no target) ok\n",
               sandbox_level_name((enum sandbox_level)l), c, b, c / b);
    }

    /* The spawn path must not grow with the caller's memory (fork would: it copies the
     * page tables). 256 MB touched, then none and process again. */
    size_t big = (size_t)256 << 20;
    char *heap = malloc(big);
    if (heap) {
        memset(heap, 1, big);
        struct sandbox_job *none = job_new(&loop, SANDBOX_NONE);
        struct sandbox_job *process = job_new(&loop, SANDBOX_PROCESS);
        int m = n / 4;
        double b = posix_spawn_batch(m) / m;
        double s0 = sandbox_batch(&loop, none, m) / m;
        double s1 = sandbox_batch(&loop, process, m) / m;
        printf("bench spawn none with a 256 MB heap: %.3f ms vs posix_spawn %.3f ms: %.2fx "
               "(target <= 1.2x) %s\n",
               s0, b, s0 / b, s0 / b <= 1.2 ? "ok" : "MISSED");
        printf("bench spawn process with a 256 MB heap: %.3f ms vs posix_spawn %.3f ms: %+.3f ms "
               "(target <= +1 ms) %s\n",
               s1, b, s1 - b, s1 - b <= 1.0 ? "ok" : "MISSED");
        job_end(&loop, none);
        job_end(&loop, process);
        free(heap);
    }
    uv_loop_close(&loop);
    return 0;
}
