#include "workflow/schema.h"

#include "lib/buf.h"
#include "workflow/expr.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define OPEN_EXPRESSION "${{"
#define CLOSE_EXPRESSION "}}"

/* ---- tables ---------------------------------------------------------------------------- */

int schema_find(const struct schema *schema, const char *name)
{
    int lo = 0, hi = schema->count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(schema->definitions[mid].name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static const struct schema_definition *def_at(const struct schema_context *ctx, int index)
{
    return &ctx->schema->definitions[index];
}

/* ---- context -------------------------------------------------------------------------- */

void schema_context_init(struct schema_context *ctx, struct arena *arena,
                         const struct schema *schema)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->arena = arena;
    ctx->schema = schema;
}

void schema_context_free(struct schema_context *ctx)
{
    for (size_t i = 0; i < ctx->nfiles; i++)
        free(ctx->files[i]);
    free(ctx->files);
    for (size_t i = 0; i < ctx->nerrors; i++)
        free(ctx->errors[i].message);
    free(ctx->errors);
    ctx->files = NULL;
    ctx->errors = NULL;
    ctx->nfiles = ctx->nerrors = ctx->errors_cap = 0;
}

/* GitHub's TemplateMemory estimate (MinObjectSize 24, StringBaseOverhead 26, two bytes a
 * UTF-16 code unit). Past max_bytes the read stops with "Maximum object size exceeded",
 * reported once, at file (0: no prefix, as the exception GitHub's loader records). */
enum { MEMORY_MIN_OBJECT = 24, MEMORY_STRING_OVERHEAD = 26 };

static size_t string_bytes(const char *s)
{
    return MEMORY_STRING_OVERHEAD + 2 * yaml_reader_text_length(s, strlen(s));
}

static bool count_bytes(struct schema_context *ctx, size_t n, int file)
{
    ctx->bytes += n;
    if (ctx->bytes <= (ctx->max_bytes ? ctx->max_bytes : SCHEMA_MAX_BYTES))
        return true;
    if (!ctx->failed)
        schema_context_error(ctx, NULL, file, "Maximum object size exceeded");
    ctx->failed = true;
    return false;
}

int schema_context_add_file(struct schema_context *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->nfiles; i++)
        if (str_eq_nocase(ctx->files[i], name))
            return (int)i + 1;
    ctx->files = xrealloc(ctx->files, (ctx->nfiles + 1) * sizeof(*ctx->files));
    ctx->files[ctx->nfiles++] = xstrdup(name);
    /* GitHub's TemplateContext.GetFileId counts each new name against the result size. */
    count_bytes(ctx, string_bytes(name), 0);
    return (int)ctx->nfiles;
}

const char *schema_context_file_name(const struct schema_context *ctx, int file)
{
    if (file < 1 || (size_t)file > ctx->nfiles)
        return NULL;
    return ctx->files[file - 1];
}

static void context_push(struct schema_context *ctx, int file, int line, int col, const char *msg)
{
    size_t max = ctx->max_errors ? ctx->max_errors : SCHEMA_MAX_ERRORS;
    if (ctx->nerrors >= max)
        return;
    struct buf b = BUF_INIT;
    const char *name = schema_context_file_name(ctx, file);
    if (name && line && col)
        buf_printf(&b, "%s (Line: %d, Col: %d): ", name, line, col);
    else if (name)
        buf_printf(&b, "%s: ", name);
    else if (line && col)
        buf_printf(&b, "(Line: %d, Col: %d): ", line, col);
    buf_puts(&b, msg);
    size_t cut = ctx->max_message ? ctx->max_message : SCHEMA_MAX_MESSAGE;
    if (b.len > cut) {
        b.len = cut;
        b.data[cut] = '\0';
        buf_puts(&b, "[...]");
    }
    if (ctx->nerrors == ctx->errors_cap) {
        ctx->errors_cap = ctx->errors_cap ? ctx->errors_cap * 2 : 8;
        ctx->errors = xrealloc(ctx->errors, ctx->errors_cap * sizeof(*ctx->errors));
    }
    ctx->errors[ctx->nerrors++] =
        (struct schema_error){.message = buf_steal(&b), .file = file, .line = line, .col = col};
}

void schema_context_error(struct schema_context *ctx, const struct token *at, int file,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (at)
        context_push(ctx, at->file ? at->file : file, at->line, at->col, msg);
    else
        context_push(ctx, file, 0, 0, msg);
    free(msg);
}

void schema_context_add_error(struct schema_context *ctx, int file, const struct error *err)
{
    context_push(ctx, file, err->line, err->col, err->message);
}

bool schema_context_add_bytes(struct schema_context *ctx, const struct token *t)
{
    size_t n = MEMORY_MIN_OBJECT;
    if (t->type == TOKEN_STRING)
        n += string_bytes(t->u.string);
    else if (t->type == TOKEN_EXPRESSION)
        n += string_bytes(t->u.expression);
    return count_bytes(ctx, n, t->file);
}

