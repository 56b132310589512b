/* expr: GitHub Actions expressions. The lexer, parser and evaluator follow GitHub's two
 * implementations: actions/runner src/Sdk/Expressions (C#, what the runner and the service
 * run) and actions/languageservices expressions/src (TypeScript, whose x-lang test data is
 * the shared truth). Where they differ the C# behaviour wins; the error stages (lexing,
 * parsing, evaluation) are the ones the x-lang data names. */
#include "workflow/expr.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    EXPR_MAX_DEPTH = 50,                /* ExpressionConstants.MaxDepth */
    EXPR_MAX_LENGTH = 21000,            /* ExpressionConstants.MaxLength, UTF-16 units */
    EXPR_DEFAULT_MAX_MEMORY = 1048576,  /* EvaluationContext: 1 MB unless the caller says */
    MEMORY_MIN_OBJECT = 24,             /* MemoryCounter.MinObjectSize */
    MEMORY_STRING_OVERHEAD = 26,        /* MemoryCounter.StringBaseOverhead */
    MEMORY_POINTER = 8,                 /* IntPtr.Size */
    MEMORY_LEVELS = EXPR_MAX_DEPTH + 8, /* a tree is at most 50 deep */
    EXPR_MAX_NESTING = 250,             /* the parser's recursion guard */
    NUMBER_TEXT_MAX = 40,
};

/* ---------------------------------------------------------------------------------------
 * Text helpers: UTF-8 decoding, UTF-16 lengths (GitHub counts positions and sizes in UTF-16
 * code units), white space as .NET's Char.IsWhiteSpace, and OrdinalIgnoreCase.
 * ------------------------------------------------------------------------------------- */

/* Decodes one code point at s (n bytes left); sets *size. Invalid bytes decode as themselves. */
static uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *size)
{
    uint32_t c = s[0];
    size_t need = c < 0x80             ? 1
                  : (c & 0xE0) == 0xC0 ? 2
                  : (c & 0xF0) == 0xE0 ? 3
                  : (c & 0xF8) == 0xF0 ? 4
                                       : 1;
    if (need == 1 || need > n) {
        *size = 1;
        return c;
    }
    uint32_t cp = c & (0x7F >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *size = 1;
            return c;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *size = need;
    return cp;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* UTF-16 code units in s[0..n). */
static size_t utf16_length(const char *s, size_t n)
{
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            units += (c >= 0xF0) ? 2 : 1;
    }
    return units;
}

static bool is_white_space(uint32_t c)
{
    switch (c) {
    case ' ':
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

/* Simple upper-case mapping as ToUpperInvariant for the scripts workflows use: ASCII,
 * Latin-1, Latin Extended-A, Greek, Cyrillic and full-width Latin. */
static uint32_t unicode_upper(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') ? c - 32 : c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7)
        return c - 32;
    if (c == 0xFF)
        return 0x178;
    if (c == 0xB5)
        return 0x39C;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x17F)
            return 'S';
        if (c == 0x131)
            return c; /* the invariant culture keeps dotless i */
        bool odd_lower = (c <= 0x137 || (c >= 0x14A && c <= 0x177));
        if (odd_lower)
            return (c & 1) ? c - 1 : c;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
            return (c & 1) ? c : c - 1;
        return c;
    }
    if (c >= 0x3B1 && c <= 0x3C9)
        return c == 0x3C2 ? 0x3A3 : c - 32;
    if (c >= 0x3AC && c <= 0x3AF)
        return c == 0x3AC ? 0x386 : c - 37;
    if (c >= 0x430 && c <= 0x44F)
        return c - 32;
    if (c >= 0x450 && c <= 0x45F)
        return c - 80;
    if (c >= 0xFF41 && c <= 0xFF5A)
        return c - 32;
    return c;
}

static bool text_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* Upper-cases s into out (a new buffer the caller frees); *out_len is its length. */
static char *text_upper(const char *s, size_t n, size_t *out_len)
{
    char *out = xmalloc(n * 2 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t size;
        uint32_t c = utf8_decode((const unsigned char *)s + i, n - i, &size);
        if (c < 0x80 || size == 1) {
            out[o++] = (char)(c < 0x80 ? (char)unicode_upper(c) : s[i]);
        } else {
            o += utf8_encode(unicode_upper(c), out + o);
        }
        i += size;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* String.Compare(a, b, StringComparison.OrdinalIgnoreCase): both upper-cased, then ordinal. */
static int text_compare_nocase(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        unsigned char a0 = (unsigned char)a[i], b0 = (unsigned char)b[j];
        if (a0 < 0x80 && b0 < 0x80) { /* the common case, without decoding */
            uint32_t ua = unicode_upper(a0), ub = unicode_upper(b0);
            if (ua != ub)
                return ua < ub ? -1 : 1;
            i++, j++;
            continue;
        }
        size_t sa, sb;
        uint32_t ca = unicode_upper(utf8_decode((const unsigned char *)a + i, an - i, &sa));
        uint32_t cb = unicode_upper(utf8_decode((const unsigned char *)b + j, bn - j, &sb));
        if (ca != cb)
            return ca < cb ? -1 : 1;
        i += sa;
        j += sb;
    }
    if (i < an)
        return 1;
    return j < bn ? -1 : 0;
}

/* IndexOf / StartsWith / EndsWith with OrdinalIgnoreCase. */
enum text_match { MATCH_CONTAINS, MATCH_PREFIX, MATCH_SUFFIX };

static bool text_match_nocase(const char *s, size_t sn, const char *t, size_t tn,
                              enum text_match how)
{
    if (tn == 0)
        return true;
    if (text_is_ascii(s, sn) && text_is_ascii(t, tn)) {
        if (tn > sn)
            return false;
        if (how == MATCH_PREFIX)
            return strncasecmp(s, t, tn) == 0;
        if (how == MATCH_SUFFIX)
            return strncasecmp(s + sn - tn, t, tn) == 0;
        for (size_t i = 0; i + tn <= sn; i++)
            if (strncasecmp(s + i, t, tn) == 0)
                return true;
        return false;
    }
    size_t un, vn;
    cleanup_free char *u = text_upper(s, sn, &un);
    cleanup_free char *v = text_upper(t, tn, &vn);
    if (vn > un)
        return false;
    if (how == MATCH_PREFIX)
        return memcmp(u, v, vn) == 0;
    if (how == MATCH_SUFFIX)
        return memcmp(u + un - vn, v, vn) == 0;
    return memmem(u, un, v, vn) != NULL;
}

/* ---------------------------------------------------------------------------------------
 * Numbers: ExpressionUtility.ParseNumber and the "G15" format.
 * ------------------------------------------------------------------------------------- */

static bool parse_decimal(const char *s, size_t n, double *out)
{
    /* Double.TryParse with AllowLeadingSign | AllowDecimalPoint | AllowExponent. */
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, exp_digits++;
        if (exp_digits == 0)
            return false;
    }
    if (i != n)
        return false;
    char tmp[128];
    cleanup_free char *heap = NULL;
    char *text = tmp;
    if (n >= sizeof tmp)
        text = heap = xmalloc(n + 1);
    memcpy(text, s, n);
    text[n] = 0;
    *out = strtod(text, NULL);
    return true;
}

static bool parse_symbol(const char *s, size_t n, double *out)
{
    /* .NET Core parses the invariant culture's "Infinity", "-Infinity" and "NaN" too. */
    bool negative = false;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        s++, n--;
    }
    if (n == 8 && strncasecmp(s, "Infinity", 8) == 0) {
        *out = negative ? -INFINITY : INFINITY;
        return true;
    }
    if (n == 3 && strncasecmp(s, "NaN", 3) == 0) {
        *out = NAN;
        return true;
    }
    return false;
}

static double expr_number_parse(const char *s, size_t n)
{
    size_t start = 0, end = n;
    while (start < end) {
        size_t size;
        uint32_t c = utf8_decode((const unsigned char *)s + start, end - start, &size);
        if (!is_white_space(c))
            break;
        start += size;
    }
    while (end > start) {
        size_t back = 1;
        while (back < end - start && back < 4 && ((unsigned char)s[end - back] & 0xC0) == 0x80)
            back++;
        size_t size;
        uint32_t c = utf8_decode((const unsigned char *)s + end - back, back, &size);
        if (size != back || !is_white_space(c))
            break;
        end -= back;
    }
    s += start;
    n = end - start;
    double d;
    if (n == 0)
        return 0;
    if (parse_decimal(s, n, &d) || parse_symbol(s, n, &d))
        return d;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        bool hex = s[1] == 'x';
        uint64_t v = 0;
        for (size_t i = 2; i < n; i++) {
            int digit;
            char c = s[i];
            if (c >= '0' && c <= (hex ? '9' : '7'))
                digit = c - '0';
            else if (hex && c >= 'a' && c <= 'f')
                digit = c - 'a' + 10;
            else if (hex && c >= 'A' && c <= 'F')
                digit = c - 'A' + 10;
            else
                return NAN;
            v = v * (hex ? 16 : 8) + (uint64_t)digit;
            if (v > UINT32_MAX)
                return NAN; /* exceeds Int32's range */
        }
        /* Int32.TryParse(AllowHexSpecifier) and Convert.ToInt32(s, 8) read two's complement. */
        return (double)(int32_t)(uint32_t)v;
    }
    return NAN;
}

/* Double.ToString("G15", InvariantCulture); negative zero prints as "0" as ConvertToString
 * does, unless keep_negative_zero (FormatValue keeps "-0"). */
static const char *number_format(double d, char out[NUMBER_TEXT_MAX], bool keep_negative_zero)
{
    if (isnan(d))
        return "NaN";
    if (isinf(d))
        return d > 0 ? "Infinity" : "-Infinity";
    if (d == 0)
        return (signbit(d) && keep_negative_zero) ? "-0" : "0";
    snprintf(out, NUMBER_TEXT_MAX, "%.15G", d);
    return out;
}

