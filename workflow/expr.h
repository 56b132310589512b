/* expr: GitHub Actions expressions (the text inside ${{ }}): lexing, parsing, validation
 * of named values and functions, and evaluation with GitHub's coercion rules. Errors are
 * worded as GitHub words them, with the stage (lexing, parsing, evaluation) and the 1-based
 * position: "<message>. Located at position <n> within expression: <expr>".
 * Values are struct expr_value; objects and arrays are jansson values (object member lookup
 * is case-insensitive, as GitHub's). The caller owns what it passes in; results are owned by
 * the caller and released with expr_value_clear(). */
#ifndef HARRIER_WORKFLOW_EXPR_H
#define HARRIER_WORKFLOW_EXPR_H

#include "lib/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum expr_kind {
    EXPR_NULL,
    EXPR_BOOLEAN,
    EXPR_NUMBER,
    EXPR_STRING,
    EXPR_ARRAY,
    EXPR_OBJECT,
};

/* Which stage failed; struct error carries the message. */
enum expr_stage {
    EXPR_STAGE_NONE,
    EXPR_STAGE_LEXING,
    EXPR_STAGE_PARSING,
    EXPR_STAGE_EVALUATION,
};

/* A value. number may be NaN or +-Infinity (JSON cannot hold them; GitHub's values can).
 * string is NUL-terminated UTF-8, owned. json holds an array or object (one reference). */
struct expr_value {
    enum expr_kind kind;
    bool boolean;
    double number;
    char *string;
    json_t *json;
};

void expr_value_clear(struct expr_value *value);
/* From JSON: null, true/false, numbers, strings, arrays and objects (borrowed json: a new
 * reference is taken for arrays and objects). */
void expr_value_from_json(struct expr_value *out, json_t *json);
/* To JSON: a new reference. NaN and Infinity have no JSON form: they become null. */
json_t *expr_value_to_json(const struct expr_value *value);
/* GitHub's string coercion (what ${{ }} inside a string produces): null -> "", booleans ->
 * "true"/"false", numbers as GitHub formats them, arrays and objects -> "Array"/"Object". */
char *expr_value_to_string(const struct expr_value *value); /* caller frees */
/* GitHub's truthiness: false, 0, -0, NaN, "" and null are false. */
bool expr_value_truthy(const struct expr_value *value);

/* A function the host provides beyond the built-ins (success, always, failure, cancelled,
 * hashFiles…). The parser checks argument counts; the evaluator calls it. */
struct expr_function {
    const char *name;       /* matched ignoring case */
    int min_args, max_args; /* max_args < 0: no upper limit */
    int (*call)(void *host, const struct expr_value *args, size_t nargs, struct expr_value *out,
                struct error *err);
};

struct expr_parse_options {
    /* Allowed named values (contexts), matched ignoring case; NULL-terminated. NULL = any. */
    const char *const *named_values;
    /* Host functions, terminated by {0}; may be NULL. Built-ins are always allowed. */
    const struct expr_function *functions;
};

struct expr; /* a parsed expression */

/* Parses text. On failure returns negative, *stage says which stage, err has GitHub's text
 * (err->col is the 1-based position in text, when there is one). */
int expr_parse(const char *text, const struct expr_parse_options *options, struct expr **out,
               enum expr_stage *stage, struct error *err);
void expr_free(struct expr *e);

/* The named values (contexts) and functions the expression refers to, for the schema's
 * per-key checks; each callback is called once per reference. */
void expr_walk_references(const struct expr *e, void (*named_value)(void *, const char *),
                          void (*function)(void *, const char *), void *data);

struct expr_context {
    json_t *contexts; /* object: context name -> value (members matched ignoring case) */
    const struct expr_function *functions; /* as given to the parser */
    void *host;                            /* passed to each function's call */
    size_t max_memory; /* bytes as GitHub counts them; 0 = GitHub's default, 1 MiB */
};

/* Evaluates e. On failure returns negative with err set (stage is evaluation). */
int expr_evaluate(const struct expr *e, const struct expr_context *context, struct expr_value *out,
                  struct error *err);

/* Parse and evaluate in one call (for callers that evaluate once). */
int expr_evaluate_text(const char *text, const struct expr_parse_options *options,
                       const struct expr_context *context, struct expr_value *out,
                       enum expr_stage *stage, struct error *err);

#endif