int schema_context_check(const struct schema_context *ctx, struct error *err)
{
    if (ctx->nerrors == 0)
        return 0;
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < ctx->nerrors; i++) {
        if (i)
            buf_putc(&b, '\n');
        buf_puts(&b, ctx->errors[i].message);
    }
    const struct schema_error *first = &ctx->errors[0];
    int rc = error_set_at(err, EINVAL, schema_context_file_name(ctx, first->file), first->line,
                          first->col, "%s", b.data);
    buf_free(&b);
    return rc;
}

/* ---- allowed contexts ------------------------------------------------------------------ */

/* A NULL-terminated list; a definition with context of its own extends its parent's (names
 * compared ignoring case), as GitHub's DefinitionInfo. */
static const char **allowed_extend(struct schema_context *ctx, const char **parent,
                                   const struct schema_definition *def)
{
    if (!def->context)
        return parent;
    size_t n = 0, m = 0;
    while (parent && parent[n])
        n++;
    while (def->context[m])
        m++;
    const char **out = arena_alloc(ctx->arena, (n + m + 1) * sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        out[k++] = parent[i];
    for (size_t i = 0; i < m; i++) {
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = str_eq_nocase(out[j], def->context[i]);
        if (!seen)
            out[k++] = def->context[i];
    }
    out[k] = NULL;
    return out;
}

static bool allowed_any(const char **allowed)
{
    return allowed && allowed[0];
}

const char **schema_allowed_context(struct schema_context *ctx, const char *const *path,
                                    size_t npath)
{
    const char **allowed = NULL;
    for (size_t i = 0; i < npath; i++) {
        int d = schema_find(ctx->schema, path[i]);
        if (d >= 0)
            allowed = allowed_extend(ctx, allowed, def_at(ctx, d));
    }
    if (!allowed) {
        allowed = arena_alloc(ctx->arena, sizeof(*allowed));
        allowed[0] = NULL;
    }
    return allowed;
}

/* "name(min,max)" entries are functions, the rest named values (GitHub's regex:
 * ^([a-zA-Z0-9_]+)\(([0-9]+),([0-9]+|MAX)\)$). */
static bool parse_function(struct arena *arena, const char *item, struct expr_function *f)
{
    const char *paren = strchr(item, '(');
    if (!paren || paren == item)
        return false;
    for (const char *p = item; p < paren; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    const char *p = paren + 1;
    char *end;
    if (!isdigit((unsigned char)*p))
        return false;
    long min = strtol(p, &end, 10);
    if (*end != ',')
        return false;
    p = end + 1;
    long max;
    if (!strncmp(p, "MAX)", 4)) {
        max = 0x7fffffff;
        end = (char *)p + 3;
    } else {
        if (!isdigit((unsigned char)*p))
            return false;
        max = strtol(p, &end, 10);
    }
    if (strcmp(end, ")") != 0)
        return false;
    f->name = arena_strndup(arena, item, (size_t)(paren - item));
    f->min_args = (int)min;
    f->max_args = (int)max;
    f->call = NULL;
    return true;
}

static int check_expression(struct schema_context *ctx, const char *text,
                            const char *const *allowed, struct error *err)
{
    size_t n = 0;
    while (allowed && allowed[n])
        n++;
    const char **names = arena_alloc(ctx->arena, (n + 1) * sizeof(*names));
    struct expr_function *functions = arena_alloc(ctx->arena, (n + 1) * sizeof(*functions));
    size_t nn = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        if (parse_function(ctx->arena, allowed[i], &functions[nf]))
            nf++;
        else
            names[nn++] = allowed[i];
    }
    names[nn] = NULL;
    struct expr_parse_options options = {.named_values = names, .functions = functions};
    struct expr *e = NULL;
    enum expr_stage stage;
    if (expr_parse(text, &options, &e, &stage, err) < 0)
        return -1;
    expr_free(e);
    return 0;
}

int schema_check_expression(struct schema_context *ctx, const struct token *at,
                            const char *expression, const char *const *allowed)
{
    struct error err = {0};
    if (check_expression(ctx, expression, allowed, &err) < 0) {
        schema_context_error(ctx, at, 0, "%s", err.message);
        return -1;
    }
    return 0;
}

/* ---- definitions by kind ---------------------------------------------------------------- */

/* The definitions of one kind a definition accepts (itself, or its one-of's direct
 * members), in order; GitHub's GetDefinitionsOfType. */
static int defs_of_kind(const struct schema_context *ctx, int d, enum schema_kind kind, int *out,
                        int max)
{
    const struct schema_definition *def = def_at(ctx, d);
    int n = 0;
    if (def->kind == kind)
        out[n++] = d;
    else if (def->kind == SCHEMA_ONE_OF)
        for (int i = 0; i < def->none_of && n < max; i++)
            if (def_at(ctx, def->one_of[i])->kind == kind)
                out[n++] = def->one_of[i];
    return n;
}

static bool string_matches(const struct schema_definition *def, const char *value)
{
    if (def->constant && *def->constant)
        return def->ignore_case ? str_eq_nocase(def->constant, value)
                                : strcmp(def->constant, value) == 0;
    if (def->require_non_empty)
        return *value != '\0';
    return true;
}

/* Whether some scalar definition under d (one-of expanded recursively) matches t; when
 * strings_only, only string definitions are tried. */
static bool scalar_matches(const struct schema_context *ctx, int d, const struct token *t,
                           bool strings_only, int depth)
{
    const struct schema_definition *def = def_at(ctx, d);
    if (depth > 32)
        return false;
    switch (def->kind) {
    case SCHEMA_NULL:
        return !strings_only && t->type == TOKEN_NULL;
    case SCHEMA_BOOLEAN:
        return !strings_only && t->type == TOKEN_BOOLEAN;
    case SCHEMA_NUMBER:
        return !strings_only && t->type == TOKEN_NUMBER;
    case SCHEMA_STRING:
        return t->type == TOKEN_STRING && string_matches(def, t->u.string);
    case SCHEMA_ONE_OF:
        for (int i = 0; i < def->none_of; i++)
            if (scalar_matches(ctx, def->one_of[i], t, strings_only, depth + 1))
                return true;
        return false;
    default:
        return false;
    }
}

/* ---- the reader ------------------------------------------------------------------------- */

struct reader {
    struct schema_context *ctx;
    int file;
    int any;          /* the "any" definition */
    bool hit_partial; /* reached the mark where the YAML reader failed */
};

/* A NULL token is the mark a partial YAML read leaves where it failed: stop there, as
 * GitHub's reader stops at the exception. */
static bool stop_at_mark(struct reader *r, const struct token *t)
{
    if (t)
        return false;
    r->hit_partial = true;
    r->ctx->failed = true;
    return true;
}

/* Whether an unfinished collection of a partial read (the mark is its last item, or
 * inside its last item) is t. */
static bool contains_mark(const struct token *t)
{
    for (int depth = 0; t && depth < 1000; depth++) {
        if (t->type == TOKEN_SEQUENCE) {
            if (!t->u.sequence.count)
                return false;
            t = t->u.sequence.items[t->u.sequence.count - 1];
        } else if (t->type == TOKEN_MAPPING) {
            if (!t->u.mapping.count)
                return false;
            const struct token_pair *last = &t->u.mapping.pairs[t->u.mapping.count - 1];
            if (!last->key)
                return true;
            t = last->value;
        } else {
            return false;
        }
        if (!t)
            return true;
    }
    return false;
}

/* A value GitHub skips (after an error) is still read: stop if the failure is in it. */
static void skip_value(struct reader *r, const struct token *t)
{
    if (!t || contains_mark(t)) {
        r->hit_partial = true;
        r->ctx->failed = true;
    }
}

static struct token *read_value(struct reader *r, int d, const char **allowed,
                                const struct token *raw);

static struct token *new_at(struct reader *r, struct token *t, const struct token *pos)
{
    token_set_position(t, pos->file ? pos->file : r->file, pos->line, pos->col);
    (void)r;
    return t;
}

/* GitHub's IsExpressionString: an expression made of one string literal ('{{ x }}'),
 * written as a plain string. */
static const char *expression_string(struct arena *arena, const char *expr)
{
    struct buf b = BUF_INIT;
    bool in_string = false;
    for (size_t i = 0; expr[i]; i++) {
        char c = expr[i];
        if (c == '\'') {
            in_string = !in_string;
            if (in_string && i != 0)
                buf_putc(&b, c);
        } else if (!in_string) {
            buf_free(&b);
            return NULL;
        } else {
            buf_putc(&b, c);
        }
    }
    char *out = arena_strdup(arena, buf_cstr(&b));
    buf_free(&b);
    return out;
}

/* The length of the white-space character at p (.NET's Char.IsWhiteSpace, which GitHub's
 * Trim uses: ASCII space and controls, NEL, NBSP, the U+2000 block, line/paragraph
 * separators, …), or 0. */
static size_t space_at(const char *p, const char *end)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t n = (size_t)(end - p);
    if (n == 0)
        return 0;
    if (*u == ' ' || (*u >= '\t' && *u <= '\r'))
        return 1;
    if (n >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0))
        return 2;
    if (n >= 3 && u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80) /* U+1680 */
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x80 &&
        (u[2] <= 0x8A || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF)) /* U+2000-200A, 2028 */
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F) /* U+205F */
        return 3;
    if (n >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80) /* U+3000 */
        return 3;
    return 0;
}

