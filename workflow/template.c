#include "workflow/template.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *file_name(const struct template_context *ctx, int file)
{
    if (file > 0 && ctx->file_table && (size_t)file <= ctx->file_count)
        return ctx->file_table[file - 1];
    return NULL;
}

/* Positions the error at the token, keeping any location the error already has. */
static int fail_at(const struct template_context *ctx, const struct token *t, struct error *err)
{
    if (err && !err->where[0] && t) {
        const char *f = file_name(ctx, t->file);
        if (f)
            snprintf(err->where, sizeof err->where, "%s", f);
        err->line = t->line;
        err->col = t->col;
    }
    return err ? err->code : -1;
}

static json_t *evaluate_expression(const struct token *t, const struct template_context *ctx,
                                   struct error *err)
{
    struct expr_value value = {0};
    enum expr_stage stage = EXPR_STAGE_NONE;
    if (expr_evaluate_text(t->u.expression, ctx->parse, ctx->expr, &value, &stage, err) < 0) {
        /* Expression positions are within the expression; the token's is the useful one. */
        if (err) {
            err->where[0] = '\0';
            err->line = err->col = 0;
        }
        fail_at(ctx, t, err);
        return NULL;
    }
    json_t *out = expr_value_to_json(&value);
    expr_value_clear(&value);
    return out;
}

static json_t *evaluate_mapping(const struct token *t, const struct template_context *ctx,
                                struct error *err)
{
    json_t *out = json_object();
    for (size_t i = 0; i < t->u.mapping.count; i++) {
        const struct token_pair *pair = &t->u.mapping.pairs[i];
        json_t *value = template_evaluate(pair->value, ctx, err);
        if (!value)
            goto fail;
        if (pair->key->type == TOKEN_INSERT) {
            if (!json_is_object(value)) {
                json_decref(value);
                error_set(err, EINVAL, "Expected a mapping to insert");
                fail_at(ctx, pair->value, err);
                goto fail;
            }
            json_object_update(out, value);
            json_decref(value);
            continue;
        }
        json_t *key = template_evaluate(pair->key, ctx, err);
        char *name = key ? template_scalar_to_string(key) : NULL;
        json_decref(key);
        if (!name) {
            json_decref(value);
            if (key) {
                error_set(err, EINVAL, "A mapping key must be a string");
                fail_at(ctx, pair->key, err);
            }
            goto fail;
        }
        json_object_set_new(out, name, value);
        free(name);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

json_t *template_evaluate(const struct token *t, const struct template_context *ctx,
                          struct error *err)
{
    switch (t->type) {
    case TOKEN_STRING:
        return json_string(t->u.string);
    case TOKEN_BOOLEAN:
        return json_boolean(t->u.boolean);
    case TOKEN_NUMBER:
        return isfinite(t->u.number) ? json_real(t->u.number) : json_null();
    case TOKEN_NULL:
        return json_null();
    case TOKEN_EXPRESSION:
        return evaluate_expression(t, ctx, err);
    case TOKEN_INSERT:
        error_set(err, EINVAL, "The directive 'insert' is not allowed in this context");
        fail_at(ctx, t, err);
        return NULL;
    case TOKEN_SEQUENCE: {
        json_t *out = json_array();
        for (size_t i = 0; i < t->u.sequence.count; i++) {
            const struct token *it = t->u.sequence.items[i];
            json_t *item = template_evaluate(it, ctx, err);
            if (!item) {
                json_decref(out);
                return NULL;
            }
            /* As GitHub's unraveler: an expression item that yields a sequence is spliced
             * into the sequence around it. */
            if (it->type == TOKEN_EXPRESSION && json_is_array(item))
                json_array_extend(out, item);
            else
                json_array_append(out, item);
            json_decref(item);
        }
        return out;
    }
    case TOKEN_MAPPING:
        return evaluate_mapping(t, ctx, err);
    }
    error_set(err, EINVAL, "unknown token type %d", (int)t->type);
    return NULL;
}

char *template_scalar_to_string(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_NULL:
        return xstrdup("");
    case JSON_TRUE:
        return xstrdup("true");
    case JSON_FALSE:
        return xstrdup("false");
    case JSON_STRING:
        return xstrndup(json_string_value(value), json_string_length(value));
    case JSON_INTEGER:
    case JSON_REAL: {
        struct expr_value v = {.kind = EXPR_NUMBER, .number = json_number_value(value)};
        return expr_value_to_string(&v);
    }
    default:
        return NULL;
    }
}

char *template_evaluate_string(const struct token *t, const struct template_context *ctx,
                               struct error *err)
{
    json_t *value = template_evaluate(t, ctx, err);
    if (!value)
        return NULL;
    char *s = template_scalar_to_string(value);
    json_decref(value);
    if (!s) {
        error_set(err, EINVAL, "Expected a string, a number, a boolean or null, not %s",
                  t->type == TOKEN_SEQUENCE ? "a sequence" : "a mapping or an array");
        fail_at(ctx, t, err);
    }
    return s;
}

json_t *template_evaluate_string_map(const struct token *t, const struct template_context *ctx,
                                     struct error *err)
{
    if (!t)
        return json_object();
    json_t *value = template_evaluate(t, ctx, err);
    if (!value)
        return NULL;
    if (json_is_null(value)) {
        json_decref(value);
        return json_object();
    }
    if (!json_is_object(value)) {
        json_decref(value);
        error_set(err, EINVAL, "Expected a mapping");
        fail_at(ctx, t, err);
        return NULL;
    }
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(value, key, v)
    {
        char *s = template_scalar_to_string(v);
        if (!s) {
            error_set(err, EINVAL, "The value of '%s' must be a string, not a %s", key,
                      json_is_array(v) ? "sequence" : "mapping");
            fail_at(ctx, t, err);
            json_decref(out);
            json_decref(value);
            return NULL;
        }
        json_object_set_new(out, key, json_string(s));
        free(s);
    }
    json_decref(value);
    return out;
}

int template_evaluate_bool(const struct token *t, const struct template_context *ctx, bool fallback,
                           bool *out, struct error *err)
{
    *out = fallback;
    if (!t)
        return 0;
    json_t *value = template_evaluate(t, ctx, err);
    if (!value)
        return err ? err->code : -1;
    struct expr_value v = {0};
    expr_value_from_json(&v, value);
    /* GitHub's truthiness: the string "false" is true, as for `if:`. */
    *out = expr_value_truthy(&v);
    expr_value_clear(&v);
    json_decref(value);
    return 0;
}

int template_evaluate_number(const struct token *t, const struct template_context *ctx,
                             double fallback, double *out, struct error *err)
{
    *out = fallback;
    if (!t)
        return 0;
    json_t *value = template_evaluate(t, ctx, err);
    if (!value)
        return err ? err->code : -1;
    int rc = 0;
    if (json_is_number(value)) {
        *out = json_number_value(value);
    } else if (json_is_string(value)) {
        char *end;
        const char *s = json_string_value(value);
        double n = strtod(s, &end);
        if (*s && !*end)
            *out = n;
        else
            rc = error_set(err, EINVAL, "Expected a number, not '%s'", s);
    } else if (!json_is_null(value)) {
        rc = error_set(err, EINVAL, "Expected a number");
    }
    json_decref(value);
    if (rc < 0)
        fail_at(ctx, t, err);
    return rc;
}

struct token *template_token_from_json(struct arena *arena, const json_t *value, int file, int line,
                                       int col)
{
    struct token *t;
    switch (json_typeof(value)) {
    case JSON_STRING:
        t = token_new_string(arena, json_string_value(value));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        t = token_new_boolean(arena, json_is_true(value));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        t = token_new_number(arena, json_number_value(value));
        break;
    case JSON_ARRAY:
        t = token_new_sequence(arena);
        for (size_t i = 0; i < json_array_size(value); i++)
            token_sequence_add(
                arena, t,
                template_token_from_json(arena, json_array_get(value, i), file, line, col));
        break;
    case JSON_OBJECT: {
        t = token_new_mapping(arena);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)value, k, v)
        {
            struct token *key = token_new_string(arena, k);
            token_set_position(key, file, line, col);
            token_mapping_add(arena, t, key, template_token_from_json(arena, v, file, line, col));
        }
        break;
    }
    default:
        t = token_new_null(arena);
        break;
    }
    token_set_position(t, file, line, col);
    return t;
}

