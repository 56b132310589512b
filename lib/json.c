#include "lib/json.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

json_t *json_get(const json_t *object, const char *key)
{
    if (!json_is_object(object))
        return NULL;
    json_t *v = json_object_get(object, key);
    if (v)
        return v;
    const char *k;
    json_t *value;
    json_object_foreach((json_t *)object, k, value)
    {
        if (str_eq_nocase(k, key))
            return value;
    }
    return NULL;
}

const char *json_get_string(const json_t *object, const char *key)
{
    json_t *v = json_get(object, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool json_get_int(const json_t *object, const char *key, int64_t *out)
{
    json_t *v = json_get(object, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (*s && !*end && errno == 0) {
            *out = n;
            return true;
        }
    }
    return false;
}

bool json_get_bool(const json_t *object, const char *key, bool *out)
{
    json_t *v = json_get(object, key);
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return true;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s && (str_eq_nocase(s, "true") || str_eq_nocase(s, "false"))) {
        *out = str_eq_nocase(s, "true");
        return true;
    }
    return false;
}

json_t *json_load_text(const char *text, size_t len, const char *where, struct error *err)
{
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        error_set_at(err, EINVAL, where, jerr.line, jerr.column, "invalid JSON: %s", jerr.text);
    return v;
}

json_t *json_load_path(const char *path, struct error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set_errno(err, errno, "cannot open %s", path);
        return NULL;
    }
    struct buf b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    int failed = ferror(f);
    fclose(f);
    json_t *v = NULL;
    if (failed)
        error_set(err, EIO, "cannot read %s", path);
    else
        v = json_load_text(buf_cstr(&b), b.len, path, err);
    buf_free(&b);
    return v;
}

char *json_dump_compact(const json_t *value)
{
    char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return xstrdup("null");
    return s;
}

bool json_equal_nocase(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
        {
            json_t *other = json_get(b, k);
            if (!other || !json_equal_nocase(v, other))
                return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_equal_nocase(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    default:
        return json_equal(a, b);
    }
}