/* ---------------------------------------------------------------------------------------
 * Tokens and the lexer.
 * ------------------------------------------------------------------------------------- */

enum token_type {
    TOKEN_LEFT_PAREN,
    TOKEN_RIGHT_PAREN,
    TOKEN_LEFT_BRACKET,
    TOKEN_RIGHT_BRACKET,
    TOKEN_COMMA,
    TOKEN_DOT,
    TOKEN_BANG,
    TOKEN_NOT_EQUAL,
    TOKEN_EQUAL,
    TOKEN_GREATER,
    TOKEN_GREATER_EQUAL,
    TOKEN_LESS,
    TOKEN_LESS_EQUAL,
    TOKEN_AND,
    TOKEN_OR,
    TOKEN_STAR,
    TOKEN_NUMBER,
    TOKEN_STRING,
    TOKEN_IDENTIFIER,
    TOKEN_TRUE,
    TOKEN_FALSE,
    TOKEN_NULL,
    TOKEN_EOF,
    TOKEN_ERROR, /* the lexer failed here; struct lexer.error says why */
};

struct token {
    enum token_type type;
    size_t start, len; /* the raw text: text[start .. start+len) */
    double number;
    char *string; /* unescaped, in the expression's arena */
    size_t string_len;
};

struct lexer {
    const char *text;
    size_t len, offset;
    struct token *tokens;
    size_t count, cap;
    struct arena *arena;
    struct error error; /* set with a TOKEN_ERROR */
};

/* "Located at position N" counts UTF-16 code units from 1, over the whole text (newlines
 * included), as the C# parser does. */
static int text_position(const char *text, size_t offset)
{
    return (int)utf16_length(text, offset) + 1;
}

static int syntax_error(struct error *err, const char *text, const char *what, const char *raw,
                        size_t raw_len, size_t offset)
{
    int pos = text_position(text, offset);
    int rc = error_set(err, -1, "%s: '%.*s'. Located at position %d within expression: %s", what,
                       (int)raw_len, raw, pos, text);
    if (err)
        err->col = pos;
    return rc;
}

static bool lexer_is_boundary(const struct lexer *lx, size_t at)
{
    char c = lx->text[at];
    switch (c) {
    case '(':
    case '[':
    case ')':
    case ']':
    case ',':
    case '.':
    case '!':
    case '>':
    case '<':
    case '=':
    case '&':
    case '|':
        return true;
    default: {
        if ((unsigned char)c < 0x80)
            return c == ' ' || (c >= '\t' && c <= '\r');
        size_t size;
        return is_white_space(
            utf8_decode((const unsigned char *)lx->text + at, lx->len - at, &size));
    }
    }
}

static size_t lexer_white_space(const struct lexer *lx, size_t at)
{
    if (at >= lx->len)
        return 0;
    char c0 = lx->text[at];
    if ((unsigned char)c0 < 0x80)
        return (c0 == ' ' || (c0 >= '\t' && c0 <= '\r')) ? 1 : 0;
    size_t size;
    uint32_t c = utf8_decode((const unsigned char *)lx->text + at, lx->len - at, &size);
    return is_white_space(c) ? size : 0;
}

static struct token *lexer_add(struct lexer *lx, enum token_type type, size_t start)
{
    if (lx->count == lx->cap) {
        lx->cap = lx->cap ? lx->cap * 2 : 16;
        lx->tokens = xrealloc(lx->tokens, lx->cap * sizeof *lx->tokens);
    }
    struct token *t = &lx->tokens[lx->count++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->start = start;
    t->len = lx->offset - start;
    return t;
}

static enum token_type lexer_previous(const struct lexer *lx)
{
    return lx->count ? lx->tokens[lx->count - 1].type : TOKEN_EOF;
}

static bool identifier_is_legal(const char *s, size_t n)
{
    if (n == 0)
        return false;
    char c = s[0];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int lexer_number(struct lexer *lx, size_t start, struct error *err)
{
    while (lx->offset < lx->len &&
           (!lexer_is_boundary(lx, lx->offset) || lx->text[lx->offset] == '.'))
        lx->offset++;
    double d = expr_number_parse(lx->text + start, lx->offset - start);
    if (isnan(d))
        return syntax_error(err, lx->text, "Unexpected symbol", lx->text + start,
                            lx->offset - start, start);
    lexer_add(lx, TOKEN_NUMBER, start)->number = d;
    return 0;
}

static int lexer_keyword(struct lexer *lx, size_t start, struct error *err)
{
    while (lx->offset < lx->len && !lexer_is_boundary(lx, lx->offset))
        lx->offset++;
    const char *s = lx->text + start;
    size_t n = lx->offset - start;
    if (!identifier_is_legal(s, n))
        return syntax_error(err, lx->text, "Unexpected symbol", s, n, start);
    enum token_type type = TOKEN_IDENTIFIER;
    double number = 0;
    if (lexer_previous(lx) != TOKEN_DOT) {
        if (n == 4 && memcmp(s, "true", 4) == 0)
            type = TOKEN_TRUE;
        else if (n == 5 && memcmp(s, "false", 5) == 0)
            type = TOKEN_FALSE;
        else if (n == 4 && memcmp(s, "null", 4) == 0)
            type = TOKEN_NULL;
        else if (n == 3 && memcmp(s, "NaN", 3) == 0)
            type = TOKEN_NUMBER, number = NAN;
        else if (n == 8 && memcmp(s, "Infinity", 8) == 0)
            type = TOKEN_NUMBER, number = INFINITY;
    }
    lexer_add(lx, type, start)->number = number;
    return 0;
}

static int lexer_string(struct lexer *lx, size_t start, struct error *err)
{
    struct buf value = BUF_INIT;
    bool closed = false;
    while (lx->offset < lx->len) {
        char c = lx->text[lx->offset++];
        if (c == '\'') {
            if (lx->offset >= lx->len || lx->text[lx->offset] != '\'') {
                closed = true;
                break;
            }
            lx->offset++; /* '' is an escaped quote */
        }
        buf_putc(&value, c);
    }
    if (!closed) {
        buf_free(&value);
        return syntax_error(err, lx->text, "Unexpected symbol", lx->text + start, lx->len - start,
                            start);
    }
    struct token *t = lexer_add(lx, TOKEN_STRING, start);
    t->string = arena_alloc(lx->arena, value.len + 1);
    if (value.len)
        memcpy(t->string, value.data, value.len);
    t->string_len = value.len;
    buf_free(&value);
    return 0;
}

/* An operator character that does not form an operator: read to the next boundary and
 * report the whole run ("=2" in "1 =2"). */
static int lexer_bad_operator(struct lexer *lx, size_t start, struct error *err)
{
    while (lx->offset < lx->len && !lexer_is_boundary(lx, lx->offset))
        lx->offset++;
    return syntax_error(err, lx->text, "Unexpected symbol", lx->text + start, lx->offset - start,
                        start);
}

static bool lexer_match(struct lexer *lx, char c)
{
    if (lx->offset < lx->len && lx->text[lx->offset] == c) {
        lx->offset++;
        return true;
    }
    return false;
}

static int lexer_one(struct lexer *lx, struct error *err)
{
    size_t start = lx->offset;
    char c = lx->text[lx->offset++];
    switch (c) {
    case '(':
        lexer_add(lx, TOKEN_LEFT_PAREN, start);
        return 0;
    case ')':
        lexer_add(lx, TOKEN_RIGHT_PAREN, start);
        return 0;
    case '[':
        lexer_add(lx, TOKEN_LEFT_BRACKET, start);
        return 0;
    case ']':
        lexer_add(lx, TOKEN_RIGHT_BRACKET, start);
        return 0;
    case ',':
        lexer_add(lx, TOKEN_COMMA, start);
        return 0;
    case '*':
        lexer_add(lx, TOKEN_STAR, start);
        return 0;
    case '!':
        lexer_add(lx, lexer_match(lx, '=') ? TOKEN_NOT_EQUAL : TOKEN_BANG, start);
        return 0;
    case '<':
        lexer_add(lx, lexer_match(lx, '=') ? TOKEN_LESS_EQUAL : TOKEN_LESS, start);
        return 0;
    case '>':
        lexer_add(lx, lexer_match(lx, '=') ? TOKEN_GREATER_EQUAL : TOKEN_GREATER, start);
        return 0;
    case '=':
        if (!lexer_match(lx, '='))
            return lexer_bad_operator(lx, start, err);
        lexer_add(lx, TOKEN_EQUAL, start);
        return 0;
    case '&':
        if (!lexer_match(lx, '&'))
            return lexer_bad_operator(lx, start, err);
        lexer_add(lx, TOKEN_AND, start);
        return 0;
    case '|':
        if (!lexer_match(lx, '|'))
            return lexer_bad_operator(lx, start, err);
        lexer_add(lx, TOKEN_OR, start);
        return 0;
    case '\'':
        return lexer_string(lx, start, err);
    case '.': {
        /* As the C# lexer: a number where an operand may start, else a dereference. */
        enum token_type prev = lexer_previous(lx);
        if (lx->count == 0 || prev == TOKEN_COMMA || prev == TOKEN_LEFT_PAREN ||
            prev == TOKEN_LEFT_BRACKET || (prev >= TOKEN_BANG && prev <= TOKEN_OR))
            return lexer_number(lx, start, err);
        lexer_add(lx, TOKEN_DOT, start);
        return 0;
    }
    default:
        if (c == '-' || c == '+' || (c >= '0' && c <= '9'))
            return lexer_number(lx, start, err);
        return lexer_keyword(lx, start, err);
    }
}

/* Reads the next token. As the C# parser, tokens are read as the parser asks for them, so
 * an earlier syntax error is reported before a later malformed token. */
static void lexer_next(struct lexer *lx)
{
    if (lx->count && lx->tokens[lx->count - 1].type >= TOKEN_EOF) {
        lexer_add(lx, lx->tokens[lx->count - 1].type, lx->offset); /* stays at the end */
        return;
    }
    for (;;) {
        size_t ws = lexer_white_space(lx, lx->offset);
        if (!ws)
            break;
        lx->offset += ws;
    }
    if (lx->offset >= lx->len) {
        lexer_add(lx, TOKEN_EOF, lx->len);
        return;
    }
    size_t start = lx->offset;
    if (lexer_one(lx, &lx->error) < 0)
        lexer_add(lx, TOKEN_ERROR, start);
}

/* ---------------------------------------------------------------------------------------
 * The tree.
 * ------------------------------------------------------------------------------------- */

enum node_kind {
    NODE_LITERAL,
    NODE_NAMED_VALUE,
    NODE_INDEX,
    NODE_WILDCARD,
    NODE_NOT,
    NODE_AND,
    NODE_OR,
    NODE_EQUAL,
    NODE_NOT_EQUAL,
    NODE_LESS,
    NODE_LESS_EQUAL,
    NODE_GREATER,
    NODE_GREATER_EQUAL,
    NODE_FUNCTION,
};

struct eval;
struct val;
struct node;

struct builtin {
    const char *name;
    int min_args, max_args;
    int (*call)(struct eval *ev, const struct node *n, int level, struct val *out);
};

struct node {
    enum node_kind kind;
    enum expr_kind literal_kind; /* NODE_LITERAL */
    bool boolean;
    double number;
    const char *string; /* literal string, named-value or function name (NUL-terminated) */
    size_t string_len;
    const struct builtin *builtin;    /* NODE_FUNCTION: a built-in, or */
    const struct expr_function *host; /* a host function */
    struct node **args;
    size_t nargs;
};

struct expr {
    struct arena arena;
    struct node *root; /* NULL for an empty expression */
    char *text;
};

static const struct builtin BUILTINS[];
static const size_t BUILTIN_COUNT;

/* ---------------------------------------------------------------------------------------
 * The parser: recursive descent in the shape of languageservices' parser (its depth
 * accounting bounds the recursion), producing the C# tree (And/Or flattened, no grouping
 * nodes), then C#'s tree-depth check.
 * ------------------------------------------------------------------------------------- */

struct parser {
    const char *text;
    struct lexer *lexer;
    size_t pos;
    bool lexing_failed;
    int depth;
    const struct expr_parse_options *options;
    struct arena *arena;
    struct error *err;
};

/* The token at pos; the pointer is valid until the next token is read. */
static const struct token *parser_peek(const struct parser *p)
{
    while (p->lexer->count <= p->pos)
        lexer_next(p->lexer);
    return &p->lexer->tokens[p->pos];
}

static const struct token *parser_previous(const struct parser *p)
{
    return &p->lexer->tokens[p->pos ? p->pos - 1 : 0];
}

static bool parser_at_end(const struct parser *p)
{
    return parser_peek(p)->type == TOKEN_EOF;
}

static bool parser_check(const struct parser *p, enum token_type type)
{
    return parser_peek(p)->type == type;
}

static bool parser_match(struct parser *p, enum token_type type)
{
    if (!parser_check(p, type) || type >= TOKEN_EOF)
        return false;
    p->pos++;
    return true;
}

static void *parser_fail_token(struct parser *p, const char *what, const struct token *t)
{
    syntax_error(p->err, p->text, what, p->text + t->start, t->len, t->start);
    return NULL;
}

/* An unexpected token; at the end of the text, "Unexpected end of expression" naming the
 * last token, as the C# parser reports it. */
static void *parser_fail(struct parser *p)
{
    if (parser_check(p, TOKEN_ERROR)) {
        if (p->err)
            *p->err = p->lexer->error;
        p->lexing_failed = true;
        return NULL;
    }
    if (parser_at_end(p))
        return parser_fail_token(p, "Unexpected end of expression", parser_previous(p));
    return parser_fail_token(p, "Unexpected symbol", parser_peek(p));
}

/* A guard on the parser's recursion (groups, arguments, indexes, "!"), so that no text can
 * exhaust the stack. The limit GitHub states is on the tree (tree_depth_ok below); parentheses
 * make no node there, so this guard is looser than it, and only refuses absurd nesting. */
static bool parser_depth_up(struct parser *p)
{
    if (++p->depth > EXPR_MAX_NESTING) {
        error_set(p->err, -1, "Exceeded max expression depth %d", EXPR_MAX_DEPTH);
        return false;
    }
    return true;
}

static struct node *node_new(struct parser *p, enum node_kind kind)
{
    struct node *n = arena_alloc(p->arena, sizeof *n);
    n->kind = kind;
    return n;
}

struct node_list {
    struct node **items;
    size_t count, cap;
};

static void node_list_push(struct node_list *l, struct node *n)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->items = xrealloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->count++] = n;
}

