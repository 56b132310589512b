#include "workflow/token.h"

#include "lib/buf.h"
#include "lib/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct token *token_alloc(struct arena *arena, enum token_type type)
{
    struct token *t = arena_alloc(arena, sizeof(*t));
    t->type = type;
    return t;
}

struct token *token_new_string(struct arena *arena, const char *s)
{
    struct token *t = token_alloc(arena, TOKEN_STRING);
    t->u.string = arena_strdup(arena, s ? s : "");
    return t;
}

struct token *token_new_expression(struct arena *arena, const char *expr)
{
    struct token *t = token_alloc(arena, TOKEN_EXPRESSION);
    t->u.expression = arena_strdup(arena, expr ? expr : "");
    return t;
}

struct token *token_new_insert(struct arena *arena)
{
    struct token *t = token_alloc(arena, TOKEN_INSERT);
    t->u.expression = "insert";
    return t;
}

struct token *token_new_boolean(struct arena *arena, bool b)
{
    struct token *t = token_alloc(arena, TOKEN_BOOLEAN);
    t->u.boolean = b;
    return t;
}

struct token *token_new_number(struct arena *arena, double n)
{
    struct token *t = token_alloc(arena, TOKEN_NUMBER);
    t->u.number = n;
    return t;
}

struct token *token_new_null(struct arena *arena)
{
    return token_alloc(arena, TOKEN_NULL);
}

struct token *token_new_sequence(struct arena *arena)
{
    return token_alloc(arena, TOKEN_SEQUENCE);
}

struct token *token_new_mapping(struct arena *arena)
{
    return token_alloc(arena, TOKEN_MAPPING);
}

void token_set_position(struct token *t, int file, int line, int col)
{
    t->file = file;
    t->line = line;
    t->col = col;
}

/* Arena memory cannot be realloc'd: grow by copying into a new block (doubling keeps the
 * total copied linear in the final size). */
static void *token_grow(struct arena *arena, void *old, size_t count, size_t *cap, size_t size)
{
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = arena_alloc(arena, ncap * size);
    if (count)
        memcpy(p, old, count * size);
    *cap = ncap;
    return p;
}

void token_sequence_add(struct arena *arena, struct token *seq, struct token *item)
{
    if (seq->u.sequence.count == seq->u.sequence.cap)
        seq->u.sequence.items = token_grow(arena, seq->u.sequence.items, seq->u.sequence.count,
                                           &seq->u.sequence.cap, sizeof(struct token *));
    seq->u.sequence.items[seq->u.sequence.count++] = item;
}

void token_mapping_add(struct arena *arena, struct token *map, struct token *key,
                       struct token *value)
{
    if (map->u.mapping.count == map->u.mapping.cap)
        map->u.mapping.pairs = token_grow(arena, map->u.mapping.pairs, map->u.mapping.count,
                                          &map->u.mapping.cap, sizeof(struct token_pair));
    map->u.mapping.pairs[map->u.mapping.count].key = key;
    map->u.mapping.pairs[map->u.mapping.count].value = value;
    map->u.mapping.count++;
}

struct token *token_mapping_get(const struct token *map, const char *key, bool nocase)
{
    if (!map || map->type != TOKEN_MAPPING)
        return NULL;
    for (size_t i = 0; i < map->u.mapping.count; i++) {
        const struct token *k = map->u.mapping.pairs[i].key;
        if (k->type != TOKEN_STRING)
            continue;
        if (nocase ? str_eq_nocase(k->u.string, key) : strcmp(k->u.string, key) == 0)
            return map->u.mapping.pairs[i].value;
    }
    return NULL;
}

