#include "workflow/context_data.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* PipelineContextData type codes. */
enum {
    CONTEXT_STRING = 0,
    CONTEXT_ARRAY = 1,
    CONTEXT_DICTIONARY = 2,
    CONTEXT_BOOLEAN = 3,
    CONTEXT_NUMBER = 4,
    CONTEXT_CASE_SENSITIVE_DICTIONARY = 5,
};

enum { CONTEXT_DATA_MAX_DEPTH = 512 };

void context_data_marks_add(struct context_data_marks *marks, const json_t *object)
{
    if (context_data_marks_has(marks, object))
        return;
    if (marks->count == marks->cap) {
        marks->cap = marks->cap ? marks->cap * 2 : 8;
        marks->objects = xrealloc(marks->objects, marks->cap * sizeof(*marks->objects));
    }
    marks->objects[marks->count++] = object;
}

bool context_data_marks_has(const struct context_data_marks *marks, const json_t *object)
{
    if (!marks)
        return false;
    for (size_t i = 0; i < marks->count; i++)
        if (marks->objects[i] == object)
            return true;
    return false;
}

void context_data_marks_free(struct context_data_marks *marks)
{
    free(marks->objects);
    marks->objects = NULL;
    marks->count = marks->cap = 0;
}

static json_t *decode_value(json_t *v, struct context_data_marks *marks, struct buf *path,
                            int depth, struct error *err);

static json_t *decode_fail(struct buf *path, struct error *err, const char *what)
{
    error_set_at(err, EINVAL, buf_cstr(path), 0, 0, "context data: %s", what);
    return NULL;
}

static json_t *decode_number(double n)
{
    if (isnan(n) || isinf(n))
        return json_null();
    if (n == floor(n) && fabs(n) < 9007199254740992.0)
        return json_integer((json_int_t)n);
    return json_real(n);
}

static json_t *decode_dictionary(json_t *o, bool case_sensitive, struct context_data_marks *marks,
                                 struct buf *path, int depth, struct error *err)
{
    json_t *d = json_get(o, "d");
    if (d && !json_is_null(d) && !json_is_array(d))
        return decode_fail(path, err, "'d' must be an array of {\"k\", \"v\"} pairs");
    json_t *out = json_object();
    size_t base = path->len, i;
    json_t *pair;
    json_array_foreach(d, i, pair)
    {
        const char *k = json_get_string(pair, "k");
        buf_printf(path, ".d[%zu]", i);
        if (!k) {
            json_decref(out);
            return decode_fail(path, err, "a dictionary entry needs a string 'k'");
        }
        json_t *v = json_get(pair, "v");
        json_t *value = v ? decode_value(v, marks, path, depth + 1, err) : json_null();
        path->len = base;
        path->data[base] = '\0';
        if (!value) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, k, value);
    }
    if (case_sensitive && marks)
        context_data_marks_add(marks, out);
    return out;
}

static json_t *decode_object(json_t *o, struct context_data_marks *marks, struct buf *path,
                             int depth, struct error *err)
{
    int64_t t = CONTEXT_STRING;
    json_t *type = json_get(o, "t");
    if (type && !json_is_null(type) && !json_get_int(o, "t", &t))
        return decode_fail(path, err, "'t' must be an integer");
    switch (t) {
    case CONTEXT_STRING: {
        json_t *s = json_get(o, "s");
        if (s && !json_is_null(s) && !json_is_string(s))
            return decode_fail(path, err, "'s' must be a string");
        return json_string(s && json_is_string(s) ? json_string_value(s) : "");
    }
    case CONTEXT_ARRAY: {
        json_t *a = json_get(o, "a");
        if (a && !json_is_null(a) && !json_is_array(a))
            return decode_fail(path, err, "'a' must be an array");
        json_t *out = json_array();
        size_t base = path->len, i;
        json_t *item;
        json_array_foreach(a, i, item)
        {
            buf_printf(path, ".a[%zu]", i);
            json_t *value = decode_value(item, marks, path, depth + 1, err);
            path->len = base;
            path->data[base] = '\0';
            if (!value) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, value);
        }
        return out;
    }
    case CONTEXT_DICTIONARY:
    case CONTEXT_CASE_SENSITIVE_DICTIONARY:
        return decode_dictionary(o, t == CONTEXT_CASE_SENSITIVE_DICTIONARY, marks, path, depth,
                                 err);
    case CONTEXT_BOOLEAN: {
        bool b = false;
        json_t *v = json_get(o, "b");
        if (v && !json_is_null(v) && !json_get_bool(o, "b", &b))
            return decode_fail(path, err, "'b' must be true or false");
        return json_boolean(b);
    }
    case CONTEXT_NUMBER: {
        json_t *v = json_get(o, "n");
        if (!v || json_is_null(v))
            return json_integer(0);
        if (json_is_number(v))
            return decode_number(json_number_value(v));
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (s) { /* Newtonsoft writes NaN and Infinity as strings */
            char *end;
            double n = strtod(s, &end);
            if (*s && !*end)
                return decode_number(n);
            if (!strcmp(s, "NaN") || !strcmp(s, "Infinity") || !strcmp(s, "-Infinity"))
                return json_null();
        }
        return decode_fail(path, err, "'n' must be a number");
    }
    default:
        return decode_fail(path, err, "unknown type code 't' (expected 0 to 5)");
    }
}

static json_t *decode_value(json_t *v, struct context_data_marks *marks, struct buf *path,
                            int depth, struct error *err)
{
    if (depth > CONTEXT_DATA_MAX_DEPTH)
        return decode_fail(path, err, "nested too deeply");
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return decode_object(v, marks, path, depth, err);
    case JSON_ARRAY:
        return decode_fail(path, err, "a bare array is not context data (use {\"t\":1,\"a\":…})");
    case JSON_INTEGER:
    case JSON_REAL:
        return decode_number(json_number_value(v));
    default:
        return json_incref(v); /* strings, booleans, null */
    }
}

json_t *context_data_decode(json_t *encoded, struct context_data_marks *marks, struct error *err)
{
    if (!encoded)
        return json_null();
    struct buf path = BUF_INIT;
    buf_puts(&path, "$");
    json_t *out = decode_value(encoded, marks, &path, 0, err);
    buf_free(&path);
    return out;
}

json_t *context_data_encode(const json_t *plain, const struct context_data_marks *marks)
{
    switch (json_typeof(plain)) {
    case JSON_OBJECT: {
        json_t *o = json_object();
        bool cs = context_data_marks_has(marks, plain);
        json_object_set_new(
            o, "t", json_integer(cs ? CONTEXT_CASE_SENSITIVE_DICTIONARY : CONTEXT_DICTIONARY));
        if (json_object_size(plain)) {
            json_t *d = json_array();
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)plain, k, v)
            {
                json_t *pair = json_object();
                json_object_set_new(pair, "k", json_string(k));
                json_object_set_new(pair, "v", context_data_encode(v, marks));
                json_array_append_new(d, pair);
            }
            json_object_set_new(o, "d", d);
        }
        return o;
    }
    case JSON_ARRAY: {
        json_t *o = json_object();
        json_object_set_new(o, "t", json_integer(CONTEXT_ARRAY));
        if (json_array_size(plain)) {
            json_t *a = json_array();
            for (size_t i = 0; i < json_array_size(plain); i++)
                json_array_append_new(a, context_data_encode(json_array_get(plain, i), marks));
            json_object_set_new(o, "a", a);
        }
        return o;
    }
    default:
        return json_deep_copy(plain);
    }
}