static void node_set_args(struct parser *p, struct node *n, struct node_list *l)
{
    n->nargs = l->count;
    if (l->count) {
        n->args = arena_alloc(p->arena, l->count * sizeof *n->args);
        memcpy(n->args, l->items, l->count * sizeof *n->args);
    }
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

static struct node *node_binary(struct parser *p, enum node_kind kind, struct node *left,
                                struct node *right)
{
    struct node *n = node_new(p, kind);
    n->args = arena_alloc(p->arena, 2 * sizeof *n->args);
    n->args[0] = left;
    n->args[1] = right;
    n->nargs = 2;
    return n;
}

/* Adds an operand to an And/Or, flattening a nested one of the same kind as C# does. */
static void logical_push(struct node_list *l, enum node_kind kind, struct node *operand)
{
    if (operand->kind == kind) {
        for (size_t i = 0; i < operand->nargs; i++)
            node_list_push(l, operand->args[i]);
        return;
    }
    node_list_push(l, operand);
}

static struct node *parse_expression(struct parser *p);

static struct node *parse_literal(struct parser *p, const struct token *t)
{
    struct node *n = node_new(p, NODE_LITERAL);
    switch (t->type) {
    case TOKEN_TRUE:
        n->literal_kind = EXPR_BOOLEAN, n->boolean = true;
        break;
    case TOKEN_FALSE:
        n->literal_kind = EXPR_BOOLEAN;
        break;
    case TOKEN_NULL:
        n->literal_kind = EXPR_NULL;
        break;
    case TOKEN_NUMBER:
        n->literal_kind = EXPR_NUMBER, n->number = t->number;
        break;
    default:
        n->literal_kind = EXPR_STRING;
        n->string = t->string;
        n->string_len = t->string_len;
        break;
    }
    return n;
}

static struct node *parse_primary(struct parser *p, bool *postfix)
{
    struct token t = *parser_peek(p);
    switch (t.type) {
    case TOKEN_TRUE:
    case TOKEN_FALSE:
    case TOKEN_NULL:
    case TOKEN_NUMBER:
    case TOKEN_STRING:
        p->pos++;
        return parse_literal(p, &t);
    case TOKEN_LEFT_PAREN: {
        p->pos++;
        struct node *inner = parse_expression(p);
        if (!inner)
            return NULL;
        if (!parser_match(p, TOKEN_RIGHT_PAREN))
            return parser_fail(p);
        *postfix = true;
        return inner;
    }
    default:
        return parser_fail(p);
    }
}

static bool name_in_list(const char *const *list, const char *name, size_t n)
{
    for (; *list; list++)
        if (strlen(*list) == n && strncasecmp(*list, name, n) == 0)
            return true;
    return false;
}

static void function_lookup(const struct expr_parse_options *options, const char *name, size_t n,
                            const struct builtin **builtin, const struct expr_function **host)
{
    *builtin = NULL;
    *host = NULL;
    for (size_t i = 0; i < BUILTIN_COUNT; i++) {
        if (strlen(BUILTINS[i].name) == n && strncasecmp(BUILTINS[i].name, name, n) == 0) {
            *builtin = &BUILTINS[i];
            return;
        }
    }
    if (options && options->functions) {
        for (const struct expr_function *f = options->functions; f->name; f++) {
            if (strlen(f->name) == n && strncasecmp(f->name, name, n) == 0) {
                *host = f;
                return;
            }
        }
    }
}

static struct node *parse_function(struct parser *p, const struct token *ident)
{
    struct node *n = node_new(p, NODE_FUNCTION);
    n->string = arena_strndup(p->arena, p->text + ident->start, ident->len);
    n->string_len = ident->len;
    function_lookup(p->options, n->string, ident->len, &n->builtin, &n->host);
    if (!n->builtin && !n->host)
        return parser_fail_token(p, "Unrecognized function", ident);

    struct node_list args = {0};
    if (!parser_match(p, TOKEN_RIGHT_PAREN)) {
        for (;;) {
            struct node *arg = parse_expression(p);
            if (!arg) {
                free(args.items);
                return NULL;
            }
            node_list_push(&args, arg);
            if (parser_match(p, TOKEN_RIGHT_PAREN))
                break;
            if (!parser_match(p, TOKEN_COMMA)) {
                free(args.items);
                return parser_fail(p);
            }
        }
    }
    node_set_args(p, n, &args);

    int min = n->builtin ? n->builtin->min_args : n->host->min_args;
    int max = n->builtin ? n->builtin->max_args : n->host->max_args;
    if ((int)n->nargs < min)
        return parser_fail_token(p, "Too few parameters supplied", ident);
    if (max >= 0 && (int)n->nargs > max)
        return parser_fail_token(p, "Too many parameters supplied", ident);
    if (n->builtin && strcmp(n->builtin->name, "case") == 0 && n->nargs % 2 == 0)
        return parser_fail_token(
            p, "Even number of parameters supplied, requires an odd number of parameters", ident);
    return n;
}

static struct node *parse_call(struct parser *p, bool *postfix)
{
    if (!parser_check(p, TOKEN_IDENTIFIER))
        return parse_primary(p, postfix);
    struct token ident = *parser_peek(p);
    p->pos++;
    *postfix = true;
    if (parser_match(p, TOKEN_LEFT_PAREN))
        return parse_function(p, &ident);
    const char *name = p->text + ident.start;
    if (p->options && p->options->named_values &&
        !name_in_list(p->options->named_values, name, ident.len))
        return parser_fail_token(p, "Unrecognized named-value", &ident);
    struct node *n = node_new(p, NODE_NAMED_VALUE);
    n->string = arena_strndup(p->arena, name, ident.len);
    n->string_len = ident.len;
    return n;
}

static struct node *parse_index(struct parser *p)
{
    bool postfix = false;
    struct node *expr = parse_call(p, &postfix);
    if (!expr || !postfix)
        return expr;
    for (;;) {
        struct node *index;
        if (parser_match(p, TOKEN_LEFT_BRACKET)) {
            if (parser_match(p, TOKEN_STAR)) {
                index = node_new(p, NODE_WILDCARD);
            } else {
                index = parse_expression(p);
                if (!index)
                    return NULL;
            }
            if (!parser_match(p, TOKEN_RIGHT_BRACKET))
                return parser_fail(p);
        } else if (parser_match(p, TOKEN_DOT)) {
            struct token t = *parser_peek(p);
            if (parser_match(p, TOKEN_IDENTIFIER)) {
                index = node_new(p, NODE_LITERAL);
                index->literal_kind = EXPR_STRING;
                index->string = arena_strndup(p->arena, p->text + t.start, t.len);
                index->string_len = t.len;
            } else if (parser_match(p, TOKEN_STAR)) {
                index = node_new(p, NODE_WILDCARD);
            } else {
                return parser_fail(p);
            }
        } else {
            break;
        }
        expr = node_binary(p, NODE_INDEX, expr, index);
    }
    return expr;
}

static struct node *parse_unary(struct parser *p)
{
    if (!parser_match(p, TOKEN_BANG))
        return parse_index(p);
    if (!parser_depth_up(p))
        return NULL;
    struct node *operand = parse_unary(p);
    if (!operand)
        return NULL;
    p->depth--;
    struct node *n = node_new(p, NODE_NOT);
    n->args = arena_alloc(p->arena, sizeof *n->args);
    n->args[0] = operand;
    n->nargs = 1;
    return n;
}

static struct node *parse_comparison(struct parser *p)
{
    struct node *left = parse_unary(p);
    while (left) {
        enum node_kind kind;
        if (parser_match(p, TOKEN_GREATER))
            kind = NODE_GREATER;
        else if (parser_match(p, TOKEN_GREATER_EQUAL))
            kind = NODE_GREATER_EQUAL;
        else if (parser_match(p, TOKEN_LESS))
            kind = NODE_LESS;
        else if (parser_match(p, TOKEN_LESS_EQUAL))
            kind = NODE_LESS_EQUAL;
        else
            break;
        struct node *right = parse_unary(p);
        if (!right)
            return NULL;
        left = node_binary(p, kind, left, right);
    }
    return left;
}

static struct node *parse_equality(struct parser *p)
{
    struct node *left = parse_comparison(p);
    while (left) {
        enum node_kind kind;
        if (parser_match(p, TOKEN_EQUAL))
            kind = NODE_EQUAL;
        else if (parser_match(p, TOKEN_NOT_EQUAL))
            kind = NODE_NOT_EQUAL;
        else
            break;
        struct node *right = parse_comparison(p);
        if (!right)
            return NULL;
        left = node_binary(p, kind, left, right);
    }
    return left;
}

static struct node *parse_logical(struct parser *p, enum token_type op, enum node_kind kind,
                                  struct node *(*operand)(struct parser *))
{
    struct node *first = operand(p);
    if (!first || !parser_check(p, op))
        return first;
    struct node_list args = {0};
    logical_push(&args, kind, first);
    while (parser_match(p, op)) {
        struct node *next = operand(p);
        if (!next) {
            free(args.items);
            return NULL;
        }
        logical_push(&args, kind, next);
    }
    struct node *n = node_new(p, kind);
    node_set_args(p, n, &args);
    return n;
}

static struct node *parse_and(struct parser *p)
{
    return parse_logical(p, TOKEN_AND, NODE_AND, parse_equality);
}

static struct node *parse_expression(struct parser *p)
{
    if (!parser_depth_up(p))
        return NULL;
    struct node *n = parse_logical(p, TOKEN_OR, NODE_OR, parse_and);
    if (n)
        p->depth--;
    return n;
}

/* ExpressionParser.CheckMaxDepth: the root is depth 1. */
static bool tree_depth_ok(const struct node *n, int depth)
{
    if (depth > EXPR_MAX_DEPTH)
        return false;
    for (size_t i = 0; i < n->nargs; i++)
        if (!tree_depth_ok(n->args[i], depth + 1))
            return false;
    return true;
}

int expr_parse(const char *text, const struct expr_parse_options *options, struct expr **out,
               enum expr_stage *stage, struct error *err)
{
    enum expr_stage dummy;
    if (!stage)
        stage = &dummy;
    *out = NULL;
    *stage = EXPR_STAGE_NONE;
    if (!text)
        text = "";
    size_t len = strlen(text);
    if (utf16_length(text, len) > EXPR_MAX_LENGTH) {
        *stage = EXPR_STAGE_LEXING;
        return error_set(err, -1, "Exceeded max expression length %d", EXPR_MAX_LENGTH);
    }

    struct expr *e = xcalloc(1, sizeof *e);
    arena_init(&e->arena, 448 + len * 2); /* small: below glibc's large-bin requests */
    e->text = arena_strndup(&e->arena, text, len);

    struct lexer lx = {.text = e->text, .len = len, .arena = &e->arena};
    struct parser p = {
        .text = e->text, .lexer = &lx, .options = options, .arena = &e->arena, .err = err};
    if (!parser_at_end(&p)) {
        e->root = parse_expression(&p);
        if (e->root && !parser_at_end(&p))
            e->root = parser_fail(&p);
        if (e->root && !tree_depth_ok(e->root, 1)) {
            error_set(err, -1, "Exceeded max expression depth %d", EXPR_MAX_DEPTH);
            e->root = NULL;
        }
        if (!e->root) {
            free(lx.tokens);
            expr_free(e);
            *stage = p.lexing_failed ? EXPR_STAGE_LEXING : EXPR_STAGE_PARSING;
            return -1;
        }
    }
    free(lx.tokens);
    *out = e;
    return 0;
}

void expr_free(struct expr *e)
{
    if (!e)
        return;
    arena_free(&e->arena);
    free(e);
}

static void walk(const struct node *n, void (*named_value)(void *, const char *),
                 void (*function)(void *, const char *), void *data)
{
    if (n->kind == NODE_NAMED_VALUE && named_value)
        named_value(data, n->string);
    if (n->kind == NODE_FUNCTION && function)
        function(data, n->string);
    for (size_t i = 0; i < n->nargs; i++)
        walk(n->args[i], named_value, function, data);
}

void expr_walk_references(const struct expr *e, void (*named_value)(void *, const char *),
                          void (*function)(void *, const char *), void *data)
{
    if (e && e->root)
        walk(e->root, named_value, function, data);
}

/* ---------------------------------------------------------------------------------------
 * Values during evaluation.
 * ------------------------------------------------------------------------------------- */

struct val {
    enum expr_kind kind;
    bool boolean;
    double number;
    const char *str; /* EXPR_STRING: the bytes (owned, literal, or inside json) */
    size_t len;
    char *owned;   /* str, when this value owns it */
    json_t *json;  /* a reference: the array or object, or the JSON value behind a primitive */
    bool raw;      /* a primitive read from JSON data (C#'s raw value), for memory accounting */
    bool filtered; /* an array a filter (.*) built: indexing applies to each element */
};

static void val_clear(struct val *v)
{
    free(v->owned);
    json_decref(v->json);
    memset(v, 0, sizeof *v);
}

static void val_move(struct val *to, struct val *from)
{
    *to = *from;
    memset(from, 0, sizeof *from);
}

/* A value for JSON data (borrowed j; a reference is taken). */
static void val_from_json(struct val *v, json_t *j)
{
    memset(v, 0, sizeof *v);
    v->raw = true;
    switch (json_typeof(j)) {
    case JSON_TRUE:
        v->kind = EXPR_BOOLEAN, v->boolean = true;
        break;
    case JSON_FALSE:
        v->kind = EXPR_BOOLEAN;
        break;
    case JSON_INTEGER:
        v->kind = EXPR_NUMBER, v->number = (double)json_integer_value(j);
        break;
    case JSON_REAL:
        v->kind = EXPR_NUMBER, v->number = json_real_value(j);
        break;
    case JSON_STRING:
        v->kind = EXPR_STRING;
        v->str = json_string_value(j);
        v->len = json_string_length(j);
        v->json = json_incref(j);
        break;
    case JSON_ARRAY:
        v->kind = EXPR_ARRAY, v->json = json_incref(j), v->raw = false;
        break;
    case JSON_OBJECT:
        v->kind = EXPR_OBJECT, v->json = json_incref(j), v->raw = false;
        break;
    default:
        v->kind = EXPR_NULL;
        break;
    }
}

static void val_string_take(struct val *v, char *s, size_t len)
{
    memset(v, 0, sizeof *v);
    v->kind = EXPR_STRING;
    v->str = v->owned = s;
    v->len = len;
}

static void val_boolean(struct val *v, bool b)
{
    memset(v, 0, sizeof *v);
    v->kind = EXPR_BOOLEAN;
    v->boolean = b;
}

static bool val_is_primitive(const struct val *v)
{
    return v->kind <= EXPR_STRING;
}

static bool val_is_falsy(const struct val *v)
{
    switch (v->kind) {
    case EXPR_NULL:
        return true;
    case EXPR_BOOLEAN:
        return !v->boolean;
    case EXPR_NUMBER:
        return v->number == 0 || isnan(v->number);
    case EXPR_STRING:
        return v->len == 0;
    default:
        return false;
    }
}

/* EvaluationResult.ConvertToString, without copying strings. tmp holds a formatted number. */
static const char *val_text(const struct val *v, char tmp[NUMBER_TEXT_MAX], size_t *len)
{
    const char *s;
    switch (v->kind) {
    case EXPR_NULL:
        s = "";
        break;
    case EXPR_BOOLEAN:
        s = v->boolean ? "true" : "false";
        break;
    case EXPR_NUMBER:
        s = number_format(v->number, tmp, false);
        break;
    case EXPR_STRING:
        *len = v->len;
        return v->str;
    case EXPR_ARRAY:
        s = "Array";
        break;
    default:
        s = "Object";
        break;
    }
    *len = strlen(s);
    return s;
}

static double val_to_number(const struct val *v)
{
    switch (v->kind) {
    case EXPR_NULL:
        return 0;
    case EXPR_BOOLEAN:
        return v->boolean ? 1 : 0;
    case EXPR_NUMBER:
        return v->number;
    case EXPR_STRING:
        return expr_number_parse(v->str, v->len);
    default:
        return NAN;
    }
}

/* The canonical view EvaluationResult.CoerceTypes works on. */
struct canon {
    enum expr_kind kind;
    bool boolean;
    double number;
    const char *str;
    size_t len;
    const json_t *json;
};

static struct canon canon_of(const struct val *v)
{
    struct canon c = {v->kind, v->boolean, v->number, v->str, v->len, v->json};
    return c;
}

static double canon_to_number(const struct canon *c)
{
    switch (c->kind) {
    case EXPR_NULL:
        return 0;
    case EXPR_BOOLEAN:
        return c->boolean ? 1 : 0;
    case EXPR_NUMBER:
        return c->number;
    case EXPR_STRING:
        return expr_number_parse(c->str, c->len);
    default:
        return NAN;
    }
}

static void canon_number(struct canon *c)
{
    c->number = canon_to_number(c);
    c->kind = EXPR_NUMBER;
}

/* Number+String -> numbers; Boolean or Null on either side -> number, then again. */
static void canon_coerce(struct canon *l, struct canon *r)
{
    for (;;) {
        if (l->kind == r->kind)
            return;
        if (l->kind == EXPR_NUMBER && r->kind == EXPR_STRING) {
            canon_number(r);
            return;
        }
        if (l->kind == EXPR_STRING && r->kind == EXPR_NUMBER) {
            canon_number(l);
            return;
        }
        if (l->kind == EXPR_BOOLEAN || l->kind == EXPR_NULL)
            canon_number(l);
        else if (r->kind == EXPR_BOOLEAN || r->kind == EXPR_NULL)
            canon_number(r);
        else
            return;
    }
}

static bool val_equal(const struct val *a, const struct val *b)
{
    struct canon l = canon_of(a), r = canon_of(b);
    canon_coerce(&l, &r);
    if (l.kind != r.kind)
        return false;
    switch (l.kind) {
    case EXPR_NULL:
        return true;
    case EXPR_NUMBER:
        return !isnan(l.number) && !isnan(r.number) && l.number == r.number;
    case EXPR_STRING:
        return text_compare_nocase(l.str, l.len, r.str, r.len) == 0;
    case EXPR_BOOLEAN:
        return l.boolean == r.boolean;
    default:
        return l.json == r.json; /* objects and arrays compare by reference */
    }
}

/* Returns -1, 0, 1, or 2 for "not comparable" (different kinds, NaN, objects). */
static int val_order(const struct val *a, const struct val *b)
{
    struct canon l = canon_of(a), r = canon_of(b);
    canon_coerce(&l, &r);
    if (l.kind != r.kind)
        return 2;
    switch (l.kind) {
    case EXPR_NUMBER:
        if (isnan(l.number) || isnan(r.number))
            return 2;
        return l.number < r.number ? -1 : l.number > r.number ? 1 : 0;
    case EXPR_STRING: {
        int c = text_compare_nocase(l.str, l.len, r.str, r.len);
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    case EXPR_BOOLEAN:
        return l.boolean == r.boolean ? 0 : l.boolean ? 1 : -1;
    default:
        return 2;
    }
}

/* ---------------------------------------------------------------------------------------
 * Expression text of a node (ConvertToExpression), for the memory error.
 * ------------------------------------------------------------------------------------- */

static void node_text(struct buf *b, const struct node *n)
{
    char tmp[NUMBER_TEXT_MAX];
    static const char *const ops[] = {
        [NODE_EQUAL] = "==",      [NODE_NOT_EQUAL] = "!=", [NODE_LESS] = "<",
        [NODE_LESS_EQUAL] = "<=", [NODE_GREATER] = ">",    [NODE_GREATER_EQUAL] = ">=",
        [NODE_AND] = "&&",        [NODE_OR] = "||",
    };
    switch (n->kind) {
    case NODE_LITERAL:
        if (n->literal_kind == EXPR_NULL) {
            buf_puts(b, "null");
        } else if (n->literal_kind == EXPR_BOOLEAN) {
            buf_puts(b, n->boolean ? "true" : "false");
        } else if (n->literal_kind == EXPR_NUMBER) {
            buf_puts(b, number_format(n->number, tmp, true));
        } else {
            buf_putc(b, '\'');
            for (size_t i = 0; i < n->string_len; i++) {
                if (n->string[i] == '\'')
                    buf_putc(b, '\'');
                buf_putc(b, n->string[i]);
            }
            buf_putc(b, '\'');
        }
        break;
    case NODE_NAMED_VALUE:
        buf_puts(b, n->string);
        break;
    case NODE_WILDCARD:
        buf_putc(b, '*');
        break;
    case NODE_INDEX: {
        const struct node *index = n->args[1];
        node_text(b, n->args[0]);
        if (index->kind == NODE_WILDCARD) {
            buf_puts(b, ".*");
        } else if (index->kind == NODE_LITERAL && index->literal_kind == EXPR_STRING &&
                   identifier_is_legal(index->string, index->string_len)) {
            buf_putc(b, '.');
            buf_append(b, index->string, index->string_len);
        } else {
            buf_putc(b, '[');
            node_text(b, index);
            buf_putc(b, ']');
        }
        break;
    }
    case NODE_NOT:
        buf_putc(b, '!');
        node_text(b, n->args[0]);
        break;
    case NODE_FUNCTION:
        buf_puts(b, n->string);
        buf_putc(b, '(');
        for (size_t i = 0; i < n->nargs; i++) {
            if (i)
                buf_puts(b, ", ");
            node_text(b, n->args[i]);
        }
        buf_putc(b, ')');
        break;
    default:
        buf_putc(b, '(');
        for (size_t i = 0; i < n->nargs; i++) {
            if (i)
                buf_printf(b, " %s ", ops[n->kind]);
            node_text(b, n->args[i]);
        }
        buf_putc(b, ')');
        break;
    }
}

/* ---------------------------------------------------------------------------------------
 * Evaluation, with C#'s memory accounting (EvaluationMemory per tree level, MemoryCounter
 * per function result).
 * ------------------------------------------------------------------------------------- */

struct eval {
    const struct expr *e;
    const struct expr_context *ctx;
    struct error *err;
    int64_t max_memory;
    int64_t depths[MEMORY_LEVELS];
    int max_active;
    int64_t total;
};

struct counter {
    int64_t bytes;
    const struct node *node;
};

static int memory_exceeded(struct eval *ev, const struct node *n)
{
    struct buf b = BUF_INIT;
    node_text(&b, n);
    int rc =
        error_set(ev->err, -1,
                  "The maximum allowed memory size was exceeded while evaluating the following "
                  "expression: %s",
                  buf_cstr(&b));
    buf_free(&b);
    return rc;
}

static int64_t string_bytes(const char *s, size_t len)
{
    return MEMORY_STRING_OVERHEAD + (int64_t)utf16_length(s, len) * 2;
}

static int counter_add(struct eval *ev, struct counter *c, int64_t amount)
{
    if (c->bytes + amount > ev->max_memory)
        return memory_exceeded(ev, c->node);
    c->bytes += amount;
    return 0;
}

static int counter_add_string(struct eval *ev, struct counter *c, const char *s, size_t len)
{
    return counter_add(ev, c, string_bytes(s, len));
}

/* EvaluationMemory.AddAmount. */
static int memory_add(struct eval *ev, int level, int64_t bytes, bool trim)
{
    if (level >= MEMORY_LEVELS)
        level = MEMORY_LEVELS - 1;
    if (trim) {
        while (ev->max_active > level) {
            ev->total -= ev->depths[ev->max_active];
            ev->depths[ev->max_active] = 0;
            ev->max_active--;
        }
    }
    if (level > ev->max_active)
        ev->max_active = level;
    ev->depths[level] += bytes;
    ev->total += bytes;
    if (ev->total > ev->max_memory)
        return memory_exceeded(ev, ev->e->root);
    return 0;
}

static int64_t val_bytes(const struct val *v)
{
    return v->kind == EXPR_STRING ? string_bytes(v->str, v->len) : MEMORY_MIN_OBJECT;
}

static int eval_core(struct eval *ev, const struct node *n, int level, struct val *out,
                     int64_t *bytes);

/* ExpressionNode.Evaluate: the node's value, then its memory. */
static int eval_node(struct eval *ev, const struct node *n, int level, struct val *out)
{
    int64_t explicit_bytes = -1;
    memset(out, 0, sizeof *out);
    if (eval_core(ev, n, level, out, &explicit_bytes) < 0) {
        val_clear(out);
        return -1;
    }
    bool trim = !out->raw && val_is_primitive(out);
    int64_t core = explicit_bytes >= 0 ? explicit_bytes
                   : out->raw          ? MEMORY_MIN_OBJECT
                                       : val_bytes(out);
    if (memory_add(ev, level, core, trim) < 0 ||
        (out->raw && memory_add(ev, level, val_bytes(out), false) < 0)) {
        val_clear(out);
        return -1;
    }
    return 0;
}

static void filtered_new(struct val *out)
{
    memset(out, 0, sizeof *out);
    out->kind = EXPR_ARRAY;
    out->json = json_array();
    out->filtered = true;
}

/* IndexHelper: the index as an array position, or -1. */
static int64_t index_integer(const struct val *index)
{
    double d = val_to_number(index);
    if (isnan(d) || d < 0)
        return -1;
    d = floor(d);
    if (d > (double)INT32_MAX)
        return -1;
    return (int64_t)d;
}

/* IndexHelper: the index as a member name (primitives only), or NULL. */
static const char *index_string(const struct val *index, char tmp[NUMBER_TEXT_MAX], size_t *len)
{
    if (!val_is_primitive(index))
        return NULL;
    return val_text(index, tmp, len);
}

/* A member of an object, matched as C#'s OrdinalIgnoreCase dictionaries do: exact first. */
static json_t *member_get(json_t *object, const char *key, size_t len)
{
    if (!json_is_object(object))
        return NULL;
    json_t *value = json_object_getn(object, key, len);
    if (value)
        return value;
    const char *k;
    size_t klen;
    json_object_keylen_foreach(object, k, klen, value)
    {
        if (text_compare_nocase(k, klen, key, len) == 0)
            return value;
    }
    return NULL;
}

static int filtered_add(struct eval *ev, struct counter *c, struct val *out, json_t *item)
{
    json_array_append(out->json, item);
    return counter_add(ev, c, MEMORY_POINTER);
}

static int filtered_add_all(struct eval *ev, struct counter *c, struct val *out, json_t *collection)
{
    if (json_is_object(collection)) {
        const char *key;
        json_t *value;
        json_object_foreach(collection, key, value)
        {
            if (filtered_add(ev, c, out, value) < 0)
                return -1;
        }
    } else {
        size_t i;
        json_t *value;
        json_array_foreach(collection, i, value)
        {
            if (filtered_add(ev, c, out, value) < 0)
                return -1;
        }
    }
    return 0;
}

static int eval_index(struct eval *ev, const struct node *n, int level, struct val *out,
                      int64_t *bytes)
{
    struct val left, index;
    if (eval_node(ev, n->args[0], level + 1, &left) < 0)
        return -1;
    bool wildcard = n->args[1]->kind == NODE_WILDCARD;
    if (left.kind != EXPR_ARRAY && left.kind != EXPR_OBJECT) {
        val_clear(&left);
        if (wildcard)
            filtered_new(out);
        return 0;
    }
    if (eval_node(ev, n->args[1], level + 1, &index) < 0) {
        val_clear(&left);
        return -1;
    }
    struct counter c = {0, n};
    char tmp[NUMBER_TEXT_MAX];
    size_t key_len = 0;
    int rc = 0;
    if (left.filtered) {
        filtered_new(out);
        const char *key = wildcard ? NULL : index_string(&index, tmp, &key_len);
        int64_t at = wildcard ? -1 : index_integer(&index);
        size_t i;
        json_t *item;
        json_array_foreach(left.json, i, item)
        {
            if (json_is_object(item) || (json_is_array(item) && wildcard)) {
                if (wildcard) {
                    rc = filtered_add_all(ev, &c, out, item);
                } else if (key) {
                    json_t *member = member_get(item, key, key_len);
                    if (member)
                        rc = filtered_add(ev, &c, out, member);
                }
            } else if (json_is_array(item) && at >= 0 && (size_t)at < json_array_size(item)) {
                rc = filtered_add(ev, &c, out, json_array_get(item, (size_t)at));
            }
            if (rc < 0)
                break;
        }
        *bytes = c.bytes;
    } else if (wildcard) {
        filtered_new(out);
        rc = counter_add(ev, &c, MEMORY_MIN_OBJECT);
        if (rc == 0)
            rc = filtered_add_all(ev, &c, out, left.json);
        *bytes = c.bytes;
    } else if (left.kind == EXPR_OBJECT) {
        const char *key = index_string(&index, tmp, &key_len);
        json_t *member = key ? member_get(left.json, key, key_len) : NULL;
        if (member)
            val_from_json(out, member);
    } else {
        int64_t at = index_integer(&index);
        if (at >= 0 && (size_t)at < json_array_size(left.json))
            val_from_json(out, json_array_get(left.json, (size_t)at));
    }
    val_clear(&left);
    val_clear(&index);
    return rc;
}

static int eval_logical(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct val v = {0};
    for (size_t i = 0; i < n->nargs; i++) {
        val_clear(&v);
        if (eval_node(ev, n->args[i], level + 1, &v) < 0)
            return -1;
        bool falsy = val_is_falsy(&v);
        if ((n->kind == NODE_AND && falsy) || (n->kind == NODE_OR && !falsy))
            break;
    }
    val_move(out, &v);
    out->raw = false; /* And/Or return the canonical value */
    return 0;
}

static int eval_compare(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct val l, r;
    if (eval_node(ev, n->args[0], level + 1, &l) < 0)
        return -1;
    if (eval_node(ev, n->args[1], level + 1, &r) < 0) {
        val_clear(&l);
        return -1;
    }
    bool result;
    if (n->kind == NODE_EQUAL || n->kind == NODE_NOT_EQUAL) {
        result = val_equal(&l, &r) == (n->kind == NODE_EQUAL);
    } else {
        int order = val_order(&l, &r);
        switch (n->kind) {
        case NODE_LESS:
            result = order == -1;
            break;
        case NODE_LESS_EQUAL:
            result = order == -1 || order == 0;
            break;
        case NODE_GREATER:
            result = order == 1;
            break;
        default:
            result = order == 1 || order == 0;
            break;
        }
    }
    val_clear(&l);
    val_clear(&r);
    val_boolean(out, result);
    return 0;
}

static void val_export(struct val *v, struct expr_value *out);
static void val_import(struct val *v, struct expr_value *in);

static int eval_host(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct expr_value *args = xcalloc(n->nargs + 1, sizeof *args);
    int rc = 0;
    for (size_t i = 0; i < n->nargs && rc == 0; i++) {
        struct val v;
        rc = eval_node(ev, n->args[i], level + 1, &v);
        if (rc == 0)
            val_export(&v, &args[i]);
    }
    if (rc == 0) {
        struct expr_value result = {0};
        rc = n->host->call(ev->ctx ? ev->ctx->host : NULL, args, n->nargs, &result, ev->err);
        if (rc < 0) {
            if (ev->err && !ev->err->message[0])
                error_set(ev->err, -1, "The function '%s' failed", n->host->name);
            expr_value_clear(&result);
        } else {
            val_import(out, &result);
        }
    }
    for (size_t i = 0; i < n->nargs; i++)
        expr_value_clear(&args[i]);
    free(args);
    return rc < 0 ? -1 : 0;
}

static int eval_core(struct eval *ev, const struct node *n, int level, struct val *out,
                     int64_t *bytes)
{
    switch (n->kind) {
    case NODE_LITERAL:
        out->kind = n->literal_kind;
        out->boolean = n->boolean;
        out->number = n->number;
        out->str = n->string;
        out->len = n->string_len;
        return 0;
    case NODE_WILDCARD:
        out->kind = EXPR_STRING;
        out->str = "*";
        out->len = 1;
        return 0;
    case NODE_NAMED_VALUE: {
        json_t *v = ev->ctx ? member_get(ev->ctx->contexts, n->string, n->string_len) : NULL;
        if (v)
            val_from_json(out, v);
        return 0;
    }
    case NODE_INDEX:
        return eval_index(ev, n, level, out, bytes);
    case NODE_NOT: {
        struct val v;
        if (eval_node(ev, n->args[0], level + 1, &v) < 0)
            return -1;
        val_boolean(out, val_is_falsy(&v));
        val_clear(&v);
        return 0;
    }
    case NODE_AND:
    case NODE_OR:
        return eval_logical(ev, n, level, out);
    case NODE_FUNCTION:
        if (n->builtin)
            return n->builtin->call(ev, n, level, out);
        return eval_host(ev, n, level, out);
    default:
        return eval_compare(ev, n, level, out);
    }
}

/* ---------------------------------------------------------------------------------------
 * Built-in functions.
 * ------------------------------------------------------------------------------------- */

static int fn_text_match(struct eval *ev, const struct node *n, int level, struct val *out,
                         enum text_match how)
{
    struct val l, r;
    bool result = false;
    if (eval_node(ev, n->args[0], level + 1, &l) < 0)
        return -1;
    if (val_is_primitive(&l)) {
        if (eval_node(ev, n->args[1], level + 1, &r) < 0) {
            val_clear(&l);
            return -1;
        }
        if (val_is_primitive(&r)) {
            char lt[NUMBER_TEXT_MAX], rt[NUMBER_TEXT_MAX];
            size_t ln, rn;
            const char *ls = val_text(&l, lt, &ln), *rs = val_text(&r, rt, &rn);
            result = text_match_nocase(ls, ln, rs, rn, how);
        }
        val_clear(&r);
    } else if (how == MATCH_CONTAINS && l.kind == EXPR_ARRAY && json_array_size(l.json) > 0) {
        if (eval_node(ev, n->args[1], level + 1, &r) < 0) {
            val_clear(&l);
            return -1;
        }
        size_t i;
        json_t *item;
        json_array_foreach(l.json, i, item)
        {
            struct val iv;
            val_from_json(&iv, item);
            result = val_equal(&r, &iv);
            val_clear(&iv);
            if (result)
                break;
        }
        val_clear(&r);
    }
    val_clear(&l);
    val_boolean(out, result);
    return 0;
}

static int fn_contains(struct eval *ev, const struct node *n, int level, struct val *out)
{
    return fn_text_match(ev, n, level, out, MATCH_CONTAINS);
}

static int fn_starts_with(struct eval *ev, const struct node *n, int level, struct val *out)
{
    return fn_text_match(ev, n, level, out, MATCH_PREFIX);
}

static int fn_ends_with(struct eval *ev, const struct node *n, int level, struct val *out)
{
    return fn_text_match(ev, n, level, out, MATCH_SUFFIX);
}

static int fn_case(struct eval *ev, const struct node *n, int level, struct val *out)
{
    for (size_t i = 0; i + 1 < n->nargs; i += 2) {
        struct val predicate;
        if (eval_node(ev, n->args[i], level + 1, &predicate) < 0)
            return -1;
        bool is_boolean = predicate.kind == EXPR_BOOLEAN, chosen = predicate.boolean;
        val_clear(&predicate);
        if (!is_boolean)
            return error_set(ev->err, -1, "case predicate must evaluate to a boolean value");
        if (chosen) {
            if (eval_node(ev, n->args[i + 1], level + 1, out) < 0)
                return -1;
            out->raw = false;
            return 0;
        }
    }
    if (eval_node(ev, n->args[n->nargs - 1], level + 1, out) < 0)
        return -1;
    out->raw = false;
    return 0;
}

/* Format: "{N}" with N a byte, "{{" and "}}" escapes; arguments are evaluated when first
 * referenced, each once; format specifiers ("{0:x}") are rejected as GitHub does. */
struct format_state {
    struct eval *ev;
    const struct node *n;
    int level;
    struct val *args; /* evaluated lazily */
    bool *done;
    struct buf out;
    struct counter counter;
    const char *format;
};

static int format_append(struct format_state *st, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    if (counter_add_string(st->ev, &st->counter, s, len) < 0)
        return -1;
    buf_append(&st->out, s, len);
    return 0;
}

static int format_invalid(struct format_state *st)
{
    return error_set(st->ev->err, -1, "The following format string is invalid: %s", st->format);
}

/* Reads "N}" or "N:spec}" at s[i]; sets *arg, *spec (owned by caller), *end (the '}'). */
static bool format_read_placeholder(const char *s, size_t n, size_t i, int *arg, struct buf *spec,
                                    size_t *end)
{
    size_t digits = 0;
    while (i + digits < n && s[i + digits] >= '0' && s[i + digits] <= '9')
        digits++;
    if (digits == 0)
        return false;
    unsigned value = 0;
    for (size_t k = 0; k < digits; k++) {
        value = value * 10 + (unsigned)(s[i + k] - '0');
        if (value > 255)
            return false; /* Byte.TryParse */
    }
    *arg = (int)value;
    i += digits;
    if (i < n && s[i] == '}') {
        *end = i;
        return true;
    }
    if (i >= n || s[i] != ':')
        return false;
    for (i++; i < n; i++) {
        if (s[i] != '}') {
            buf_putc(spec, s[i]);
        } else if (i + 1 < n && s[i + 1] == '}') {
            buf_putc(spec, '}');
            i++;
        } else {
            *end = i;
            return true;
        }
    }
    return false;
}

struct format_segment {
    size_t start, len; /* literal text, or */
    int arg;           /* >= 0: an argument */
    char *spec;
};

static int format_arg(struct format_state *st, const struct format_segment *seg)
{
    int a = seg->arg;
    if (!st->done[a]) {
        if (eval_node(st->ev, st->n->args[a + 1], st->level + 1, &st->args[a]) < 0)
            return -1;
        st->done[a] = true;
    }
    if (seg->spec && seg->spec[0]) {
        static const char *const kinds[] = {"Null",   "Boolean", "Number",
                                            "String", "Array",   "Object"};
        return error_set(st->ev->err, -1,
                         "The format specifiers '%s' are not valid for objects of type '%s'",
                         seg->spec, kinds[st->args[a].kind]);
    }
    char tmp[NUMBER_TEXT_MAX];
    size_t len;
    const char *s = val_text(&st->args[a], tmp, &len);
    return format_append(st, s, len);
}

static int format_run(struct format_state *st, const char *f, size_t n,
                      struct format_segment **segs, size_t *count)
{
    size_t cap = 0;
    size_t i = 0;
    int nparams = (int)st->n->nargs - 1;
    while (i < n) {
        const char *lb = memchr(f + i, '{', n - i), *rb = memchr(f + i, '}', n - i);
        struct format_segment seg = {0, 0, -1, NULL};
        if (lb && (!rb || rb > lb)) {
            size_t l = (size_t)(lb - f);
            if (l + 1 < n && f[l + 1] == '{') {
                seg.start = i, seg.len = l - i + 1;
                i = l + 2;
            } else {
                struct buf spec = BUF_INIT;
                size_t end;
                int arg;
                if (!(rb && (size_t)(rb - f) > l + 1 &&
                      format_read_placeholder(f, n, l + 1, &arg, &spec, &end))) {
                    buf_free(&spec);
                    return format_invalid(st);
                }
                if (arg > nparams - 1) {
                    buf_free(&spec);
                    return error_set(
                        st->ev->err, -1,
                        "The following format string references more arguments than were "
                        "supplied: %s",
                        st->format);
                }
                if (l > i) {
                    struct format_segment lit = {i, l - i, -1, NULL};
                    if (*count == cap) {
                        cap = cap ? cap * 2 : 8;
                        *segs = xrealloc(*segs, cap * sizeof **segs);
                    }
                    (*segs)[(*count)++] = lit;
                    if (counter_add_string(st->ev, &st->counter, f + i, l - i) < 0) {
                        buf_free(&spec);
                        return -1;
                    }
                }
                seg.arg = arg;
                seg.spec = buf_steal(&spec);
                i = end + 1;
            }
        } else if (rb) {
            size_t r = (size_t)(rb - f);
            if (r + 1 < n && f[r + 1] == '}') {
                seg.start = i, seg.len = r - i + 1;
                i = r + 2;
            } else {
                return format_invalid(st);
            }
        } else {
            seg.start = i, seg.len = n - i;
            i = n;
        }
        if (seg.arg < 0) {
            if (seg.len == 0)
                continue;
            if (counter_add_string(st->ev, &st->counter, f + seg.start, seg.len) < 0)
                return -1;
        }
        if (*count == cap) {
            cap = cap ? cap * 2 : 8;
            *segs = xrealloc(*segs, cap * sizeof **segs);
        }
        (*segs)[(*count)++] = seg;
    }
    return 0;
}

static int fn_format(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct val fv;
    if (eval_node(ev, n->args[0], level + 1, &fv) < 0)
        return -1;
    char tmp[NUMBER_TEXT_MAX];
    size_t flen;
    const char *f = val_text(&fv, tmp, &flen);
    size_t nparams = n->nargs - 1;
    struct format_state st = {ev,
                              n,
                              level,
                              xcalloc(nparams + 1, sizeof(struct val)),
                              xcalloc(nparams + 1, sizeof(bool)),
                              BUF_INIT,
                              {0, n},
                              NULL};
    st.format = xstrndup(f, flen);
    struct format_segment *segs = NULL;
    size_t count = 0;
    int rc = format_run(&st, f, flen, &segs, &count);
    /* Static text was counted as it was read; the final string is built now, evaluating
     * arguments in the order they appear (C#'s lazy segments). */
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (segs[i].arg < 0)
            buf_append(&st.out, f + segs[i].start, segs[i].len);
        else
            rc = format_arg(&st, &segs[i]);
    }
    for (size_t i = 0; i < count; i++)
        free(segs[i].spec);
    free(segs);
    for (size_t i = 0; i < nparams; i++)
        val_clear(&st.args[i]);
    free(st.args);
    free(st.done);
    free((char *)st.format);
    val_clear(&fv);
    if (rc < 0) {
        buf_free(&st.out);
        return -1;
    }
    size_t len = st.out.len;
    char *s = st.out.data ? buf_steal(&st.out) : xstrdup("");
    val_string_take(out, s, len);
    return 0;
}

static int fn_join(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct val items;
    if (eval_node(ev, n->args[0], level + 1, &items) < 0)
        return -1;
    struct buf b = BUF_INIT;
    char tmp[NUMBER_TEXT_MAX];
    size_t len;
    int rc = 0;
    if (items.kind == EXPR_ARRAY && json_array_size(items.json) > 0) {
        struct counter c = {0, n};
        struct val sep = {0};
        const char *sep_s = ",";
        size_t sep_len = 1;
        char sep_tmp[NUMBER_TEXT_MAX];
        size_t count = json_array_size(items.json);
        for (size_t i = 0; i < count && rc == 0; i++) {
            if (i == 1 && n->nargs > 1) {
                rc = eval_node(ev, n->args[1], level + 1, &sep);
                if (rc < 0)
                    break;
                if (val_is_primitive(&sep))
                    sep_s = val_text(&sep, sep_tmp, &sep_len);
            }
            if (i > 0) {
                rc = counter_add_string(ev, &c, sep_s, sep_len);
                buf_append(&b, sep_s, sep_len);
            }
            struct val iv;
            val_from_json(&iv, json_array_get(items.json, i));
            const char *s = val_text(&iv, tmp, &len);
            if (rc == 0)
                rc = counter_add_string(ev, &c, s, len);
            buf_append(&b, s, len);
            val_clear(&iv);
        }
        val_clear(&sep);
    } else if (val_is_primitive(&items)) {
        const char *s = val_text(&items, tmp, &len);
        buf_append(&b, s, len);
    }
    val_clear(&items);
    if (rc < 0) {
        buf_free(&b);
        return -1;
    }
    len = b.len;
    val_string_take(out, b.data ? buf_steal(&b) : xstrdup(""), len);
    return 0;
}

/* JsonConvert.ToString(string): Newtonsoft's default escaping. */
static void json_quote(struct buf *b, const char *s, size_t n)
{
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            buf_puts(b, "\\\"");
            continue;
        case '\\':
            buf_puts(b, "\\\\");
            continue;
        case '\n':
            buf_puts(b, "\\n");
            continue;
        case '\r':
            buf_puts(b, "\\r");
            continue;
        case '\t':
            buf_puts(b, "\\t");
            continue;
        case '\b':
            buf_puts(b, "\\b");
            continue;
        case '\f':
            buf_puts(b, "\\f");
            continue;
        default:
            break;
        }
        if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0x85) {
            buf_puts(b, "\\u0085");
            i++;
        } else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
                   ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)) {
            buf_puts(b, (unsigned char)s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
            i += 2;
        } else {
            buf_putc(b, (char)c);
        }
    }
    buf_putc(b, '"');
}

