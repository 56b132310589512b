#include "workflow/needs.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <string.h>

/* String tokens built by hand so the test depends on needs.c alone. */
static struct token need_tokens[16];
static struct token *need_ptrs[16];
static size_t need_used;

static struct token *const *needs_of(int line, const char *a, const char *b)
{
    struct token *const *start = &need_ptrs[need_used];
    const char *names[] = {a, b};
    for (int i = 0; i < 2 && names[i]; i++) {
        struct token *t = &need_tokens[need_used];
        *t = (struct token){.type = TOKEN_STRING, .file = 1, .line = line, .col = 9 + i};
        t->u.string = names[i];
        need_ptrs[need_used++] = t;
    }
    return start;
}

struct reports {
    struct buf text;
    int count;
};

static void collect(void *data, const struct token *at, const char *message)
{
    struct reports *r = data;
    buf_printf(&r->text, "%d:%d %s\n", at ? at->line : 0, at ? at->col : 0, message);
    r->count++;
}

Test(needs, ready_order_is_breadth_first_in_file_order)
{
    need_used = 0;
    struct needs_job jobs[] = {
        {"build", NULL, 0},
        {"test-0", needs_of(3, "build", NULL), 1},
        {"deploy", needs_of(4, "test-0", "TEST-1"), 2},
        {"test-1", needs_of(5, "Build", NULL), 1},
        {"lint", NULL, 0},
    };
    size_t order[5];
    struct reports r = {BUF_INIT, 0};
    cr_assert_eq(needs_graph_check(jobs, 5, NULL, order, collect, &r), 0, "%s", buf_cstr(&r.text));
    /* build, lint (no needs), then test-1 and test-0 (GitHub scans waiting jobs from the end),
     * then deploy. */
    size_t expected[] = {0, 4, 3, 1, 2};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(order[i], expected[i], "position %d: %zu", i, order[i]);
    buf_free(&r.text);
}

Test(needs, cycle_is_reported_on_each_need_in_github_words)
{
    need_used = 0;
    struct needs_job jobs[] = {
        {"one", NULL, 0},
        {"two", needs_of(12, "one", "three"), 2},
        {"three", needs_of(18, "two", NULL), 1},
    };
    struct reports r = {BUF_INIT, 0};
    cr_assert_lt(needs_graph_check(jobs, 3, NULL, NULL, collect, &r), 0);
    cr_assert_str_eq(buf_cstr(&r.text),
                     "12:10 Job 'two' depends on job 'three' which creates a cycle in the "
                     "dependency graph.\n"
                     "18:9 Job 'three' depends on job 'two' which creates a cycle in the "
                     "dependency graph.\n");
    buf_free(&r.text);
}

Test(needs, unknown_job_is_named)
{
    need_used = 0;
    struct needs_job jobs[] = {
        {"a", NULL, 0},
        {"b", needs_of(7, "a", "nope"), 2},
    };
    struct reports r = {BUF_INIT, 0};
    cr_assert_lt(needs_graph_check(jobs, 2, NULL, NULL, collect, &r), 0);
    cr_assert_str_eq(buf_cstr(&r.text), "7:10 Job 'b' depends on unknown job 'nope'.\n");
    buf_free(&r.text);
}

Test(needs, a_graph_without_a_start_is_rejected_once)
{
    need_used = 0;
    struct token jobs_token = {.type = TOKEN_MAPPING, .file = 1, .line = 2, .col = 3};
    struct needs_job jobs[] = {
        {"a", needs_of(3, "b", NULL), 1},
        {"b", needs_of(5, "a", NULL), 1},
    };
    struct reports r = {BUF_INIT, 0};
    cr_assert_lt(needs_graph_check(jobs, 2, &jobs_token, NULL, collect, &r), 0);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(buf_cstr(&r.text),
                     "2:3 The workflow must contain at least one job with no dependencies.\n");
    buf_free(&r.text);
}
