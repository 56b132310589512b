#include "workflow/matrix.h"

#include "lib/buf.h"
#include "lib/json.h"
#include "lib/mem.h"
#include "workflow/idbuilder_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NAME_MAX_LENGTH = 100 };

static void json_cleanup(json_t **p)
{
    json_decref(*p);
}
#define cleanup_json __attribute__((cleanup(json_cleanup)))

struct expansion {
    const struct matrix_options *options;
    matrix_report_fn *report;
    void *data;
    int rc; /* 0, -1 (errors reported) or -2 (shape rejected) */
};

/* A filter from `include` or `exclude`: leaf comparisons against a combination. */
struct filter {
    const struct token *mapping; /* the keys compared (include: the vector keys only) */
    bool owned;                  /* mapping was made here (free it) */
    json_t *extra;               /* include: values added to matching combinations */
    bool matched;
};

struct filters {
    struct filter *items;
    size_t count;
};

static void report(struct expansion *x, const struct token *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct expansion *x, const struct token *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *message = xvasprintf(fmt, ap);
    va_end(ap);
    if (x->report)
        x->report(x->data, at, message);
    if (x->rc == 0)
        x->rc = -1;
}

/* GitHub's class names, as its "Unexpected type" messages print them. */
static const char *token_class(const struct token *t)
{
    static const char *const names[] = {
        [TOKEN_STRING] = "StringToken",           [TOKEN_SEQUENCE] = "SequenceToken",
        [TOKEN_MAPPING] = "MappingToken",         [TOKEN_EXPRESSION] = "BasicExpressionToken",
        [TOKEN_INSERT] = "InsertExpressionToken", [TOKEN_BOOLEAN] = "BooleanToken",
        [TOKEN_NUMBER] = "NumberToken",           [TOKEN_NULL] = "NullToken",
    };
    return t && (unsigned)t->type < sizeof(names) / sizeof(names[0]) ? names[t->type] : "";
}

/* As GitHub's AssertX: a wrong type rejects the whole strategy. */
static bool expect(struct expansion *x, const struct token *t, enum token_type type,
                   const char *what)
{
    if (t && t->type == type)
        return true;
    static const char *const expected[] = {
        [TOKEN_STRING] = "StringToken",   [TOKEN_SEQUENCE] = "SequenceToken",
        [TOKEN_MAPPING] = "MappingToken", [TOKEN_BOOLEAN] = "BooleanToken",
        [TOKEN_NUMBER] = "NumberToken",
    };
    if (x->rc != -2) {
        cleanup_free char *message = xasprintf(
            "Unexpected type '%s' encountered while reading '%s'. The type '%s' was expected.",
            token_class(t), what, expected[type]);
        if (x->report)
            x->report(x->data, NULL, message);
    }
    x->rc = -2;
    return false;
}

static bool has_expression(const struct token *t)
{
    if (!t)
        return false;
    switch (t->type) {
    case TOKEN_EXPRESSION:
    case TOKEN_INSERT:
        return true;
    case TOKEN_SEQUENCE:
        for (size_t i = 0; i < t->u.sequence.count; i++)
            if (has_expression(t->u.sequence.items[i]))
                return true;
        return false;
    case TOKEN_MAPPING:
        for (size_t i = 0; i < t->u.mapping.count; i++)
            if (has_expression(t->u.mapping.pairs[i].key) ||
                has_expression(t->u.mapping.pairs[i].value))
                return true;
        return false;
    default:
        return false;
    }
}