struct tojson {
    struct eval *ev;
    struct counter counter;
    struct buf out;
    struct buf piece;
};

/* Appends the piece built in t->piece, counting its memory. */
static int tojson_flush(struct tojson *t)
{
    if (counter_add_string(t->ev, &t->counter, t->piece.data ? t->piece.data : "", t->piece.len) <
        0)
        return -1;
    buf_append(&t->out, buf_cstr(&t->piece), t->piece.len);
    buf_reset(&t->piece);
    return 0;
}

static void tojson_indent(struct buf *b, size_t level)
{
    for (size_t i = 0; i < level * 2; i++)
        buf_putc(b, ' ');
}

/* Writes a value; prefix is what PrefixValue puts before it (",\n  " or ": " or ""). */
static int tojson_value(struct tojson *t, const struct val *v, size_t level, bool in_object,
                        bool first)
{
    struct buf *p = &t->piece;
    if (in_object) {
        buf_puts(p, ": ");
    } else if (level > 0) {
        if (!first)
            buf_putc(p, ',');
        buf_putc(p, '\n');
        tojson_indent(p, level);
    }
    char tmp[NUMBER_TEXT_MAX];
    size_t len;
    if (v->kind == EXPR_ARRAY) {
        size_t count = json_array_size(v->json);
        if (count == 0) {
            buf_puts(p, "[]");
            return tojson_flush(t);
        }
        buf_putc(p, '[');
        if (tojson_flush(t) < 0)
            return -1;
        for (size_t i = 0; i < count; i++) {
            struct val item;
            val_from_json(&item, json_array_get(v->json, i));
            int rc = tojson_value(t, &item, level + 1, false, i == 0);
            val_clear(&item);
            if (rc < 0)
                return -1;
        }
        buf_putc(p, '\n');
        tojson_indent(p, level);
        buf_putc(p, ']');
        return tojson_flush(t);
    }
    if (v->kind == EXPR_OBJECT) {
        if (json_object_size(v->json) == 0) {
            buf_puts(p, "{}");
            return tojson_flush(t);
        }
        buf_putc(p, '{');
        if (tojson_flush(t) < 0)
            return -1;
        const char *key;
        json_t *member;
        bool first_member = true;
        json_object_foreach(v->json, key, member)
        {
            if (!first_member)
                buf_putc(p, ',');
            buf_putc(p, '\n');
            tojson_indent(p, level + 1);
            json_quote(p, key, strlen(key));
            if (tojson_flush(t) < 0)
                return -1;
            struct val item;
            val_from_json(&item, member);
            int rc = tojson_value(t, &item, level + 1, true, first_member);
            val_clear(&item);
            if (rc < 0)
                return -1;
            first_member = false;
        }
        buf_putc(p, '\n');
        tojson_indent(p, level);
        buf_putc(p, '}');
        return tojson_flush(t);
    }
    switch (v->kind) {
    case EXPR_NULL:
        buf_puts(p, "null");
        break;
    case EXPR_BOOLEAN:
        buf_puts(p, v->boolean ? "true" : "false");
        break;
    case EXPR_NUMBER:
        buf_puts(p, val_text(v, tmp, &len));
        break;
    default:
        json_quote(p, v->str, v->len);
        break;
    }
    return tojson_flush(t);
}