/* The length of the white-space character that ends at end (see space_at), or 0. */
static size_t space_before(const char *start, const char *end)
{
    for (size_t k = 1; k <= 3 && k <= (size_t)(end - start); k++)
        if (space_at(end - k, end) == k)
            return k;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The text between ${{ and }} → an expression or insert token, or NULL with err set. */
static struct token *parse_expression(struct reader *r, const struct token *raw, const char *value,
                                      size_t len, const char **allowed, struct error *err)
{
    struct arena *arena = r->ctx->arena;
    size_t k;
    while ((k = space_at(value, value + len)) > 0) {
        value += k;
        len -= k;
    }
    while ((k = space_before(value, value + len)) > 0)
        len -= k;
    if (!len) {
        error_set(err, EINVAL, "An expression was expected");
        return NULL;
    }
    char *trimmed = arena_strndup(arena, value, len);
    /* The insert directive takes no parameters. */
    if (!strncmp(trimmed, "insert", 6) && (len == 6 || space_at(trimmed + 6, trimmed + len))) {
        int params = 0, parens = 0;
        bool in_string = false;
        size_t start = 6;
        for (size_t i = 6; i < len; i++) {
            char c = trimmed[i];
            if (is_space(c) && !in_string && parens == 0) {
                if (start < i)
                    params++;
                start = i + 1;
            } else if (c == '\'') {
                in_string = !in_string;
            } else if (c == '(' && !in_string) {
                parens++;
            } else if (c == ')' && !in_string) {
                parens--;
            }
        }
        if (start < len)
            params++;
        if (params != 0) {
            error_set(err, EINVAL,
                      "Exactly 0 parameter(s) were expected following the directive 'insert'. "
                      "Actual parameter count: %d",
                      params);
            return NULL;
        }
        return new_at(r, token_new_insert(arena), raw);
    }
    if (check_expression(r->ctx, trimmed, allowed, err) < 0)
        return NULL;
    struct token *t = token_new_expression(arena, trimmed);
    return new_at(r, t, raw);
}

struct segment {
    bool expression;
    struct token *token; /* expression, or NULL for text */
    struct buf text;
};

/* A string scalar → itself, an expression (exactly ${{ x }}), or format('…', …), as
 * GitHub's ParseScalar; on errors the string is returned unchanged (and they are recorded). */
static struct token *parse_scalar(struct reader *r, const struct token *raw, const char **allowed)
{
    struct arena *arena = r->ctx->arena;
    if (raw->type != TOKEN_STRING || !*raw->u.string || !strstr(raw->u.string, OPEN_EXPRESSION))
        return new_at(r, token_clone(arena, raw), raw);
    const char *s = raw->u.string;
    size_t len = strlen(s);
    struct segment *segs = NULL;
    size_t nsegs = 0, cap = 0;
    struct token *result = NULL;
    const char *start = strstr(s, OPEN_EXPRESSION);
    size_t i = 0;
    bool failed = false;
    while (i < len && !failed) {
        size_t start_expr = start ? (size_t)(start - s) : len;
        if (i == start_expr) {
            size_t end_expr = 0;
            bool found = false, in_string = false;
            for (i += 3; i < len; i++) {
                if (s[i] == '\'')
                    in_string = !in_string;
                else if (!in_string && s[i] == '}' && s[i - 1] == '}') {
                    end_expr = i;
                    found = true;
                    i++;
                    break;
                }
            }
            if (!found) {
                schema_context_error(r->ctx, raw, r->file,
                                     "The expression is not closed. An unescaped ${{ sequence "
                                     "was found, but the closing }} sequence was not found.");
                failed = true;
                break;
            }
            struct error err = {0};
            struct token *e = parse_expression(r, raw, s + start_expr + 3,
                                               end_expr - 1 - (start_expr + 3), allowed, &err);
            if (!e) {
                schema_context_error(r->ctx, raw, r->file, "%s", err.message);
                failed = true;
                break;
            }
            if (e->type == TOKEN_INSERT && (start_expr != 0 || i < len)) {
                schema_context_error(
                    r->ctx, raw, r->file,
                    "The directive 'insert' is not allowed in this context. Directives are not "
                    "supported for expressions that are embedded within a string. Directives are "
                    "only supported when the entire value is an expression.");
                failed = true;
                break;
            }
            if (nsegs == cap) {
                cap = cap ? cap * 2 : 4;
                segs = xrealloc(segs, cap * sizeof(*segs));
            }
            segs[nsegs++] = (struct segment){.expression = true, .token = e};
            start = strstr(s + i, OPEN_EXPRESSION);
        } else {
            size_t stop = start_expr < len ? start_expr : len;
            if (!nsegs || segs[nsegs - 1].expression) {
                if (nsegs == cap) {
                    cap = cap ? cap * 2 : 4;
                    segs = xrealloc(segs, cap * sizeof(*segs));
                }
                segs[nsegs++] = (struct segment){.expression = false};
                buf_init(&segs[nsegs - 1].text);
            }
            buf_append(&segs[nsegs - 1].text, s + i, stop - i);
            i = stop;
        }
    }
    if (!failed && nsegs == 1 && segs[0].expression && segs[0].token->type == TOKEN_EXPRESSION) {
        const char *lit = expression_string(arena, segs[0].token->u.expression);
        if (lit)
            result = new_at(r, token_new_string(arena, lit), raw);
        else
            result = segs[0].token;
    } else if (!failed && nsegs == 1 && segs[0].expression) {
        result = segs[0].token;
    } else if (!failed) {
        struct buf format = BUF_INIT, args = BUF_INIT;
        int argn = 0;
        buf_puts(&format, "format('");
        for (size_t k = 0; k < nsegs; k++) {
            if (!segs[k].expression) {
                for (const char *p = buf_cstr(&segs[k].text); *p; p++) {
                    if (*p == '\'')
                        buf_puts(&format, "''");
                    else if (*p == '{')
                        buf_puts(&format, "{{");
                    else if (*p == '}')
                        buf_puts(&format, "}}");
                    else
                        buf_putc(&format, *p);
                }
            } else {
                buf_printf(&format, "{%d}", argn++);
                buf_puts(&args, ", ");
                buf_puts(&args, segs[k].token->u.expression ? segs[k].token->u.expression : "");
            }
        }
        buf_puts(&format, "'");
        buf_puts(&format, buf_cstr(&args));
        buf_puts(&format, ")");
        struct error err = {0};
        if (check_expression(r->ctx, format.data, allowed, &err) < 0)
            schema_context_error(r->ctx, raw, r->file, "%s", err.message);
        else
            result = new_at(r, token_new_expression(arena, format.data), raw);
        buf_free(&format);
        buf_free(&args);
    }
    for (size_t k = 0; k < nsegs; k++)
        buf_free(&segs[k].text);
    free(segs);
    return result ? result : new_at(r, token_clone(arena, raw), raw);
}

/* Checks a scalar against the definition (GitHub's Validate); may replace it by its string
 * form when only a string definition matches. */
static struct token *validate(struct reader *r, struct token *scalar, int d, const char **allowed)
{
    struct arena *arena = r->ctx->arena;
    switch (scalar->type) {
    case TOKEN_STRING:
    case TOKEN_BOOLEAN:
    case TOKEN_NUMBER:
    case TOKEN_NULL: {
        if (scalar_matches(r->ctx, d, scalar, false, 0))
            return scalar;
        struct token *literal = scalar;
        if (scalar->type != TOKEN_STRING) {
            literal =
                new_at(r, token_new_string(arena, token_to_display_string(arena, scalar)), scalar);
            if (scalar_matches(r->ctx, d, literal, true, 0))
                return literal;
        }
        schema_context_error(r->ctx, literal, r->file, "Unexpected value '%s'", literal->u.string);
        return scalar;
    }
    case TOKEN_EXPRESSION:
        if (!allowed_any(allowed))
            schema_context_error(r->ctx, scalar, r->file,
                                 "A template expression is not allowed in this context");
        return scalar;
    default:
        schema_context_error(r->ctx, scalar, r->file, "Unexpected value '%s'",
                             token_to_display_string(arena, scalar));
        return scalar;
    }
}

static struct token *key_string(struct reader *r, struct token *key)
{
    if (key->type == TOKEN_STRING)
        return key;
    return new_at(r, token_new_string(r->ctx->arena, token_to_display_string(r->ctx->arena, key)),
                  key);
}

/* The keys of one mapping, compared ignoring case (GitHub's OrdinalIgnoreCase set); a hash
 * index once there are many, so a mapping with thousands of keys stays linear. */
struct seen_keys {
    const char **keys;
    size_t count, cap;
    size_t *index; /* slots hold position + 1; 0 = empty */
    size_t slots;
};

static size_t key_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

static void seen_reindex(struct seen_keys *seen)
{
    free(seen->index);
    seen->slots = 64;
    while (seen->slots < seen->count * 2)
        seen->slots *= 2;
    seen->index = xcalloc(seen->slots, sizeof(*seen->index));
    for (size_t i = 0; i < seen->count; i++) {
        size_t h = key_hash(seen->keys[i]) & (seen->slots - 1);
        while (seen->index[h])
            h = (h + 1) & (seen->slots - 1);
        seen->index[h] = i + 1;
    }
}

static bool seen_has(const struct seen_keys *seen, const char *key)
{
    if (!seen->index) {
        for (size_t i = 0; i < seen->count; i++)
            if (str_eq_nocase(seen->keys[i], key))
                return true;
        return false;
    }
    for (size_t h = key_hash(key) & (seen->slots - 1); seen->index[h];
         h = (h + 1) & (seen->slots - 1))
        if (str_eq_nocase(seen->keys[seen->index[h] - 1], key))
            return true;
    return false;
}

static bool seen_add(struct seen_keys *seen, const char *key)
{
    if (seen_has(seen, key))
        return false;
    if (seen->count == seen->cap) {
        seen->cap = seen->cap ? seen->cap * 2 : 16;
        seen->keys = xrealloc(seen->keys, seen->cap * sizeof(*seen->keys));
    }
    seen->keys[seen->count++] = key;
    if (seen->count > 16 && (!seen->index || seen->count * 2 > seen->slots))
        seen_reindex(seen);
    else if (seen->index) {
        size_t h = key_hash(key) & (seen->slots - 1);
        while (seen->index[h])
            h = (h + 1) & (seen->slots - 1);
        seen->index[h] = seen->count;
    }
    return true;
}

static void seen_free(struct seen_keys *seen)
{
    free(seen->keys);
    free(seen->index);
}

static bool is_background_property(const char *name, bool only)
{
    return (!only && !strcmp(name, "background")) || !strcmp(name, "wait") ||
           !strcmp(name, "wait-all") || !strcmp(name, "cancel");
}

static const struct schema_property *find_property(const struct schema_definition *def,
                                                   const char *name)
{
    for (int i = 0; i < def->nproperties; i++)
        if (!strcmp(def->properties[i].name, name))
            return &def->properties[i];
    return NULL;
}

/* GitHub's TryMatchKey: the property in any of the candidate mappings; the candidates
 * that lack it are dropped. */
static const struct schema_property *match_property(struct reader *r, int *defs, int *ndefs,
                                                    const char *name)
{
    const struct schema_property *found = NULL;
    bool missing = false;
    for (int i = 0; i < *ndefs; i++) {
        const struct schema_property *p = find_property(def_at(r->ctx, defs[i]), name);
        if (p)
            found = p;
        else
            missing = true;
    }
    if (found && missing) {
        int k = 0;
        for (int i = 0; i < *ndefs; i++)
            if (find_property(def_at(r->ctx, defs[i]), name))
                defs[k++] = defs[i];
        *ndefs = k;
    }
    return found;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void report_ambiguous(struct reader *r, const struct token *mapping, const int *defs,
                             int ndefs)
{
    /* Properties that only one candidate has, sorted: what would tell them apart. */
    const char **names = NULL;
    size_t n = 0, cap = 0;
    for (int i = 0; i < ndefs; i++) {
        const struct schema_definition *def = def_at(r->ctx, defs[i]);
        for (int p = 0; p < def->nproperties; p++) {
            const char *name = def->properties[p].name;
            int hits = 0;
            for (int j = 0; j < ndefs; j++)
                if (find_property(def_at(r->ctx, defs[j]), name))
                    hits++;
            if (hits != 1 || (!r->ctx->background_steps && is_background_property(name, true)))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                names = xrealloc(names, cap * sizeof(*names));
            }
            names[n++] = name;
        }
    }
    if (n)
        qsort(names, n, sizeof(*names), compare_names);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_puts(&b, ", ");
        buf_puts(&b, names[i]);
    }
    schema_context_error(r->ctx, mapping, r->file,
                         "There's not enough info to determine what you meant. Add one of these "
                         "properties: %s",
                         buf_cstr(&b));
    buf_free(&b);
    free(names);
}