static json_t *token_value(const struct token *t)
{
    switch (t->type) {
    case TOKEN_STRING:
        return json_string(t->u.string ? t->u.string : "");
    case TOKEN_BOOLEAN:
        return json_boolean(t->u.boolean);
    case TOKEN_NUMBER:
        return isfinite(t->u.number) ? json_real(t->u.number) : json_null();
    case TOKEN_SEQUENCE: {
        json_t *array = json_array();
        for (size_t i = 0; i < t->u.sequence.count; i++)
            json_array_append_new(array, token_value(t->u.sequence.items[i]));
        return array;
    }
    case TOKEN_MAPPING: {
        json_t *object = json_object();
        for (size_t i = 0; i < t->u.mapping.count; i++) {
            const struct token *key = t->u.mapping.pairs[i].key;
            if (key->type == TOKEN_STRING)
                json_object_set_new(object, key->u.string,
                                    token_value(t->u.mapping.pairs[i].value));
        }
        return object;
    }
    case TOKEN_EXPRESSION:
    case TOKEN_INSERT:
        return json_string(t->u.expression ? t->u.expression : "");
    default:
        return json_null();
    }
}

/* GitHub's ToNumber: null 0, booleans 1/0, strings parsed (trimmed; empty 0; hex 0x, octal
 * 0o), anything else NaN. */
static double to_number(const json_t *v)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v))
        return json_is_true(v) ? 1 : 0;
    if (json_is_number(v))
        return json_number_value(v);
    if (!json_is_string(v))
        return NAN;
    cleanup_free char *copy = xstrdup(json_string_value(v));
    char *s = str_trim(copy);
    if (!*s)
        return 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o') && s[2]) {
        char *end;
        unsigned long long n = strtoull(s + 2, &end, s[1] == 'x' ? 16 : 8);
        return *end ? NAN : (double)n;
    }
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return strcmp(s, "Infinity") == 0    ? INFINITY
                   : strcmp(s, "-Infinity") == 0 ? -INFINITY
                                                 : NAN;
    char *end;
    double d = strtod(s, &end);
    return *end ? NAN : d;
}

enum kind { KIND_NULL, KIND_BOOLEAN, KIND_NUMBER, KIND_STRING, KIND_OTHER };

static enum kind kind_of(const json_t *v)
{
    if (!v || json_is_null(v))
        return KIND_NULL;
    if (json_is_boolean(v))
        return KIND_BOOLEAN;
    if (json_is_number(v))
        return KIND_NUMBER;
    if (json_is_string(v))
        return KIND_STRING;
    return KIND_OTHER;
}

bool matrix_values_equal(const json_t *left, const json_t *right)
{
    enum kind lk = kind_of(left), rk = kind_of(right);
    if (lk == rk) {
        switch (lk) {
        case KIND_NULL:
            return true;
        case KIND_BOOLEAN:
            return json_is_true(left) == json_is_true(right);
        case KIND_NUMBER:
            return json_number_value(left) == json_number_value(right);
        case KIND_STRING:
            return str_eq_nocase(json_string_value(left), json_string_value(right));
        default:
            return left == right;
        }
    }
    /* Different kinds: numbers and strings meet as numbers; booleans and null become numbers
     * first; objects and arrays equal nothing else. */
    if (lk == KIND_OTHER || rk == KIND_OTHER) {
        if (lk == KIND_OTHER && rk == KIND_OTHER)
            return left == right;
        enum kind scalar = lk == KIND_OTHER ? rk : lk;
        if (scalar == KIND_NUMBER || scalar == KIND_STRING)
            return false;
        /* boolean/null against an object: the scalar becomes a number, still unequal */
        return false;
    }
    double l = to_number(left), r = to_number(right);
    return !isnan(l) && !isnan(r) && l == r;
}

/* GitHub formats numbers with 15 significant digits ("G15"). */
static char *format_number(double n)
{
    if (isnan(n))
        return xstrdup("NaN");
    if (isinf(n))
        return xstrdup(n > 0 ? "Infinity" : "-Infinity");
    return xasprintf("%.15G", n);
}

static char *segment_of(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_boolean(v))
        return xstrdup(json_is_true(v) ? "true" : "false");
    if (json_is_number(v))
        return format_number(json_number_value(v));
    return NULL;
}