static int fn_to_json(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct val v;
    if (eval_node(ev, n->args[0], level + 1, &v) < 0)
        return -1;
    struct tojson t = {ev, {0, n}, BUF_INIT, BUF_INIT};
    int rc = tojson_value(&t, &v, 0, false, true);
    val_clear(&v);
    buf_free(&t.piece);
    if (rc < 0) {
        buf_free(&t.out);
        return -1;
    }
    size_t len = t.out.len;
    val_string_take(out, t.out.data ? buf_steal(&t.out) : xstrdup(""), len);
    return 0;
}

static int fn_from_json(struct eval *ev, const struct node *n, int level, struct val *out)
{
    struct val v;
    if (eval_node(ev, n->args[0], level + 1, &v) < 0)
        return -1;
    char tmp[NUMBER_TEXT_MAX];
    size_t len;
    const char *s = val_text(&v, tmp, &len);
    json_error_t jerr;
    /* Newtonsoft's JToken.ReadFrom reads one value and ignores what follows it. */
    json_t *j = json_loadb(
        s, len, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
        &jerr);
    val_clear(&v);
    if (!j)
        return error_set(ev->err, -1, "Error parsing fromJson");
    val_from_json(out, j);
    json_decref(j);
    return 0;
}

static const struct builtin BUILTINS[] = {
    {"case", 3, 255, fn_case},
    {"contains", 2, 2, fn_contains},
    {"endsWith", 2, 2, fn_ends_with},
    {"format", 1, 255, fn_format},
    {"fromJSON", 1, 1, fn_from_json},
    {"join", 1, 2, fn_join},
    {"startsWith", 2, 2, fn_starts_with},
    {"toJSON", 1, 1, fn_to_json},
};
static const size_t BUILTIN_COUNT = sizeof BUILTINS / sizeof BUILTINS[0];

