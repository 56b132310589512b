/* token: template tokens, the parsed-YAML tree of a workflow or action.yml with its
 * expressions, as GitHub's service and runner hold it (TemplateToken). Every token keeps its
 * file id and 1-based line and column for error messages. Trees live in an arena: build them
 * with token_new_*, free them all at once with arena_free(). Also the typed JSON encoding of
 * tokens used in job messages and in the workflow-parser corpus, both directions. */
#ifndef HARRIER_WORKFLOW_TOKEN_H
#define HARRIER_WORKFLOW_TOKEN_H

#include "lib/error.h"
#include "lib/mem.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The numeric codes are GitHub's (the "type" member in JSON). */
enum token_type {
    TOKEN_STRING = 0,
    TOKEN_SEQUENCE = 1,
    TOKEN_MAPPING = 2,
    TOKEN_EXPRESSION = 3, /* BasicExpression: expr is the text inside ${{ }} */
    TOKEN_INSERT = 4,     /* ${{ insert }} as a mapping key */
    TOKEN_BOOLEAN = 5,
    TOKEN_NUMBER = 6,
    TOKEN_NULL = 7,
};

struct token;

struct token_pair {
    struct token *key; /* a scalar: string, expression or insert */
    struct token *value;
};

struct token {
    enum token_type type;
    int file; /* 1-based index into the file table; 0 = none */
    int line, col;
    union {
        const char *string;     /* TOKEN_STRING: the literal */
        const char *expression; /* TOKEN_EXPRESSION, TOKEN_INSERT: text without ${{ }} */
        bool boolean;
        double number;
        struct {
            struct token **items;
            size_t count, cap;
        } sequence;
        struct {
            struct token_pair *pairs;
            size_t count, cap;
        } mapping;
    } u;
};

struct token *token_new_string(struct arena *arena, const char *s);
struct token *token_new_expression(struct arena *arena, const char *expr);
struct token *token_new_insert(struct arena *arena);
struct token *token_new_boolean(struct arena *arena, bool b);
struct token *token_new_number(struct arena *arena, double n);
struct token *token_new_null(struct arena *arena);
struct token *token_new_sequence(struct arena *arena);
struct token *token_new_mapping(struct arena *arena);
void token_set_position(struct token *t, int file, int line, int col);
void token_sequence_add(struct arena *arena, struct token *seq, struct token *item);
void token_mapping_add(struct arena *arena, struct token *map, struct token *key,
                       struct token *value);
/* The value of a mapping's string key (ignoring case when nocase), or NULL. */
struct token *token_mapping_get(const struct token *map, const char *key, bool nocase);
/* Deep copy into another arena. */
struct token *token_clone(struct arena *arena, const struct token *t);
bool token_is_scalar(const struct token *t);
bool token_is_literal(const struct token *t); /* string, boolean, number or null */
const char *token_type_name(enum token_type type);
/* A number as GitHub's template tokens write it (messages, a number read where a string is
 * expected): .NET's "G15" - 15 significant digits, "1E+21"/"1E-05" exponents - and "NaN",
 * "Infinity", "-Infinity". */
void token_number_format(double n, char *out, size_t size);
/* The scalar as text, as GitHub's ToString: the literal, "true"/"false", the number, "" for
 * null, "${{ expr }}" for expressions. Borrowed or allocated in arena. */
const char *token_to_display_string(struct arena *arena, const struct token *t);

/* JSON encoding. Writing: bare JSON for string/boolean/number/null tokens without a
 * position, objects otherwise; mapping pairs as "key"/"value" (job messages) or
 * "Key"/"Value" (the corpus's spelling) as the style says; insert is written
 * {"type":4,"directive":"insert"} in both (the corpus's expected files use "directive",
 * though its README says "expr"). Reading accepts every form ("directive" or "expr") and
 * any case. */
enum token_json_style {
    TOKEN_JSON_JOB_MESSAGE, /* "key"/"value" */
    TOKEN_JSON_CORPUS,      /* "Key"/"Value" */
};
/* NaN and +-Infinity numbers are written as the strings "NaN", "Infinity", "-Infinity" (as
 * Newtonsoft does) and read back from them in "num". */
json_t *token_to_json(const struct token *t, enum token_json_style style); /* new reference */
/* Returns NULL with err set on invalid input (err->where names the JSON path). */
struct token *token_from_json(struct arena *arena, json_t *json, struct error *err);

#endif