/* Depth-first, values only (keys left out), as GitHub's Traverse(omitKeys: true). */
static void collect_segments(const json_t *v, struct id_builder *ids, struct buf *names,
                             size_t *nnames)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child)
        {
            collect_segments(child, ids, names, nnames);
        }
        return;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child)
        {
            collect_segments(child, ids, names, nnames);
        }
        return;
    }
    cleanup_free char *segment = segment_of(v);
    if (!segment || !*segment)
        return;
    id_builder_append_segment(ids, segment);
    buf_puts(names, (*nnames)++ ? ", " : "");
    buf_puts(names, segment);
}

static char *build_name(const char *job_name, const char *segments, size_t nsegments)
{
    if (!job_name || !*job_name)
        return NULL;
    char *name = nsegments ? xasprintf("%s (%s)", job_name, segments) : xstrdup(job_name);
    if (utf16_length(name) > NAME_MAX_LENGTH) {
        size_t keep = utf16_prefix_bytes(name, NAME_MAX_LENGTH - 3);
        memcpy(name + keep, "...", 4);
    }
    return name;
}

/* Lookup along a filter path in a combination: missing members are null. */
static const json_t *lookup(const json_t *v, const char *key)
{
    return json_is_object(v) ? json_get(v, key) : NULL;
}

static bool leaves_match(const struct token *filter, const json_t *value)
{
    switch (filter->type) {
    case TOKEN_MAPPING:
        for (size_t i = 0; i < filter->u.mapping.count; i++) {
            const struct token *key = filter->u.mapping.pairs[i].key;
            const json_t *member = key->type == TOKEN_STRING ? lookup(value, key->u.string) : NULL;
            if (!leaves_match(filter->u.mapping.pairs[i].value, member))
                return false;
        }
        return true;
    case TOKEN_SEQUENCE:
        for (size_t i = 0; i < filter->u.sequence.count; i++) {
            const json_t *item = json_is_array(value) ? json_array_get(value, i) : NULL;
            if (!leaves_match(filter->u.sequence.items[i], item))
                return false;
        }
        return true;
    default: {
        json_t *literal = token_value(filter);
        bool equal = matrix_values_equal(value, literal);
        json_decref(literal);
        return equal;
    }
    }
}

static bool is_vector_key(const json_t *vectors, const char *key)
{
    return json_get(vectors, key) != NULL;
}

static void filters_free(struct filters *f)
{
    for (size_t i = 0; i < f->count; i++) {
        json_decref(f->items[i].extra);
        if (f->items[i].owned)
            free((void *)f->items[i].mapping);
    }
    free(f->items);
}

/* A mapping token holding only the given pairs (shallow, freed with free()). */
static struct token *mapping_subset(const struct token *from, const json_t *vectors, bool in)
{
    struct token *m = xcalloc(1, sizeof(*m) + from->u.mapping.count * sizeof(struct token_pair));
    *m = *from;
    m->u.mapping.pairs = (struct token_pair *)(m + 1);
    m->u.mapping.count = 0;
    for (size_t i = 0; i < from->u.mapping.count; i++) {
        const struct token *key = from->u.mapping.pairs[i].key;
        if (is_vector_key(vectors, key->u.string) == in)
            m->u.mapping.pairs[m->u.mapping.count++] = from->u.mapping.pairs[i];
    }
    return m;
}

static void parse_includes(struct expansion *x, const struct token *seq, const json_t *vectors,
                           struct filters *out)
{
    if (!seq)
        return;
    out->items = xcalloc(seq->u.sequence.count + 1, sizeof(*out->items));
    for (size_t i = 0; i < seq->u.sequence.count; i++) {
        const struct token *item = seq->u.sequence.items[i];
        if (!expect(x, item, TOKEN_MAPPING, "matrix includes item"))
            return;
        for (size_t k = 0; k < item->u.mapping.count; k++)
            if (!expect(x, item->u.mapping.pairs[k].key, TOKEN_STRING, "matrix include item key"))
                return;
        if (item->u.mapping.count == 0) {
            report(x, item, "Matrix include mapping does not contain any values");
            continue;
        }
        struct filter *f = &out->items[out->count++];
        f->mapping = mapping_subset(item, vectors, true);
        f->owned = true;
        cleanup_free struct token *extras = mapping_subset(item, vectors, false);
        f->extra = token_value(extras);
    }
}