static bool is_expression_token(const struct token *t)
{
    return t->type == TOKEN_EXPRESSION || t->type == TOKEN_INSERT;
}

static void read_mapping_known(struct reader *r, int d, const char **allowed, int *defs, int ndefs,
                               const struct token *raw, struct token *out)
{
    struct schema_context *ctx = r->ctx;
    const struct schema_definition *first = def_at(ctx, defs[0]);
    int loose_key = first->loose_key_type, loose_value = first->loose_value_type;
    const char **loose_key_allowed = NULL, **loose_value_allowed = NULL;
    struct seen_keys seen = {0};
    bool has_expression_key = false;

    for (size_t i = 0; i < raw->u.mapping.count && !ctx->failed; i++) {
        const struct token *raw_key = raw->u.mapping.pairs[i].key;
        const struct token *raw_value = raw->u.mapping.pairs[i].value;
        if (stop_at_mark(r, raw_key))
            break;
        struct token *key = parse_scalar(r, raw_key, allowed);
        if (is_expression_token(key)) {
            has_expression_key = true;
            if (allowed_any(allowed)) {
                if (!schema_context_add_bytes(ctx, key))
                    break;
                const char **any_allowed = allowed_extend(ctx, allowed, def_at(ctx, r->any));
                struct token *value = read_value(r, r->any, any_allowed, raw_value);
                if (value)
                    token_mapping_add(ctx->arena, out, key, value);
            } else {
                schema_context_error(ctx, key, r->file,
                                     "A template expression is not allowed in this context");
                skip_value(r, raw_value);
            }
            continue;
        }
        key = key_string(r, key);
        if (!seen_add(&seen, key->u.string)) {
            schema_context_error(ctx, key, r->file, "'%s' is already defined", key->u.string);
            skip_value(r, raw_value);
            continue;
        }
        const struct schema_property *prop = match_property(r, defs, &ndefs, key->u.string);
        if (prop) {
            if (!ctx->background_steps && is_background_property(key->u.string, false)) {
                schema_context_error(ctx, key, r->file, "Unexpected value '%s'", key->u.string);
                skip_value(r, raw_value);
                continue;
            }
            if (!schema_context_add_bytes(ctx, key))
                break;
            const char **value_allowed = allowed_extend(ctx, allowed, def_at(ctx, prop->type));
            struct token *value = read_value(r, prop->type, value_allowed, raw_value);
            if (value)
                token_mapping_add(ctx->arena, out, key, value);
            continue;
        }
        if (loose_key >= 0) {
            if (!loose_key_allowed) {
                loose_key_allowed = allowed_extend(ctx, allowed, def_at(ctx, loose_key));
                loose_value_allowed = allowed_extend(ctx, allowed, def_at(ctx, loose_value));
            }
            validate(r, key, loose_key, loose_key_allowed);
            if (!schema_context_add_bytes(ctx, key))
                break;
            struct token *value = read_value(r, loose_value, loose_value_allowed, raw_value);
            if (value)
                token_mapping_add(ctx->arena, out, key, value);
            continue;
        }
        schema_context_error(ctx, key, r->file, "Unexpected value '%s'", key->u.string);
        skip_value(r, raw_value);
    }
    if (!ctx->failed) {
        if (ndefs > 1) {
            report_ambiguous(r, out, defs, ndefs);
        } else if (ndefs == 1 && !has_expression_key) {
            const struct schema_definition *def = def_at(ctx, defs[0]);
            for (int p = 0; p < def->nproperties; p++)
                if (def->properties[p].required && !seen_has(&seen, def->properties[p].name))
                    schema_context_error(ctx, out, r->file, "Required property is missing: %s",
                                         def->properties[p].name);
        }
    }
    (void)d;
    seen_free(&seen);
}