struct token *token_clone(struct arena *arena, const struct token *t)
{
    if (!t)
        return NULL;
    struct token *c = token_alloc(arena, t->type);
    token_set_position(c, t->file, t->line, t->col);
    switch (t->type) {
    case TOKEN_STRING:
        c->u.string = arena_strdup(arena, t->u.string);
        break;
    case TOKEN_EXPRESSION:
    case TOKEN_INSERT:
        c->u.expression = arena_strdup(arena, t->u.expression ? t->u.expression : "insert");
        break;
    case TOKEN_BOOLEAN:
        c->u.boolean = t->u.boolean;
        break;
    case TOKEN_NUMBER:
        c->u.number = t->u.number;
        break;
    case TOKEN_NULL:
        break;
    case TOKEN_SEQUENCE:
        for (size_t i = 0; i < t->u.sequence.count; i++)
            token_sequence_add(arena, c, token_clone(arena, t->u.sequence.items[i]));
        break;
    case TOKEN_MAPPING:
        for (size_t i = 0; i < t->u.mapping.count; i++)
            token_mapping_add(arena, c, token_clone(arena, t->u.mapping.pairs[i].key),
                              token_clone(arena, t->u.mapping.pairs[i].value));
        break;
    }
    return c;
}

bool token_is_scalar(const struct token *t)
{
    return t && t->type != TOKEN_SEQUENCE && t->type != TOKEN_MAPPING;
}

bool token_is_literal(const struct token *t)
{
    return t && (t->type == TOKEN_STRING || t->type == TOKEN_BOOLEAN || t->type == TOKEN_NUMBER ||
                 t->type == TOKEN_NULL);
}

const char *token_type_name(enum token_type type)
{
    static const char *const names[] = {
        "String",           "Sequence", "Mapping", "BasicExpression",
        "InsertExpression", "Boolean",  "Number",  "Null"};
    if ((unsigned)type < sizeof(names) / sizeof(names[0]))
        return names[type];
    return "Unknown";
}

void token_number_format(double n, char *out, size_t size)
{
    if (isnan(n)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(n)) {
        snprintf(out, size, "%s", n > 0 ? "Infinity" : "-Infinity");
        return;
    }
    /* .NET's ToString("G15"), as GitHub's NumberToken: 15 significant digits, exponent form
     * ("1E+21", "1E-05") below 1E-05 and from 1E+15 - the rules of C's %G. */
    snprintf(out, size, "%.15G", n);
}

const char *token_to_display_string(struct arena *arena, const struct token *t)
{
    char num[64];
    switch (t->type) {
    case TOKEN_STRING:
        return t->u.string;
    case TOKEN_BOOLEAN:
        return t->u.boolean ? "true" : "false";
    case TOKEN_NUMBER:
        token_number_format(t->u.number, num, sizeof(num));
        return arena_strdup(arena, num);
    case TOKEN_NULL:
        return "";
    case TOKEN_EXPRESSION:
        return arena_printf(arena, "${{ %s }}", t->u.expression);
    case TOKEN_INSERT:
        return "${{ insert }}";
    case TOKEN_SEQUENCE:
        return "Sequence";
    case TOKEN_MAPPING:
        return "Mapping";
    }
    return "";
}

/* ---- JSON ---------------------------------------------------------------------------- */

static json_t *token_number_json(double n)
{
    if (isnan(n) || isinf(n)) {
        /* Newtonsoft writes these as strings ("Infinity"), JSON has no literal for them. */
        char s[16];
        token_number_format(n, s, sizeof(s));
        return json_string(s);
    }
    if (n == floor(n) && fabs(n) < 9007199254740992.0)
        return json_integer((json_int_t)n);
    return json_real(n);
}

static bool token_has_position(const struct token *t)
{
    return t->file || t->line || t->col;
}