/* ---------------------------------------------------------------------------------------
 * Public values and entry points.
 * ------------------------------------------------------------------------------------- */

static void val_export(struct val *v, struct expr_value *out)
{
    memset(out, 0, sizeof *out);
    out->kind = v->kind;
    out->boolean = v->boolean;
    out->number = v->number;
    if (v->kind == EXPR_STRING) {
        out->string =
            v->owned && v->str == v->owned ? steal_pointer(&v->owned) : xstrndup(v->str, v->len);
    } else if (v->kind == EXPR_ARRAY || v->kind == EXPR_OBJECT) {
        out->json = v->json; /* a filtered array is already a plain array */
        v->json = NULL;
    }
    val_clear(v);
}

static void val_import(struct val *v, struct expr_value *in)
{
    memset(v, 0, sizeof *v);
    v->kind = in->kind;
    v->boolean = in->boolean;
    v->number = in->number;
    if (in->kind == EXPR_STRING) {
        char *s = in->string ? in->string : xstrdup("");
        in->string = NULL;
        val_string_take(v, s, strlen(s));
    } else if (in->kind == EXPR_ARRAY || in->kind == EXPR_OBJECT) {
        if (!in->json)
            in->json = in->kind == EXPR_ARRAY ? json_array() : json_object();
        v->json = in->json;
        in->json = NULL;
    }
    expr_value_clear(in);
}

