#include "workflow/yaml_reader.h"

#include "lib/buf.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_BOOL "tag:yaml.org,2002:bool"
#define TAG_FLOAT "tag:yaml.org,2002:float"
#define TAG_INT "tag:yaml.org,2002:int"
#define TAG_NULL "tag:yaml.org,2002:null"

/* An anchor: the tokens it names, and what replaying them costs (GitHub replays the
 * anchored events, so an alias counts its nodes and its depth again). */
struct anchor {
    char *name;
    struct token *token; /* NULL while the anchored collection is still open */
    size_t nodes;
    int depth;
};

struct frame {
    struct token *token;
    struct token *key; /* mapping: the key waiting for its value */
    char *anchor;      /* anchor to register when the collection closes */
    size_t nodes_at_start;
    int depth_below; /* deepest nesting seen inside, for anchors */
};

struct reader {
    struct arena *arena;
    const struct yaml_reader_options *options;
    struct error *err;
    const char *where;
    struct frame *stack;
    size_t depth, cap;
    struct anchor *anchors;
    size_t nanchors, anchors_cap;
    size_t *anchor_index; /* open addressing over anchors: position + 1, 0 = empty */
    size_t anchor_slots;
    size_t nodes;
    struct token *root;
    /* Character indexes (as libyaml's marks count them) of the characters beyond the BMP,
     * ascending; NULL when the text has none. */
    size_t *astral;
    size_t nastral;
};

size_t yaml_reader_text_length(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80)
            n += c >= 0xF0 ? 2 : 1; /* 4-byte sequences are surrogate pairs in UTF-16 */
    }
    return n;
}

/* libyaml counts a mark's column in characters; GitHub's reader (YamlDotNet over a .NET
 * string) in UTF-16 code units, where a character beyond the BMP (an emoji) is two. The
 * characters before the mark on its line are the `column` ones before its index, whatever
 * libyaml took for a line break; each astral one among them adds a unit. */
static void reader_index_astral(struct reader *r, const char *text, size_t len)
{
    size_t i = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* not counted */
    size_t chars = 0, cap = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) == 0x80)
            continue;
        if (c >= 0xF0) {
            if (r->nastral == cap) {
                cap = cap ? cap * 2 : 16;
                r->astral = xrealloc(r->astral, cap * sizeof(*r->astral));
            }
            r->astral[r->nastral++] = chars;
        }
        chars++;
    }
}