static void read_mapping_loose(struct reader *r, const char **allowed, int key_def, int value_def,
                               const struct token *raw, struct token *out)
{
    struct schema_context *ctx = r->ctx;
    const char **key_allowed = allowed_extend(ctx, allowed, def_at(ctx, key_def));
    const char **value_allowed = allowed_extend(ctx, allowed, def_at(ctx, value_def));
    struct seen_keys seen = {0};
    for (size_t i = 0; i < raw->u.mapping.count && !ctx->failed; i++) {
        const struct token *raw_value = raw->u.mapping.pairs[i].value;
        if (stop_at_mark(r, raw->u.mapping.pairs[i].key))
            break;
        struct token *key = parse_scalar(r, raw->u.mapping.pairs[i].key, allowed);
        if (is_expression_token(key)) {
            if (allowed_any(allowed)) {
                if (!schema_context_add_bytes(ctx, key))
                    break;
                struct token *value = read_value(r, value_def, value_allowed, raw_value);
                if (value)
                    token_mapping_add(ctx->arena, out, key, value);
            } else {
                schema_context_error(ctx, key, r->file,
                                     "A template expression is not allowed in this context");
                skip_value(r, raw_value);
            }
            continue;
        }
        key = key_string(r, key);
        if (!seen_add(&seen, key->u.string)) {
            schema_context_error(ctx, key, r->file, "'%s' is already defined", key->u.string);
            skip_value(r, raw_value);
            continue;
        }
        validate(r, key, key_def, key_allowed);
        if (!schema_context_add_bytes(ctx, key))
            break;
        struct token *value = read_value(r, value_def, value_allowed, raw_value);
        if (value)
            token_mapping_add(ctx->arena, out, key, value);
    }
    seen_free(&seen);
}