int expr_evaluate(const struct expr *e, const struct expr_context *context, struct expr_value *out,
                  struct error *err)
{
    memset(out, 0, sizeof *out);
    if (!e->root)
        return 0;
    struct eval ev = {.e = e, .ctx = context, .err = err, .max_active = -1};
    ev.max_memory =
        context && context->max_memory ? (int64_t)context->max_memory : EXPR_DEFAULT_MAX_MEMORY;
    if (err)
        err->message[0] = 0;
    struct val v;
    if (eval_node(&ev, e->root, 0, &v) < 0)
        return err && err->code ? err->code : -1;
    val_export(&v, out);
    return 0;
}

int expr_evaluate_text(const char *text, const struct expr_parse_options *options,
                       const struct expr_context *context, struct expr_value *out,
                       enum expr_stage *stage, struct error *err)
{
    struct expr *e;
    memset(out, 0, sizeof *out);
    if (expr_parse(text, options, &e, stage, err) < 0)
        return -1;
    int rc = expr_evaluate(e, context, out, err);
    if (rc < 0 && stage)
        *stage = EXPR_STAGE_EVALUATION;
    expr_free(e);
    return rc;
}

void expr_value_clear(struct expr_value *value)
{
    if (!value)
        return;
    free(value->string);
    json_decref(value->json);
    memset(value, 0, sizeof *value);
}