static void parse_excludes(struct expansion *x, const struct token *seq, const json_t *vectors,
                           struct filters *out)
{
    if (!seq)
        return;
    out->items = xcalloc(seq->u.sequence.count + 1, sizeof(*out->items));
    for (size_t i = 0; i < seq->u.sequence.count; i++) {
        const struct token *item = seq->u.sequence.items[i];
        if (!expect(x, item, TOKEN_MAPPING, "matrix excludes item"))
            return;
        if (item->u.mapping.count == 0) {
            report(x, item, "Matrix exclude filter must not be empty");
            continue;
        }
        for (size_t k = 0; k < item->u.mapping.count; k++) {
            const struct token *key = item->u.mapping.pairs[k].key;
            if (!expect(x, key, TOKEN_STRING, "matrix excludes item key"))
                return;
            if (!is_vector_key(vectors, key->u.string))
                report(x, key, "Matrix exclude key '%s' does not match any key within the matrix",
                       key->u.string);
        }
        /* The whole item is the filter: a key outside the matrix compares against null. */
        out->items[out->count++].mapping = item;
    }
}

struct builder {
    struct expansion *x;
    struct matrix *out;
    struct id_builder ids;
    size_t cap;
};

static void add_configuration(struct builder *b, json_t *matrix, const json_t *extra)
{
    struct buf names = BUF_INIT;
    size_t nnames = 0;
    collect_segments(matrix, &b->ids, &names, &nnames);
    const struct matrix_options *o = b->x->options;
    const char *id = id_builder_build(&b->ids, false,
                                      o->long_ids ? MATRIX_LONG_ID_LENGTH : MATRIX_SHORT_ID_LENGTH);
    if (extra)
        json_object_update(matrix, (json_t *)extra);
    if (b->out->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->out->items = xrealloc(b->out->items, b->cap * sizeof(*b->out->items));
    }
    struct matrix_configuration *c = &b->out->items[b->out->count++];
    c->id = xstrdup(id ? id : "job");
    c->name = build_name(o->job_name, buf_cstr(&names), nnames);
    c->matrix = matrix;
    c->strategy = NULL;
    buf_free(&names);
}

/* The i-th combination of the cross product: the first vector varies slowest. */
static json_t *combination(const json_t *vectors, size_t index, size_t product)
{
    json_t *matrix = json_object();
    size_t block = product;
    const char *name;
    json_t *vector;
    json_object_foreach((json_t *)vectors, name, vector)
    {
        size_t n = json_array_size(vector);
        block /= n;
        json_object_set(matrix, name, json_array_get(vector, (index / block) % n));
    }
    return matrix;
}

static bool excluded(const struct filters *excludes, const json_t *matrix)
{
    for (size_t i = 0; i < excludes->count; i++)
        if (excludes->items[i].mapping && leaves_match(excludes->items[i].mapping, matrix))
            return true;
    return false;
}

static json_t *included_extra(struct filters *includes, const json_t *matrix)
{
    json_t *extra = NULL;
    for (size_t i = 0; i < includes->count; i++) {
        struct filter *f = &includes->items[i];
        if (!leaves_match(f->mapping, matrix))
            continue;
        f->matched = true;
        if (!extra)
            extra = json_object();
        json_object_update(extra, f->extra);
    }
    return extra;
}

static size_t product_size(const json_t *vectors)
{
    if (json_object_size(vectors) == 0)
        return 0;
    size_t product = 1;
    const char *name;
    json_t *vector;
    json_object_foreach((json_t *)vectors, name, vector)
    {
        size_t n = json_array_size(vector);
        if (n && product > SIZE_MAX / n)
            return SIZE_MAX;
        product *= n;
    }
    return product;
}

