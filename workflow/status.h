/* status: GitHub's status functions for if: conditions, success(), failure(), cancelled() and
 * always(), as one table every evaluator of job and step conditions uses. The expression
 * host of an evaluation with these functions is a struct status_source, asked at each call how
 * things stand (a worker's job and composite frames, a planner's needed jobs, a test case). */
#ifndef HARRIER_WORKFLOW_STATUS_H
#define HARRIER_WORKFLOW_STATUS_H

#include "workflow/expr.h"

#include <stdbool.h>

struct status_now {
    bool succeeded; /* nothing has failed or been cancelled so far */
    bool failed;    /* something failed */
    bool cancelled; /* the run is being cancelled */
};

/* Embed one in the host and pass its address as expr_context.host. */
struct status_source {
    void (*query)(const struct status_source *source, struct status_now *now);
};

/* success() = succeeded && !cancelled, failure() = failed && !cancelled,
 * cancelled() = cancelled, always() = true. Ends with a {0} entry. */
extern const struct expr_function status_functions[];

#endif