void expr_value_from_json(struct expr_value *out, json_t *json)
{
    struct val v;
    val_from_json(&v, json);
    val_export(&v, out);
}

json_t *expr_value_to_json(const struct expr_value *value)
{
    switch (value->kind) {
    case EXPR_NULL:
        return json_null();
    case EXPR_BOOLEAN:
        return json_boolean(value->boolean);
    case EXPR_NUMBER: {
        double d = value->number;
        if (isnan(d) || isinf(d))
            return json_null();
        if (d == floor(d) && fabs(d) < 9007199254740992.0 && !(d == 0 && signbit(d)))
            return json_integer((json_int_t)d);
        return json_real(d);
    }
    case EXPR_STRING:
        return json_string(value->string ? value->string : "");
    default:
        return json_incref(value->json);
    }
}

char *expr_value_to_string(const struct expr_value *value)
{
    char tmp[NUMBER_TEXT_MAX];
    switch (value->kind) {
    case EXPR_NULL:
        return xstrdup("");
    case EXPR_BOOLEAN:
        return xstrdup(value->boolean ? "true" : "false");
    case EXPR_NUMBER:
        return xstrdup(number_format(value->number, tmp, false));
    case EXPR_STRING:
        return xstrdup(value->string ? value->string : "");
    case EXPR_ARRAY:
        return xstrdup("Array");
    default:
        return xstrdup("Object");
    }
}

bool expr_value_truthy(const struct expr_value *value)
{
    switch (value->kind) {
    case EXPR_NULL:
        return false;
    case EXPR_BOOLEAN:
        return value->boolean;
    case EXPR_NUMBER:
        return !(value->number == 0 || isnan(value->number));
    case EXPR_STRING:
        return value->string && value->string[0];
    default:
        return true;
    }
}