static void build(struct expansion *x, const json_t *vectors, const struct token *include,
                  const struct token *exclude, const struct token *strategy, struct matrix *out)
{
    struct filters includes = {0}, excludes = {0};
    parse_includes(x, include, vectors, &includes);
    if (x->rc != -2)
        parse_excludes(x, exclude, vectors, &excludes);
    if (x->rc == -2 || x->options->validate_only)
        goto done;

    size_t limit =
        x->options->max_configurations ? x->options->max_configurations : MATRIX_MAX_CONFIGURATIONS;
    size_t product = product_size(vectors);
    size_t produced = 0;
    /* Count first, so an oversized matrix costs no configurations (beyond a million
     * combinations, the cross product alone is the count). */
    if (product > ((size_t)1 << 20))
        produced = product;
    for (size_t i = 0; i < product && product <= ((size_t)1 << 20); i++) {
        cleanup_json json_t *matrix = combination(vectors, i, product);
        if (excluded(&excludes, matrix))
            continue;
        produced++;
        json_decref(included_extra(&includes, matrix)); /* marks the includes that match */
    }
    for (size_t i = 0; i < includes.count; i++) {
        produced += !includes.items[i].matched;
        includes.items[i].matched = false;
    }
    if (produced > limit) {
        const char *job = x->options->job_id ? x->options->job_id : x->options->job_name;
        report(x, strategy,
               "Strategy for job '%s' produced %zu configurations which exceeds the maximum of "
               "%zu configurations",
               job ? job : "", produced, limit);
        goto done;
    }

    struct builder b = {.x = x, .out = out};
    id_builder_init(&b.ids);
    for (size_t i = 0; i < product; i++) {
        json_t *matrix = combination(vectors, i, product);
        if (excluded(&excludes, matrix)) {
            json_decref(matrix);
            continue;
        }
        cleanup_json json_t *extra = included_extra(&includes, matrix);
        add_configuration(&b, matrix, extra);
    }
    for (size_t i = 0; i < includes.count; i++) {
        struct filter *f = &includes.items[i];
        if (f->matched)
            continue;
        json_t *matrix = token_value(f->mapping);
        json_object_update(matrix, f->extra);
        add_configuration(&b, matrix, NULL);
    }
    id_builder_free(&b.ids);
done:
    filters_free(&includes);
    filters_free(&excludes);
}

/* The matrix mapping: vectors in order, and the include and exclude sequences. */
struct matrix_parts {
    json_t *vectors;
    const struct token *include, *exclude;
};

static void read_matrix(struct expansion *x, const struct token *matrix, bool *has_expressions,
                        struct matrix_parts *parts)
{
    bool validate = x->options->validate_only;
    bool has_vector = false, has_include = false;
    *has_expressions = *has_expressions || has_expression(matrix);
    for (size_t i = 0; i < matrix->u.mapping.count && x->rc != -2; i++) {
        const struct token *key = matrix->u.mapping.pairs[i].key;
        const struct token *value = matrix->u.mapping.pairs[i].value;
        if (validate && key->type == TOKEN_EXPRESSION) {
            has_vector = true;
            continue;
        }
        if (!expect(x, key, TOKEN_STRING, "matrix key"))
            return;
        if (strcmp(key->u.string, "include") == 0) {
            if (validate && has_expression(value)) {
                has_include = true;
                continue;
            }
            if (!expect(x, value, TOKEN_SEQUENCE, "matrix includes"))
                return;
            has_include = value->u.sequence.count > 0;
            parts->include = value;
        } else if (strcmp(key->u.string, "exclude") == 0) {
            if (validate && has_expression(value))
                continue;
            if (!expect(x, value, TOKEN_SEQUENCE, "matrix excludes"))
                return;
            parts->exclude = value;
        } else {
            has_vector = true;
            if (validate && has_expression(value))
                continue;
            if (!expect(x, value, TOKEN_SEQUENCE, "matrix vector value"))
                return;
            if (value->u.sequence.count == 0)
                report(x, value, "Matrix vector '%s' does not contain any values", key->u.string);
            else
                json_object_set_new(parts->vectors, key->u.string, token_value(value));
        }
    }
    if (x->rc != -2 && !has_vector && !has_include)
        report(x, matrix, "Matrix must define at least one vector");
}