static size_t astral_before(const struct reader *r, size_t index)
{
    size_t lo = 0, hi = r->nastral;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->astral[mid] < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The 1-based column of a mark in UTF-16 code units. */
static int reader_column(const struct reader *r, const yaml_mark_t *mark)
{
    size_t col = mark->column;
    if (r->nastral && mark->index >= mark->column)
        col += astral_before(r, mark->index) - astral_before(r, mark->index - mark->column);
    return (int)col + 1;
}

static int reader_fail(struct reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int reader_fail(struct reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    error_set_at(r->err, EINVAL, r->where, 0, 0, "%s", msg);
    free(msg);
    return -1;
}

/* ---- YAML 1.2 core schema, as GitHub's reader applies it ------------------------------ */

static bool all_in(const char *s, const char *set)
{
    for (; *s; s++)
        if (!strchr(set, *s))
            return false;
    return true;
}

static bool match_null(const char *s)
{
    return !*s || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL") || !strcmp(s, "~");
}

static int match_boolean(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return 0;
    return -1;
}

/* 1 = matched (*out set), 0 = not a match, -1 = matched the pattern but out of range. */
static int match_integer(const char *s, double *out)
{
    static const char *const digits = "0123456789";
    if (!*s)
        return 0;
    if ((s[0] >= '0' && s[0] <= '9' && all_in(s + 1, digits)) ||
        ((s[0] == '-' || s[0] == '+') && s[1] && all_in(s + 1, digits))) {
        *out = strtod(s, NULL); /* huge values become +-Infinity, as .NET Core parses them */
        return 1;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o') && s[2]) {
        bool hex = s[1] == 'x';
        if (!all_in(s + 2, hex ? "0123456789abcdefABCDEF" : "01234567"))
            return 0;
        /* .NET parses these into a 32-bit integer: more bits is an error, the top bit makes
         * it negative. */
        const char *p = s + 2;
        while (*p == '0' && p[1])
            p++;
        if (strlen(p) > (hex ? 8u : 11u))
            return -1;
        unsigned long long v = strtoull(p, NULL, hex ? 16 : 8);
        if (v > 0xFFFFFFFFull)
            return -1;
        *out = (double)(int32_t)(uint32_t)v;
        return 1;
    }
    return 0;
}

static int match_float(const char *s, double *out)
{
    if (!*s)
        return 0;
    static const char *const inf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
    for (size_t i = 0; i < 6; i++)
        if (!strcmp(s, inf[i])) {
            *out = INFINITY;
            return 1;
        }
    if (!strcmp(s, "-.inf") || !strcmp(s, "-.Inf") || !strcmp(s, "-.INF")) {
        *out = -INFINITY;
        return 1;
    }
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
        *out = NAN;
        return 1;
    }
    /* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    size_t i = s[0] == '-' || s[0] == '+' ? 1 : 0;
    bool has_integer = false, has_dot = false, has_decimal = false;
    while (s[i] >= '0' && s[i] <= '9') {
        has_integer = true;
        i++;
    }
    if (s[i] == '.') {
        has_dot = true;
        i++;
    }
    while (s[i] >= '0' && s[i] <= '9') {
        has_decimal = true;
        i++;
    }
    if (!((has_dot && has_decimal) || has_integer))
        return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '-' || s[i] == '+')
            i++;
        bool has_exponent = false;
        while (s[i] >= '0' && s[i] <= '9') {
            has_exponent = true;
            i++;
        }
        if (!has_exponent)
            return 0;
    }
    if (s[i])
        return 0;
    *out = strtod(s, NULL);
    return 1;
}

static const char *style_name(yaml_scalar_style_t style)
{
    switch (style) {
    case YAML_PLAIN_SCALAR_STYLE:
        return "Plain";
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
        return "SingleQuoted";
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        return "DoubleQuoted";
    case YAML_LITERAL_SCALAR_STYLE:
        return "Literal";
    case YAML_FOLDED_SCALAR_STYLE:
        return "Folded";
    default:
        return "Any";
    }
}

static struct token *reader_scalar(struct reader *r, const yaml_event_t *ev)
{
    const char *value = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    int line = (int)ev->start_mark.line + 1, col = reader_column(r, &ev->start_mark);
    yaml_scalar_style_t style = ev->data.scalar.style;
    struct token *t = NULL;
    double n = 0;

    if (tag && *tag && strcmp(tag, TAG_STR) != 0) {
        if (style != YAML_PLAIN_SCALAR_STYLE) {
            reader_fail(r,
                        "The scalar style '%s' on line %d and column %d is not valid with the "
                        "tag '%s'",
                        style_name(style), line, col, tag);
            return NULL;
        }
        int m = 0;
        if (!strcmp(tag, TAG_BOOL)) {
            int b = match_boolean(value);
            if (b >= 0)
                t = token_new_boolean(r->arena, b);
        } else if (!strcmp(tag, TAG_FLOAT)) {
            if ((m = match_float(value, &n)) > 0)
                t = token_new_number(r->arena, n);
        } else if (!strcmp(tag, TAG_INT)) {
            if ((m = match_integer(value, &n)) > 0)
                t = token_new_number(r->arena, n);
        } else if (!strcmp(tag, TAG_NULL)) {
            if (match_null(value))
                t = token_new_null(r->arena);
        } else {
            reader_fail(r, "Unexpected tag '%s'", tag);
            return NULL;
        }
        if (!t) {
            reader_fail(r, "The value '%s' on line %d and column %d is invalid for the type '%s'",
                        value, line, col, tag);
            return NULL;
        }
    } else if (!tag && style == YAML_PLAIN_SCALAR_STYLE) {
        int b, m;
        if (match_null(value))
            t = token_new_null(r->arena);
        else if ((b = match_boolean(value)) >= 0)
            t = token_new_boolean(r->arena, b);
        else if ((m = match_integer(value, &n)) != 0 || (m = match_float(value, &n)) != 0) {
            if (m < 0) {
                reader_fail(r,
                            "The value '%s' on line %d and column %d is invalid for the type "
                            "'%s'",
                            value, line, col, TAG_INT);
                return NULL;
            }
            t = token_new_number(r->arena, n);
        } else
            t = token_new_string(r->arena, value);
    } else {
        t = token_new_string(r->arena, value);
    }
    token_set_position(t, r->options->file, line, col);
    return t;
}

/* ---- the tree ---------------------------------------------------------------------------- */

static size_t anchor_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct anchor *reader_anchor_find(struct reader *r, const char *name)
{
    if (!r->anchor_slots)
        return NULL;
    for (size_t h = anchor_hash(name) & (r->anchor_slots - 1); r->anchor_index[h];
         h = (h + 1) & (r->anchor_slots - 1))
        if (!strcmp(r->anchors[r->anchor_index[h] - 1].name, name))
            return &r->anchors[r->anchor_index[h] - 1];
    return NULL;
}

static void reader_anchor_index(struct reader *r, size_t position)
{
    size_t h = anchor_hash(r->anchors[position].name) & (r->anchor_slots - 1);
    while (r->anchor_index[h])
        h = (h + 1) & (r->anchor_slots - 1);
    r->anchor_index[h] = position + 1;
}

static int reader_anchor_begin(struct reader *r, const char *name)
{
    if (r->options->no_anchors)
        return reader_fail(r, "Anchors are not currently supported. Remove the anchor '%s'", name);
    struct anchor *a = reader_anchor_find(r, name);
    if (!a) {
        if (r->nanchors == r->anchors_cap) {
            r->anchors_cap = r->anchors_cap ? r->anchors_cap * 2 : 8;
            r->anchors = xrealloc(r->anchors, r->anchors_cap * sizeof(*r->anchors));
        }
        a = &r->anchors[r->nanchors++];
        a->name = arena_strdup(r->arena, name);
        if (r->nanchors * 2 > r->anchor_slots) {
            free(r->anchor_index);
            r->anchor_slots = r->anchor_slots ? r->anchor_slots * 2 : 16;
            r->anchor_index = xcalloc(r->anchor_slots, sizeof(*r->anchor_index));
            for (size_t i = 0; i < r->nanchors; i++)
                reader_anchor_index(r, i);
        } else {
            reader_anchor_index(r, r->nanchors - 1);
        }
    }
    a->token = NULL; /* a redefinition replaces the old one from here on, as in GitHub's */
    a->nodes = 0;
    a->depth = 0;
    return 0;
}

static void reader_anchor_end(struct reader *r, const char *name, struct token *t, size_t nodes,
                              int depth)
{
    struct anchor *a = reader_anchor_find(r, name);
    a->token = t;
    a->nodes = nodes;
    a->depth = depth;
}

static void reader_note_depth(struct reader *r, int below)
{
    /* Every open collection now has at least `below` + its distance levels inside it. */
    for (size_t i = r->depth; i-- > 0;) {
        int d = below + (int)(r->depth - i);
        if (r->stack[i].depth_below < d)
            r->stack[i].depth_below = d;
    }
}

static int reader_attach(struct reader *r, struct token *t)
{
    if (r->depth == 0) {
        r->root = t;
        return 0;
    }
    struct frame *f = &r->stack[r->depth - 1];
    if (f->token->type == TOKEN_SEQUENCE) {
        token_sequence_add(r->arena, f->token, t);
        return 0;
    }
    if (!f->key) {
        if (!token_is_scalar(t))
            return reader_fail(r, "Expected mapping end"); /* complex keys: GitHub's words */
        f->key = t;
        return 0;
    }
    token_mapping_add(r->arena, f->token, f->key, t);
    f->key = NULL;
    return 0;
}

static int reader_count(struct reader *r, size_t n)
{
    r->nodes += n;
    if (r->nodes > r->options->max_nodes)
        return reader_fail(r, "Maximum YAML nodes exceeded");
    return 0;
}

static int reader_event(struct reader *r, const yaml_event_t *ev, int *documents, bool *done)
{
    if (reader_count(r, 1) < 0)
        return -1;
    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_NO_EVENT:
        return 0;
    case YAML_DOCUMENT_START_EVENT:
        if (++*documents > 1)
            return reader_fail(r, "Expected stream end parse event");
        return 0;
    case YAML_DOCUMENT_END_EVENT:
        return 0;
    case YAML_STREAM_END_EVENT:
        if (*documents == 0)
            return reader_fail(r, "Expected document start parse event");
        *done = true;
        return 0;
    case YAML_SCALAR_EVENT: {
        const char *anchor = (const char *)ev->data.scalar.anchor;
        if (anchor && reader_anchor_begin(r, anchor) < 0)
            return -1;
        struct token *t = reader_scalar(r, ev);
        if (!t)
            return -1;
        if (anchor)
            reader_anchor_end(r, anchor, t, 1, 0);
        return reader_attach(r, t);
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        struct anchor *a = reader_anchor_find(r, name);
        if (!a)
            return reader_fail(r, "Unknown anchor '%s'", name);
        /* An alias inside its own anchor: GitHub replays it forever, until the depth limit. */
        if (!a->token || (int)r->depth + a->depth > r->options->max_depth)
            return reader_fail(r, "Maximum object depth exceeded");
        if (reader_count(r, a->nodes) < 0)
            return -1;
        reader_note_depth(r, a->depth);
        return reader_attach(r, a->token);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const char *anchor =
            (const char *)(seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor);
        if ((int)r->depth >= r->options->max_depth)
            return reader_fail(r, "Maximum object depth exceeded");
        if (anchor && reader_anchor_begin(r, anchor) < 0)
            return -1;
        struct token *t = seq ? token_new_sequence(r->arena) : token_new_mapping(r->arena);
        token_set_position(t, r->options->file, (int)ev->start_mark.line + 1,
                           reader_column(r, &ev->start_mark));
        if (r->depth == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 16;
            r->stack = xrealloc(r->stack, r->cap * sizeof(*r->stack));
        }
        r->stack[r->depth++] = (struct frame){
            .token = t,
            .anchor = anchor ? arena_strdup(r->arena, anchor) : NULL,
            .nodes_at_start = r->nodes,
        };
        reader_note_depth(r, 0);
        return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        struct frame f = r->stack[--r->depth];
        if (f.key)
            return reader_fail(r, "Expected mapping end");
        if (f.anchor)
            reader_anchor_end(r, f.anchor, f.token, r->nodes - f.nodes_at_start + 1, f.depth_below);
        return reader_attach(r, f.token);
    }
    }
    return 0;
}

/* After a failure: hangs the unfinished collections on their parents, with the NULL mark
 * where reading stopped (see yaml_reader_options.partial). */
static void reader_close_partial(struct reader *r)
{
    struct token *child = NULL; /* the mark, then each unfinished collection */
    for (size_t i = r->depth; i-- > 0;) {
        struct frame *f = &r->stack[i];
        if (f->token->type == TOKEN_SEQUENCE)
            token_sequence_add(r->arena, f->token, child);
        else
            token_mapping_add(r->arena, f->token, f->key, child);
        child = f->token;
    }
    if (r->depth)
        r->root = r->stack[0].token;
}

static int reader_syntax_error(struct reader *r, const yaml_parser_t *parser)
{
    const yaml_mark_t *mark = &parser->problem_mark;
    struct buf msg = BUF_INIT;
    if (parser->context) {
        buf_puts(&msg, parser->context);
        buf_puts(&msg, ", ");
    }
    buf_puts(&msg, parser->problem ? parser->problem : "invalid YAML");
    if (msg.data[0] >= 'a' && msg.data[0] <= 'z')
        msg.data[0] = (char)(msg.data[0] - 'a' + 'A');
    buf_putc(&msg, '.');
    error_set_at(r->err, EINVAL, r->where, (int)mark->line + 1, reader_column(r, mark), "%s",
                 msg.data);
    buf_free(&msg);
    return -1;
}

int yaml_reader_load(struct arena *arena, const char *text, size_t len,
                     const struct yaml_reader_options *options, struct token **out,
                     struct error *err)
{
    struct yaml_reader_options opts = options ? *options : (struct yaml_reader_options){0};
    if (opts.max_depth <= 0)
        opts.max_depth = YAML_READER_MAX_DEPTH;
    if (!opts.max_nodes)
        opts.max_nodes = YAML_READER_MAX_NODES;
    if (!opts.max_file_size)
        opts.max_file_size = YAML_READER_MAX_FILE_SIZE;
    struct reader r = {.arena = arena, .options = &opts, .err = err, .where = opts.file_name};
    *out = NULL;

    if (yaml_reader_text_length(text, len) > opts.max_file_size)
        return reader_fail(&r, "The maximum file size of %zu characters has been exceeded",
                           opts.max_file_size);

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return reader_fail(&r, "cannot initialise the YAML parser (out of memory)");
    reader_index_astral(&r, text, len);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0, documents = 0;
    bool done = false;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = reader_syntax_error(&r, &parser);
            break;
        }
        rc = reader_event(&r, &ev, &documents, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc < 0 && opts.partial)
        reader_close_partial(&r);
    free(r.stack);
    free(r.anchors);
    free(r.anchor_index);
    free(r.astral);
    if (rc < 0) {
        *out = opts.partial ? r.root : NULL;
        return rc;
    }
    *out = r.root;
    return 0;
}