enum { SCHEMA_MAX_CANDIDATES = 64 };

static struct token *read_value(struct reader *r, int d, const char **allowed,
                                const struct token *raw)
{
    struct schema_context *ctx = r->ctx;
    if (ctx->failed || stop_at_mark(r, raw))
        return NULL;
    if (token_is_scalar(raw)) {
        struct token *scalar = parse_scalar(r, raw, allowed);
        scalar = validate(r, scalar, d, allowed);
        if (!schema_context_add_bytes(ctx, scalar))
            return NULL;
        return scalar;
    }
    int defs[SCHEMA_MAX_CANDIDATES];
    if (raw->type == TOKEN_SEQUENCE) {
        struct token *seq = new_at(r, token_new_sequence(ctx->arena), raw);
        if (!schema_context_add_bytes(ctx, seq))
            return NULL;
        if (defs_of_kind(ctx, d, SCHEMA_SEQUENCE, defs, SCHEMA_MAX_CANDIDATES) > 0) {
            int item = def_at(ctx, defs[0])->item_type;
            const char **item_allowed = allowed_extend(ctx, allowed, def_at(ctx, item));
            for (size_t i = 0; i < raw->u.sequence.count && !ctx->failed; i++) {
                struct token *v = read_value(r, item, item_allowed, raw->u.sequence.items[i]);
                if (v)
                    token_sequence_add(ctx->arena, seq, v);
            }
        } else {
            schema_context_error(ctx, seq, r->file, "A sequence was not expected");
            skip_value(r, raw);
        }
        return ctx->failed ? NULL : seq;
    }
    struct token *map = new_at(r, token_new_mapping(ctx->arena), raw);
    if (!schema_context_add_bytes(ctx, map))
        return NULL;
    int n = defs_of_kind(ctx, d, SCHEMA_MAPPING, defs, SCHEMA_MAX_CANDIDATES);
    if (n == 0) {
        schema_context_error(ctx, map, r->file, "A mapping was not expected");
        skip_value(r, raw);
        return ctx->failed ? NULL : map;
    }
    const struct schema_definition *first = def_at(ctx, defs[0]);
    if (n > 1 || first->nproperties > 0 || first->loose_key_type < 0)
        read_mapping_known(r, d, allowed, defs, n, raw, map);
    else
        read_mapping_loose(r, allowed, first->loose_key_type, first->loose_value_type, raw, map);
    return ctx->failed ? NULL : map;
}

