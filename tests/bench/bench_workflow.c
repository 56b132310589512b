/* Benchmark: read (YAML + schema) and convert a generated workflow of 500 jobs x 20 steps, each
 * job with a 16-way matrix, against the time libyaml alone takes to parse the same text (measured
 * in the same run). Prints both ratios: the whole, and the converter's own share. */
#include "lib/buf.h"
#include "lib/mem.h"
#include "workflow/schema.h"
#include "workflow/workflow.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

enum { JOBS = 500, STEPS = 20, ROUNDS = 9 };
static const double TARGET_RATIO = 3.0; /* the converter alone, against libyaml's parse */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *generate(void)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "name: bench\non:\n  push:\n    branches: [main]\nenv:\n  GLOBAL: x\njobs:\n");
    for (int j = 0; j < JOBS; j++) {
        buf_printf(&b, "  job_%d:\n", j);
        if (j > 0)
            buf_printf(&b, "    needs: [job_%d]\n", j - 1);
        buf_puts(&b, "    runs-on: ubuntu-latest\n"
                     "    timeout-minutes: 30\n"
                     "    strategy:\n"
                     "      fail-fast: false\n"
                     "      matrix:\n"
                     "        os: [ubuntu, windows, macos, arm]\n"
                     "        node: [18, 20, 22, 24]\n"
                     "    env:\n"
                     "      JOB_ENV: value\n"
                     "    steps:\n");
        for (int s = 0; s < STEPS; s++) {
            if (s % 4 == 0)
                buf_printf(&b, "      - uses: actions/setup-node@v4\n"
                               "        with:\n"
                               "          node-version: '20'\n"
                               "          cache: npm\n");
            else
                buf_printf(&b,
                           "      - name: step %d\n"
                           "        if: github.ref == 'refs/heads/main'\n"
                           "        run: |\n"
                           "          echo building part %d\n"
                           "          make -j4 target-%d\n",
                           s, s, s);
        }
    }
    return buf_steal(&b);
}

static double libyaml_parse(const char *text, size_t len)
{
    double start = now();
    yaml_parser_t parser;
    yaml_event_t event;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&parser, &event))
            break;
        bool done = event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
        if (done)
            break;
    }
    yaml_parser_delete(&parser);
    return now() - start;
}

static double read_and_convert(const char *text, size_t len, size_t *jobs, double *convert_time)
{
    double start = now();
    struct arena arena;
    arena_init(&arena, 1 << 20);
    struct workflow_options options = {0};
    struct schema_context schema;
    schema_context_init(&schema, &arena, &schema_workflow);
    schema.max_bytes = (size_t)1 << 40; /* past GitHub's 10 MB: the workflow is that big */
    struct workflow_context ctx;
    workflow_context_init(&ctx, &schema, &options);
    struct yaml_reader_options o = {.max_nodes = 10000000,
                                    .max_file_size = 64 << 20 /* past GitHub's 1 MiB */};
    struct workflow_template *t = NULL;
    struct token *root =
        schema_read_workflow(&schema, ".github/workflows/bench.yml", text, len, &o);
    double converting = now();
    if (root)
        workflow_convert(&ctx, root, &t);
    *convert_time = now() - converting;
    *jobs = t ? t->jobs_count : 0;
    if (!t)
        fprintf(stderr, "bench workflow: %s\n",
                schema.nerrors ? schema.errors[0].message : "not read");
    schema_context_free(&schema);
    arena_free(&arena);
    return now() - start;
}

int main(void)
{
    cleanup_free char *text = generate();
    size_t len = strlen(text);
    double best_base = 1e9, best = 1e9, best_convert = 1e9;
    size_t jobs = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double b = libyaml_parse(text, len);
        double convert = 0;
        double c = read_and_convert(text, len, &jobs, &convert);
        best_base = b < best_base ? b : best_base;
        best = c < best ? c : best;
        best_convert = convert < best_convert ? convert : best_convert;
    }
    if (jobs != JOBS) {
        printf("bench workflow: conversion failed (%zu jobs) MISSED\n", jobs);
        return 1;
    }
    /* The whole read (YAML, schema) is reported; the target is on the converter's own share. */
    double ratio = best / best_base, convert_ratio = best_convert / best_base;
    printf("bench workflow: read+convert %zu KiB, %d jobs x %d steps, 16-way matrices: %.1f ms vs "
           "libyaml parse alone %.1f ms: %.2fx; convert alone %.1f ms: %.2fx (target <= %.0fx) "
           "%s\n",
           len / 1024, JOBS, STEPS, best * 1e3, best_base * 1e3, ratio, best_convert * 1e3,
           convert_ratio, TARGET_RATIO, convert_ratio <= TARGET_RATIO ? "ok" : "MISSED");
    return 0;
}
