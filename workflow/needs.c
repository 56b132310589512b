#include "workflow/needs.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <stdio.h>
#include <string.h>

/* A job still waiting: the needs not yet satisfied. */
struct waiting {
    size_t job;
    struct token **needs;
    size_t count;
};

static const char *need_name(const struct token *need)
{
    return need && need->type == TOKEN_STRING && need->u.string ? need->u.string : "";
}

static bool job_exists(const struct needs_job *jobs, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (str_eq_nocase(jobs[i].id, name))
            return true;
    return false;
}

/* Removes the needs met by the job that just became ready, walking both lists from the end as
 * GitHub does, so jobs enter the ready queue in GitHub's order. */
static void satisfy(struct waiting *waiting, size_t *nwaiting, const char *ready_id, size_t *queue,
                    size_t *queue_tail)
{
    for (size_t i = *nwaiting; i-- > 0;) {
        struct waiting *w = &waiting[i];
        for (size_t j = w->count; j-- > 0;) {
            if (!str_eq_nocase(need_name(w->needs[j]), ready_id))
                continue;
            memmove(&w->needs[j], &w->needs[j + 1], (w->count - j - 1) * sizeof(*w->needs));
            w->count--;
            if (w->count == 0) {
                queue[(*queue_tail)++] = w->job;
                free(w->needs);
                memmove(&waiting[i], &waiting[i + 1], (*nwaiting - i - 1) * sizeof(*waiting));
                (*nwaiting)--;
                break;
            }
        }
    }
}

static void report_unreachable(const struct needs_job *jobs, size_t count,
                               const struct waiting *waiting, size_t nwaiting,
                               needs_report_fn *report, void *data)
{
    for (size_t i = 0; i < nwaiting; i++) {
        const char *job = jobs[waiting[i].job].id;
        for (size_t j = 0; j < waiting[i].count; j++) {
            const struct token *need = waiting[i].needs[j];
            const char *name = need_name(need);
            cleanup_free char *message =
                job_exists(jobs, count, name)
                    ? xasprintf("Job '%s' depends on job '%s' which creates a cycle in the "
                                "dependency graph.",
                                job, name)
                    : xasprintf("Job '%s' depends on unknown job '%s'.", job, name);
            report(data, need, message);
        }
    }
}

int needs_graph_check(const struct needs_job *jobs, size_t count, const struct token *jobs_token,
                      size_t *order, needs_report_fn *report, void *data)
{
    size_t *queue = xcalloc(count + 1, sizeof(*queue));
    struct waiting *waiting = xcalloc(count + 1, sizeof(*waiting));
    size_t head = 0, tail = 0, nwaiting = 0;

    for (size_t i = 0; i < count; i++) {
        if (jobs[i].needs_count == 0) {
            queue[tail++] = i;
            continue;
        }
        waiting[nwaiting].job = i;
        waiting[nwaiting].needs =
            xmemdup(jobs[i].needs, jobs[i].needs_count * sizeof(*jobs[i].needs));
        waiting[nwaiting].count = jobs[i].needs_count;
        nwaiting++;
    }

    int rc = 0;
    if (tail == 0) {
        report(data, jobs_token,
               "The workflow must contain at least one job with no dependencies.");
        rc = -1;
    } else {
        while (head < tail) {
            size_t current = queue[head++];
            satisfy(waiting, &nwaiting, jobs[current].id, queue, &tail);
        }
        if (nwaiting > 0) {
            report_unreachable(jobs, count, waiting, nwaiting, report, data);
            rc = -1;
        }
    }

    if (rc == 0 && order)
        memcpy(order, queue, count * sizeof(*order));
    for (size_t i = 0; i < nwaiting; i++)
        free(waiting[i].needs);
    free(waiting);
    free(queue);
    return rc;
}