static struct token *read_root(struct schema_context *ctx, const char *type,
                               const struct token *raw, int file, bool *hit_partial)
{
    int d = schema_find(ctx->schema, type);
    if (d < 0) {
        schema_context_error(ctx, NULL, file, "Schema definition '%s' not found", type);
        return NULL;
    }
    if (!raw)
        return NULL;
    struct reader r = {.ctx = ctx, .file = file, .any = schema_find(ctx->schema, "any")};
    const char **allowed = allowed_extend(ctx, NULL, def_at(ctx, d));
    if (!allowed)
        allowed = schema_allowed_context(ctx, NULL, 0);
    struct token *t = read_value(&r, d, allowed, raw);
    if (hit_partial)
        *hit_partial = r.hit_partial;
    return t;
}

struct token *schema_read(struct schema_context *ctx, const char *type, const struct token *raw,
                          int file)
{
    return read_root(ctx, type, raw, file, NULL);
}

struct token *schema_read_file(struct schema_context *ctx, const char *root, const char *file_name,
                               const char *text, size_t len,
                               const struct yaml_reader_options *options)
{
    struct yaml_reader_options opts = options ? *options : (struct yaml_reader_options){0};
    opts.file_name = file_name;
    opts.file = schema_context_add_file(ctx, file_name);
    opts.partial = true;
    struct token *raw = NULL;
    struct error err = {0};
    if (yaml_reader_load(ctx->arena, text, len, &opts, &raw, &err) == 0)
        return schema_read(ctx, root, raw, opts.file);
    /* GitHub reads as it parses: what came before the failure is checked (and its errors
     * reported) first, then the failure; unless a limit stopped the read before it. */
    bool hit_partial = false;
    if (raw)
        read_root(ctx, root, raw, opts.file, &hit_partial);
    if (!ctx->failed || hit_partial)
        schema_context_add_error(ctx, opts.file, &err);
    ctx->failed = true;
    return NULL;
}

