/* matrix: expansion of a job's `strategy` into its configurations (the cross product of the
 * matrix vectors, minus `exclude`, plus `include`), with GitHub's ids, display names, matrix
 * and strategy contexts, limits and errors. Run at plan time on the evaluated strategy token,
 * and by the converter in validate-only mode on the unevaluated one (as GitHub's early
 * validation: anything holding an expression is left for later).
 * The caller owns the token; the result is owned by the caller (matrix_free). */
#ifndef HARRIER_WORKFLOW_MATRIX_H
#define HARRIER_WORKFLOW_MATRIX_H

#include "workflow/token.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    MATRIX_MAX_CONFIGURATIONS = 256, /* GitHub's limit per job */
    MATRIX_SHORT_ID_LENGTH = 25,     /* GitHub's configuration ids (short matrix ids) */
    MATRIX_LONG_ID_LENGTH = 100,
};

struct matrix_options {
    const char *job_name;      /* display name the configuration names start from */
    const char *job_id;        /* for the limit's error message; job_name when NULL */
    bool long_ids;             /* ids up to 100 characters instead of GitHub's 25 */
    bool validate_only;        /* early validation: skip what holds expressions, no limit */
    size_t max_configurations; /* 0 = MATRIX_MAX_CONFIGURATIONS */
};

struct matrix_configuration {
    char *id;         /* "ubuntu-latest_10"; NULL for a job without a matrix */
    char *name;       /* "build (ubuntu-latest, 10)", or the job name without a matrix */
    json_t *matrix;   /* the matrix context (object); NULL without a matrix */
    json_t *strategy; /* {"fail-fast", "job-index", "job-total", "max-parallel"} */
};

struct matrix {
    bool has_matrix;  /* false: one configuration, the job itself */
    bool fail_fast;   /* default true */
    int max_parallel; /* 0 = not set */
    struct matrix_configuration *items;
    size_t count; /* may be 0 when every combination was excluded */
};

/* Called once per error with the token it is about (NULL when GitHub gives no position) and
 * GitHub's message without position. */
typedef void matrix_report_fn(void *data, const struct token *at, const char *message);

/* Expands strategy (a mapping token, or NULL for a job without strategy). Returns 0, or -1
 * after reporting errors GitHub reports at a position (the result is still filled as far as
 * it goes), or -2 when the token has a shape GitHub rejects outright (wrong type where a
 * mapping or sequence was expected; reported with at = NULL; out is empty). */
int matrix_expand(const struct token *strategy, const struct matrix_options *options,
                  struct matrix *out, matrix_report_fn *report, void *data);
void matrix_free(struct matrix *m);

/* GitHub's `==` between two context values (strings ignoring case, numbers with coercion;
 * objects and arrays only equal to themselves). Used for include and exclude filters. */
bool matrix_values_equal(const json_t *left, const json_t *right);

#endif
