/* needs: the job dependency graph of a workflow (`needs:`). Checks it as GitHub does (at
 * least one job without dependencies, no unknown job, no cycle; errors in GitHub's words) and
 * gives the order in which jobs become ready to run. Job ids compare ignoring case.
 * The caller owns every input; nothing here allocates what outlives a call. */
#ifndef HARRIER_WORKFLOW_NEEDS_H
#define HARRIER_WORKFLOW_NEEDS_H

#include "workflow/token.h"

#include <stddef.h>

struct needs_job {
    const char *id;
    /* The job's needs, in the order written: string tokens (their position is where an error
     * about them points). */
    struct token *const *needs;
    size_t needs_count;
};

/* Called once per error: at is the token the error is about (a need, or the jobs mapping
 * itself), message is GitHub's text without position. */
typedef void needs_report_fn(void *data, const struct token *at, const char *message);

/* Checks the graph of count jobs. jobs_token is the `jobs` mapping (for the error that names no
 * single need; may be NULL). On success returns 0 and, when order is not NULL, fills
 * order[0..count) with job indexes in the order they become ready: first the jobs without
 * needs in file order, then each job once its last need is ready (GitHub's breadth-first
 * order). On failure returns -1 after reporting every error. */
int needs_graph_check(const struct needs_job *jobs, size_t count, const struct token *jobs_token,
                      size_t *order, needs_report_fn *report, void *data);

#endif
