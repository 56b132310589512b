/* template: evaluating template tokens against contexts at run time, as GitHub's
 * TemplateEvaluator does: ${{ }} expressions, `${{ insert }}` merges, mappings with
 * expression keys, and the coercions each consumer needs (step env values become strings,
 * continue-on-error a boolean, timeout-minutes a number). Results are plain jansson values
 * (new references); errors carry the token's file, line and column. */
#ifndef HARRIER_WORKFLOW_TEMPLATE_H
#define HARRIER_WORKFLOW_TEMPLATE_H

#include "lib/error.h"
#include "workflow/expr.h"
#include "workflow/token.h"

#include <jansson.h>
#include <stdbool.h>

struct template_context {
    const struct expr_context *expr;        /* contexts, host functions */
    const struct expr_parse_options *parse; /* allowed named values and functions */
    const char *const *file_table;          /* token file ids index it, 1-based; may be NULL */
    size_t file_count;
};

/* Any token → JSON. Expression results keep their kind (NaN and Infinity become null). */
json_t *template_evaluate(const struct token *t, const struct template_context *ctx,
                          struct error *err);

/* A mapping whose values must be strings (env, with:): scalars are converted as GitHub
 * converts them (true → "true", 3.0 → "3", null → ""); a sequence or mapping value is an
 * error naming its position. Returns an object (new reference), or NULL with err set.
 * A NULL token gives an empty object. */
json_t *template_evaluate_string_map(const struct token *t, const struct template_context *ctx,
                                     struct error *err);

/* A scalar token → string (caller frees). */
char *template_evaluate_string(const struct token *t, const struct template_context *ctx,
                               struct error *err);

/* A boolean (continue-on-error, if:): a literal or an expression whose result is converted
 * by GitHub's truthiness (false, 0, NaN, "" and null are false; "false" is a true string).
 * A NULL token gives fallback. */
int template_evaluate_bool(const struct token *t, const struct template_context *ctx, bool fallback,
                           bool *out, struct error *err);

/* A number (timeout-minutes): numbers, or strings that hold one. NULL gives fallback. */
int template_evaluate_number(const struct token *t, const struct template_context *ctx,
                             double fallback, double *out, struct error *err);

/* Any token → a token tree with no expressions left (GitHub's evaluator is token to token):
 * expression results become literal tokens at the expression's position, inserts are merged.
 * Literal subtrees may be shared with t, so the result lives no longer than t's arena or
 * arena, whichever dies first. NULL with err set on failure. */
struct token *template_evaluate_token(struct arena *arena, const struct token *t,
                                      const struct template_context *ctx, struct error *err);

/* A JSON value as literal tokens, each at the given position. */
struct token *template_token_from_json(struct arena *arena, const json_t *value, int file, int line,
                                       int col);

/* Converts a JSON scalar as GitHub converts values to strings (null → "", booleans →
 * "true"/"false", numbers without a trailing ".0"); NULL for arrays and objects. */
char *template_scalar_to_string(const json_t *value);

#endif