struct token *schema_read_workflow(struct schema_context *ctx, const char *file_name,
                                   const char *text, size_t len,
                                   const struct yaml_reader_options *options)
{
    return schema_read_file(ctx, "workflow-root", file_name, text, len, options);
}

struct token *schema_read_action(struct schema_context *ctx, const char *file_name,
                                 const char *text, size_t len,
                                 const struct yaml_reader_options *options)
{
    return schema_read_file(ctx, "action-root", file_name, text, len, options);
}

/* ---- if: ---------------------------------------------------------------------------------- */

static void note_status_function(void *data, const char *name)
{
    if (str_eq_nocase(name, "success") || str_eq_nocase(name, "failure") ||
        str_eq_nocase(name, "cancelled") || str_eq_nocase(name, "always"))
        *(bool *)data = true;
}

static void ignore_named_value(void *data, const char *name)
{
    (void)data;
    (void)name;
}

struct token *schema_if_condition(struct schema_context *ctx, const struct token *token,
                                  const char *definition)
{
    const char *path[] = {definition};
    const char **allowed = schema_allowed_context(ctx, path, 1);
    struct buf cond = BUF_INIT;
    if (token->type == TOKEN_EXPRESSION) {
        buf_puts(&cond, token->u.expression);
    } else if (token->type == TOKEN_STRING) {
        char *copy = xstrdup(token->u.string);
        buf_puts(&cond, str_trim(copy));
        free(copy);
    } else {
        schema_context_error(ctx, token, 0, "Unexpected value '%s'",
                             token_to_display_string(ctx->arena, token));
        return NULL;
    }
    char *final = NULL;
    if (cond.len == 0) {
        final = arena_strdup(ctx->arena, "success()");
    } else {
        bool has_status = false, parsed = false;
        {
            struct expr *e = NULL;
            enum expr_stage stage;
            struct error err = {0};
            size_t n = 0;
            while (allowed[n])
                n++;
            /* Parse with any name allowed: only the function calls matter here. */
            struct expr_parse_options any = {0};
            struct expr_function *functions = arena_alloc(ctx->arena, (n + 1) * sizeof(*functions));
            size_t nf = 0;
            for (size_t i = 0; i < n; i++)
                if (parse_function(ctx->arena, allowed[i], &functions[nf]))
                    nf++;
            any.functions = functions;
            if (expr_parse(cond.data, &any, &e, &stage, &err) == 0) {
                parsed = true;
                expr_walk_references(e, ignore_named_value, note_status_function, &has_status);
                expr_free(e);
            }
        }
        if (!parsed || has_status)
            final = arena_strdup(ctx->arena, cond.data);
        else
            final = arena_printf(ctx->arena, "success() && (%s)", cond.data);
    }
    buf_free(&cond);
    if (schema_check_expression(ctx, token, final, allowed) < 0)
        return NULL;
    struct token *t = token_new_expression(ctx->arena, final);
    token_set_position(t, token->file, token->line, token->col);
    return t;
}