static struct token *evaluate_mapping_token(struct arena *arena, const struct token *t,
                                            const struct template_context *ctx, struct error *err)
{
    struct token *out = token_new_mapping(arena);
    token_set_position(out, t->file, t->line, t->col);
    for (size_t i = 0; i < t->u.mapping.count; i++) {
        const struct token_pair *pair = &t->u.mapping.pairs[i];
        struct token *value = template_evaluate_token(arena, pair->value, ctx, err);
        if (!value)
            return NULL;
        if (pair->key->type == TOKEN_INSERT) {
            if (value->type != TOKEN_MAPPING) {
                error_set(err, EINVAL, "Expected a mapping to insert");
                fail_at(ctx, pair->value, err);
                return NULL;
            }
            for (size_t j = 0; j < value->u.mapping.count; j++)
                token_mapping_add(arena, out, value->u.mapping.pairs[j].key,
                                  value->u.mapping.pairs[j].value);
            continue;
        }
        struct token *key = pair->key;
        if (key->type == TOKEN_EXPRESSION) {
            cleanup_free char *name = template_evaluate_string(key, ctx, err);
            if (!name)
                return NULL;
            key = token_new_string(arena, name);
            token_set_position(key, pair->key->file, pair->key->line, pair->key->col);
        }
        token_mapping_add(arena, out, key, value);
    }
    return out;
}

struct token *template_evaluate_token(struct arena *arena, const struct token *t,
                                      const struct template_context *ctx, struct error *err)
{
    switch (t->type) {
    case TOKEN_EXPRESSION: {
        json_t *value = evaluate_expression(t, ctx, err);
        if (!value)
            return NULL;
        struct token *out = template_token_from_json(arena, value, t->file, t->line, t->col);
        json_decref(value);
        return out;
    }
    case TOKEN_INSERT:
        error_set(err, EINVAL, "The directive 'insert' is not allowed in this context");
        fail_at(ctx, t, err);
        return NULL;
    case TOKEN_SEQUENCE: {
        struct token *out = token_new_sequence(arena);
        token_set_position(out, t->file, t->line, t->col);
        for (size_t i = 0; i < t->u.sequence.count; i++) {
            const struct token *it = t->u.sequence.items[i];
            struct token *item = template_evaluate_token(arena, it, ctx, err);
            if (!item)
                return NULL;
            /* An expression item that yields a sequence is spliced in, as GitHub does. */
            if (it->type == TOKEN_EXPRESSION && item->type == TOKEN_SEQUENCE)
                for (size_t j = 0; j < item->u.sequence.count; j++)
                    token_sequence_add(arena, out, item->u.sequence.items[j]);
            else
                token_sequence_add(arena, out, item);
        }
        return out;
    }
    case TOKEN_MAPPING:
        return evaluate_mapping_token(arena, t, ctx, err);
    default:
        return (struct token *)t;
    }
}