json_t *token_to_json(const struct token *t, enum token_json_style style)
{
    if (!t)
        return json_null();
    if (!token_has_position(t)) {
        switch (t->type) {
        case TOKEN_STRING:
            return json_string(t->u.string);
        case TOKEN_BOOLEAN:
            return json_boolean(t->u.boolean);
        case TOKEN_NUMBER:
            return token_number_json(t->u.number);
        case TOKEN_NULL:
            return json_null();
        default:
            break;
        }
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_integer(t->type));
    if (t->file)
        json_object_set_new(o, "file", json_integer(t->file));
    if (t->line)
        json_object_set_new(o, "line", json_integer(t->line));
    if (t->col)
        json_object_set_new(o, "col", json_integer(t->col));
    switch (t->type) {
    case TOKEN_STRING:
        json_object_set_new(o, "lit", json_string(t->u.string));
        break;
    case TOKEN_BOOLEAN:
        json_object_set_new(o, "bool", json_boolean(t->u.boolean));
        break;
    case TOKEN_NUMBER:
        json_object_set_new(o, "num", token_number_json(t->u.number));
        break;
    case TOKEN_NULL:
        break;
    case TOKEN_EXPRESSION:
        json_object_set_new(o, "expr", json_string(t->u.expression));
        break;
    case TOKEN_INSERT:
        json_object_set_new(o, "directive", json_string("insert"));
        break;
    case TOKEN_SEQUENCE:
        if (t->u.sequence.count) {
            json_t *a = json_array();
            for (size_t i = 0; i < t->u.sequence.count; i++)
                json_array_append_new(a, token_to_json(t->u.sequence.items[i], style));
            json_object_set_new(o, "seq", a);
        }
        break;
    case TOKEN_MAPPING:
        if (t->u.mapping.count) {
            json_t *a = json_array();
            const char *k = style == TOKEN_JSON_CORPUS ? "Key" : "key";
            const char *v = style == TOKEN_JSON_CORPUS ? "Value" : "value";
            for (size_t i = 0; i < t->u.mapping.count; i++) {
                json_t *pair = json_object();
                json_object_set_new(pair, k, token_to_json(t->u.mapping.pairs[i].key, style));
                json_object_set_new(pair, v, token_to_json(t->u.mapping.pairs[i].value, style));
                json_array_append_new(a, pair);
            }
            json_object_set_new(o, "map", a);
        }
        break;
    }
    return o;
}

/* Reading. `path` is the JSON path of the value being read, for messages. */
enum { TOKEN_JSON_MAX_DEPTH = 512 };

static struct token *token_read(struct arena *arena, json_t *json, struct buf *path, int depth,
                                struct error *err);

static int token_read_position(json_t *o, struct token *t, const struct buf *path,
                               struct error *err)
{
    static const char *const names[] = {"file", "line", "col"};
    int *fields[] = {&t->file, &t->line, &t->col};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_get(o, names[i]);
        if (!v || json_is_null(v))
            continue;
        int64_t n;
        if (!json_get_int(o, names[i], &n) || n < 0 || n > 0x7fffffff)
            return error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                                "template token: '%s' must be a non-negative integer", names[i]);
        *fields[i] = (int)n;
    }
    return 0;
}

static double token_read_number(json_t *v, bool *ok)
{
    *ok = true;
    if (json_is_number(v))
        return json_number_value(v);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s) {
        if (strcmp(s, "NaN") == 0)
            return NAN;
        if (strcmp(s, "Infinity") == 0)
            return INFINITY;
        if (strcmp(s, "-Infinity") == 0)
            return -INFINITY;
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (*s && !*end)
            return d;
    }
    *ok = false;
    return 0;
}