static void add_strategy_contexts(struct matrix *out)
{
    for (size_t i = 0; i < out->count; i++) {
        size_t total = out->count;
        out->items[i].strategy =
            json_pack("{s:b, s:I, s:I, s:I}", "fail-fast", out->fail_fast, "job-index",
                      (json_int_t)i, "job-total", (json_int_t)total, "max-parallel",
                      (json_int_t)(out->max_parallel > 0 ? (size_t)out->max_parallel : total));
    }
}

static void single_configuration(struct matrix *out, const struct matrix_options *options)
{
    out->items = xcalloc(1, sizeof(*out->items));
    out->count = 1;
    out->items[0].name = options->job_name ? xstrdup(options->job_name) : NULL;
    add_strategy_contexts(out);
}

int matrix_expand(const struct token *strategy, const struct matrix_options *options,
                  struct matrix *out, matrix_report_fn *report_fn, void *data)
{
    struct expansion x = {.options = options, .report = report_fn, .data = data};
    bool validate = options->validate_only;
    memset(out, 0, sizeof(*out));
    out->fail_fast = true;
    if (!strategy) {
        if (!validate)
            single_configuration(out, options);
        return 0;
    }
    if (validate && strategy->type == TOKEN_EXPRESSION)
        return 0;
    if (!expect(&x, strategy, TOKEN_MAPPING, "strategy"))
        return x.rc;

    bool has_expressions = false;
    const struct token *matrix = NULL;
    struct matrix_parts parts = {.vectors = json_object()};
    for (size_t i = 0; i < strategy->u.mapping.count && x.rc != -2; i++) {
        const struct token *key = strategy->u.mapping.pairs[i].key;
        const struct token *value = strategy->u.mapping.pairs[i].value;
        if (validate && key->type == TOKEN_EXPRESSION) {
            has_expressions = true;
            continue;
        }
        if (!expect(&x, key, TOKEN_STRING, "strategy key"))
            break;
        if (validate && value->type == TOKEN_EXPRESSION) {
            has_expressions = true;
            continue;
        }
        if (strcmp(key->u.string, "fail-fast") == 0) {
            if (expect(&x, value, TOKEN_BOOLEAN, "strategy fail-fast"))
                out->fail_fast = value->u.boolean;
        } else if (strcmp(key->u.string, "max-parallel") == 0) {
            if (expect(&x, value, TOKEN_NUMBER, "strategy max-parallel"))
                out->max_parallel = (int)value->u.number;
        } else if (strcmp(key->u.string, "matrix") == 0) {
            if (!expect(&x, value, TOKEN_MAPPING, "matrix"))
                break;
            matrix = value;
            read_matrix(&x, value, &has_expressions, &parts);
        } else {
            cleanup_free char *message = xasprintf(
                "Error while reading 'strategy key'. Unexpected value '%s'", key->u.string);
            if (report_fn)
                report_fn(data, NULL, message);
            x.rc = -2;
        }
    }

    if (x.rc != -2 && !has_expressions && matrix) {
        out->has_matrix = true;
        build(&x, parts.vectors, parts.include, parts.exclude, strategy, out);
    }
    json_decref(parts.vectors);
    if (x.rc == -2 || validate) {
        int rc = x.rc;
        matrix_free(out);
        out->fail_fast = true;
        return rc;
    }
    if (!out->has_matrix)
        single_configuration(out, options);
    else
        add_strategy_contexts(out);
    return x.rc;
}

void matrix_free(struct matrix *m)
{
    for (size_t i = 0; i < m->count; i++) {
        free(m->items[i].id);
        free(m->items[i].name);
        json_decref(m->items[i].matrix);
        json_decref(m->items[i].strategy);
    }
    free(m->items);
    memset(m, 0, sizeof(*m));
}