static struct token *token_read_object(struct arena *arena, json_t *o, struct buf *path, int depth,
                                       struct error *err)
{
    json_t *type = json_get(o, "type");
    int64_t code = TOKEN_STRING;
    if (type && !json_is_null(type) && (!json_get_int(o, "type", &code) || code < 0 || code > 7)) {
        error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                     "template token: 'type' must be an integer from 0 to 7");
        return NULL;
    }
    struct token *t = token_alloc(arena, (enum token_type)code);
    if (token_read_position(o, t, path, err) < 0)
        return NULL;
    size_t base = path->len;
    switch (t->type) {
    case TOKEN_STRING: {
        json_t *lit = json_get(o, "lit");
        if (lit && !json_is_null(lit) && !json_is_string(lit)) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: 'lit' must be a string");
            return NULL;
        }
        t->u.string = arena_strdup(arena, lit && json_is_string(lit) ? json_string_value(lit) : "");
        break;
    }
    case TOKEN_EXPRESSION: {
        const char *expr = json_get_string(o, "expr");
        if (!expr) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: an expression (type 3) needs an 'expr' string");
            return NULL;
        }
        t->u.expression = arena_strdup(arena, expr);
        break;
    }
    case TOKEN_INSERT: {
        const char *d = json_get_string(o, "directive");
        if (!d)
            d = json_get_string(o, "expr");
        if (d && strcmp(d, "insert") != 0) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: unknown directive '%s' (only 'insert' exists)", d);
            return NULL;
        }
        t->u.expression = "insert";
        break;
    }
    case TOKEN_BOOLEAN: {
        bool b = false;
        json_t *v = json_get(o, "bool");
        if (v && !json_is_null(v) && !json_get_bool(o, "bool", &b)) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: 'bool' must be true or false");
            return NULL;
        }
        t->u.boolean = b;
        break;
    }
    case TOKEN_NUMBER: {
        json_t *v = json_get(o, "num");
        bool ok = true;
        t->u.number = v && !json_is_null(v) ? token_read_number(v, &ok) : 0;
        if (!ok) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: 'num' must be a number");
            return NULL;
        }
        break;
    }
    case TOKEN_NULL:
        break;
    case TOKEN_SEQUENCE: {
        json_t *a = json_get(o, "seq");
        if (a && !json_is_null(a) && !json_is_array(a)) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: 'seq' must be an array");
            return NULL;
        }
        size_t i;
        json_t *item;
        json_array_foreach(a, i, item)
        {
            buf_printf(path, ".seq[%zu]", i);
            struct token *c = token_read(arena, item, path, depth + 1, err);
            path->len = base;
            path->data[base] = '\0';
            if (!c)
                return NULL;
            token_sequence_add(arena, t, c);
        }
        break;
    }
    case TOKEN_MAPPING: {
        json_t *a = json_get(o, "map");
        if (a && !json_is_null(a) && !json_is_array(a)) {
            error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                         "template token: 'map' must be an array");
            return NULL;
        }
        size_t i;
        json_t *pair;
        json_array_foreach(a, i, pair)
        {
            json_t *k = json_get(pair, "key");
            json_t *v = json_get(pair, "value");
            if (!json_is_object(pair) || !k) {
                buf_printf(path, ".map[%zu]", i);
                error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                             "template token: a mapping pair needs a 'key' and a 'value'");
                return NULL;
            }
            buf_printf(path, ".map[%zu].key", i);
            struct token *key = token_read(arena, k, path, depth + 1, err);
            if (key && !token_is_scalar(key)) {
                error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                             "template token: a mapping key must be a scalar, not a %s",
                             token_type_name(key->type));
                key = NULL;
            }
            path->len = base;
            path->data[base] = '\0';
            if (!key)
                return NULL;
            buf_printf(path, ".map[%zu].value", i);
            struct token *value =
                v ? token_read(arena, v, path, depth + 1, err) : token_new_null(arena);
            path->len = base;
            path->data[base] = '\0';
            if (!value)
                return NULL;
            token_mapping_add(arena, t, key, value);
        }
        break;
    }
    }
    return t;
}

static struct token *token_read(struct arena *arena, json_t *json, struct buf *path, int depth,
                                struct error *err)
{
    if (depth > TOKEN_JSON_MAX_DEPTH) {
        error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                     "template token: nested deeper than %d levels", TOKEN_JSON_MAX_DEPTH);
        return NULL;
    }
    switch (json_typeof(json)) {
    case JSON_STRING:
        return token_new_string(arena, json_string_value(json));
    case JSON_TRUE:
    case JSON_FALSE:
        return token_new_boolean(arena, json_is_true(json));
    case JSON_INTEGER:
    case JSON_REAL:
        return token_new_number(arena, json_number_value(json));
    case JSON_NULL:
        return token_new_null(arena);
    case JSON_OBJECT:
        return token_read_object(arena, json, path, depth, err);
    case JSON_ARRAY:
        break;
    }
    error_set_at(err, EINVAL, buf_cstr(path), 0, 0,
                 "template token: an array is not a token (expected a string, boolean, number, "
                 "null or an object with 'type')");
    return NULL;
}

struct token *token_from_json(struct arena *arena, json_t *json, struct error *err)
{
    if (!json) {
        error_set(err, EINVAL, "template token: no value");
        return NULL;
    }
    struct buf path = BUF_INIT;
    buf_puts(&path, "$");
    struct token *t = token_read(arena, json, &path, 0, err);
    buf_free(&path);
    return t;
}
