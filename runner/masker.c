#include "runner/masker.h"

#include "lib/codec.h"
#include "lib/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How the search works. Every pattern of GRAM bytes or more is indexed by the GRAM-byte
 * grams at its first `stride` offsets, where stride = (shortest such pattern) - GRAM + 1.
 * Any occurrence of a pattern then covers exactly one text position that is a multiple of
 * stride at one of those offsets, so the scan looks at one gram every `stride` bytes: a bit
 * in a 128 KiB bitmap rejects almost all of them, the rest are verified against the
 * patterns that have that gram. Patterns shorter than GRAM bytes (rare: a short add-mask)
 * are checked at every byte whose value starts one. One pass, no backtracking. */
enum {
    GRAM = 4,
    BITMAP_BITS = 20,
};

static const char MASK[] = "***";

struct pattern {
    char *bytes;
    size_t len;
};

/* An open-addressing set of byte strings, to ignore values and forms already added. */
struct string_set {
    struct pattern *slots; /* bytes == NULL: empty */
    size_t cap, count;
};

enum { NO_CANDIDATE = UINT32_MAX };

struct candidate {
    uint32_t pattern;
    uint32_t offset; /* where the gram is in the pattern */
    uint32_t next;   /* the next candidate with the same gram, or NO_CANDIDATE */
    uint32_t tail;   /* the pattern's last GRAM bytes: most candidates fail on them at once */
};

struct gram_slot {
    uint32_t gram;
    uint32_t head; /* the first candidate; NO_CANDIDATE: an empty slot */
};

/* Built on first use and kept up to date as values are added (a pattern that would shorten the
 * stride rebuilds it), so an add-mask per line costs only its own patterns. */
struct masker_index {
    size_t indexed; /* patterns[0..indexed) are in the index */
    size_t max_len;
    size_t min_long; /* shortest pattern of GRAM bytes or more; 0 when none */
    size_t stride;
    uint64_t *bitmap; /* NULL until built */
    struct gram_slot *slots;
    size_t slot_cap, slot_used;
    struct candidate *candidates;
    size_t candidate_count, candidate_cap;
    bool short_first[256]; /* a pattern shorter than GRAM starts with this byte */
    uint32_t *short_ids;
    size_t short_count, short_cap;
    uint32_t *sorted; /* every indexed pattern id, in byte order, for prefix queries */
    size_t sorted_cap;
};

struct masker {
    struct string_set originals;
    struct string_set patterns_seen;
    struct pattern *patterns;
    size_t pattern_count, pattern_cap;
    struct masker_index index;
};

struct range {
    size_t start, end;
};

struct ranges {
    struct range *items;
    size_t count, cap;
};

/* ---- string set ---- */

static uint64_t bytes_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void string_set_grow(struct string_set *set);

/* Adds a copy of s; returns false when it was already there. */
static bool string_set_add(struct string_set *set, const char *s, size_t len, char **stored)
{
    if ((set->count + 1) * 2 > set->cap)
        string_set_grow(set);
    size_t mask = set->cap - 1;
    for (size_t i = bytes_hash(s, len) & mask;; i = (i + 1) & mask) {
        struct pattern *slot = &set->slots[i];
        if (!slot->bytes) {
            slot->bytes = xmemdup(s, len);
            slot->len = len;
            set->count++;
            if (stored)
                *stored = slot->bytes;
            return true;
        }
        if (slot->len == len && memcmp(slot->bytes, s, len) == 0)
            return false;
    }
}

static void string_set_grow(struct string_set *set)
{
    struct string_set bigger = {xcalloc(set->cap ? set->cap * 2 : 64, sizeof(struct pattern)),
                                set->cap ? set->cap * 2 : 64, 0};
    for (size_t i = 0; i < set->cap; i++) {
        struct pattern *old = &set->slots[i];
        if (!old->bytes)
            continue;
        size_t mask = bigger.cap - 1;
        size_t j = bytes_hash(old->bytes, old->len) & mask;
        while (bigger.slots[j].bytes)
            j = (j + 1) & mask;
        bigger.slots[j] = *old;
        bigger.count++;
    }
    free(set->slots);
    *set = bigger;
}

static void string_set_free(struct string_set *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i].bytes);
    free(set->slots);
    memset(set, 0, sizeof(*set));
}

/* ---- the official runner's value encoders (ValueEncoders.cs), on UTF-8 bytes ---- */

/* Length in UTF-16 code units, as .NET's String.Length counts the encoders' limits. */
static size_t utf16_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            n += c >= 0xF0 && c <= 0xF7 ? 2 : 1;
    }
    return n;
}

static size_t utf8_char_length(const char *s, size_t len)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n < len ? n : len;
}

static const char *find_bytes(const char *s, size_t len, const char *needle, size_t nlen)
{
    return memmem(s, len, needle, nlen);
}

static void encode_base64_shift(const char *v, size_t len, size_t shift, struct buf *out)
{
    if (len > shift) {
        v += shift;
        len -= shift;
    }
    cleanup_free char *b64 = codec_base64_encode(v, len);
    buf_puts(out, b64);
}

static void encode_base64(const char *v, size_t len, struct buf *out)
{
    encode_base64_shift(v, len, 0, out);
}

static void encode_base64_shift1(const char *v, size_t len, struct buf *out)
{
    encode_base64_shift(v, len, 1, out);
}

static void encode_base64_shift2(const char *v, size_t len, struct buf *out)
{
    encode_base64_shift(v, len, 2, out);
}

/* Environment values passed to docker: " becomes \". */
static void encode_command_line(const char *v, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '"')
            buf_putc(out, '\\');
        buf_putc(out, v[i]);
    }
}

/* Expression string literals: ' becomes ''. */
static void encode_expression(const char *v, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\'')
            buf_putc(out, '\'');
        buf_putc(out, v[i]);
    }
}

/* Newtonsoft's JsonConvert.ToString without the quotes: named escapes for \b \t \n \f \r,
 * \" and \\, \u00xx (lowercase hex) for other control characters, and \u0085, \u2028,
 * \u2029 escaped too. */
static void encode_json(const char *v, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        switch (c) {
        case '\b':
            buf_puts(out, "\\b");
            continue;
        case '\t':
            buf_puts(out, "\\t");
            continue;
        case '\n':
            buf_puts(out, "\\n");
            continue;
        case '\f':
            buf_puts(out, "\\f");
            continue;
        case '\r':
            buf_puts(out, "\\r");
            continue;
        case '"':
            buf_puts(out, "\\\"");
            continue;
        case '\\':
            buf_puts(out, "\\\\");
            continue;
        default:
            break;
        }
        if (c < 0x20) {
            buf_printf(out, "\\u%04x", c);
        } else if (c == 0xC2 && i + 1 < len && (unsigned char)v[i + 1] == 0x85) {
            buf_puts(out, "\\u0085");
            i++;
        } else if (c == 0xE2 && i + 2 < len && (unsigned char)v[i + 1] == 0x80 &&
                   ((unsigned char)v[i + 2] == 0xA8 || (unsigned char)v[i + 2] == 0xA9)) {
            buf_puts(out, (unsigned char)v[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
            i += 2;
        } else {
            buf_putc(out, (char)c);
        }
    }
}

/* Uri.EscapeDataString: everything but RFC 3986 unreserved characters as %XX (uppercase). */
static void encode_uri_data(const char *v, size_t len, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved) {
            buf_putc(out, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, esc, 3);
        }
    }
}

/* SecurityElement.Escape. */
static void encode_xml(const char *v, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        switch (v[i]) {
        case '<':
            buf_puts(out, "&lt;");
            break;
        case '>':
            buf_puts(out, "&gt;");
            break;
        case '"':
            buf_puts(out, "&quot;");
            break;
        case '\'':
            buf_puts(out, "&apos;");
            break;
        case '&':
            buf_puts(out, "&amp;");
            break;
        default:
            buf_putc(out, v[i]);
            break;
        }
    }
}

/* A value longer than 8 characters in double quotes: the value inside them. */
static void encode_trim_double_quotes(const char *v, size_t len, struct buf *out)
{
    if (utf16_length(v, len) > 8 && v[0] == '"' && v[len - 1] == '"')
        buf_append(out, v + 1, len - 2);
}

/* PowerShell prints a failing command with colour codes around sections split at '&': the
 * section up to "&+" (or up to the last '&'), when at least 6 characters long. */
static void encode_powershell_pre_ampersand(const char *v, size_t len, struct buf *out)
{
    if (!memchr(v, '&', len))
        return;
    const char *plus = find_bytes(v, len, "&+", 2);
    size_t section;
    if (plus) {
        section = (size_t)(plus - v) + 2;
    } else {
        section = (size_t)((const char *)memrchr(v, '&', len) - v) + 1;
    }
    if (utf16_length(v, section) >= 6)
        buf_append(out, v, section);
}

/* ... and the section after it: after "&+" and the one character it colours, or after the
 * last '&', when at least 6 characters long. */
static void encode_powershell_post_ampersand(const char *v, size_t len, struct buf *out)
{
    if (!memchr(v, '&', len))
        return;
    const char *plus = find_bytes(v, len, "&+", 2);
    size_t from;
    if (plus) {
        from = (size_t)(plus - v) + 2;
        if (from >= len)
            return;
        from += utf8_char_length(v + from, len - from);
    } else {
        from = (size_t)((const char *)memrchr(v, '&', len) - v) + 1;
    }
    if (from < len && utf16_length(v + from, len - from) >= 6)
        buf_append(out, v + from, len - from);
}

/* The encoders the official runner's HostContext registers, in its order. */
static void (*const value_encoders[])(const char *, size_t, struct buf *) = {
    encode_base64,
    encode_base64_shift1,
    encode_base64_shift2,
    encode_command_line,
    encode_expression,
    encode_json,
    encode_uri_data,
    encode_xml,
    encode_trim_double_quotes,
    encode_powershell_pre_ampersand,
    encode_powershell_post_ampersand,
};

/* ---- adding values ---- */

struct masker *masker_new(void)
{
    return xcalloc(1, sizeof(struct masker));
}

static void index_free(struct masker_index *index)
{
    free(index->bitmap);
    free(index->slots);
    free(index->candidates);
    free(index->short_ids);
    free(index->sorted);
    memset(index, 0, sizeof(*index));
}

void masker_free(struct masker *masker)
{
    if (!masker)
        return;
    index_free(&masker->index);
    string_set_free(&masker->originals);
    string_set_free(&masker->patterns_seen);
    free(masker->patterns); /* the bytes belong to patterns_seen */
    free(masker);
}

static void add_pattern(struct masker *masker, const char *bytes, size_t len)
{
    char *stored = NULL;
    if (len == 0 || !string_set_add(&masker->patterns_seen, bytes, len, &stored))
        return;
    if (masker->pattern_count == masker->pattern_cap) {
        masker->pattern_cap = masker->pattern_cap ? masker->pattern_cap * 2 : 64;
        masker->patterns =
            xrealloc(masker->patterns, masker->pattern_cap * sizeof(*masker->patterns));
    }
    masker->patterns[masker->pattern_count++] = (struct pattern){stored, len};
}

void masker_add_value(struct masker *masker, const char *value, size_t len)
{
    if (len == 0 || !string_set_add(&masker->originals, value, len, NULL))
        return;
    add_pattern(masker, value, len);
    struct buf encoded = BUF_INIT;
    for (size_t i = 0; i < sizeof(value_encoders) / sizeof(value_encoders[0]); i++) {
        buf_reset(&encoded);
        value_encoders[i](value, len, &encoded);
        add_pattern(masker, encoded.data, encoded.len);
    }
    buf_free(&encoded);
}

/* .NET's Char.IsWhiteSpace for the ASCII range, which is what String.Trim removes there. */
static bool is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static void trim_span(const char **s, size_t *len)
{
    while (*len && is_space(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_space((*s)[*len - 1]))
        (*len)--;
}

void masker_add_secret(struct masker *masker, const char *value, size_t len, bool trim)
{
    if (trim)
        trim_span(&value, &len);
    masker_add_value(masker, value, len);
    /* Split on CR and LF, trim each piece, drop empty ones (RemoveEmptyEntries|TrimEntries). */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && value[i] != '\r' && value[i] != '\n')
            continue;
        const char *line = value + start;
        size_t line_len = i - start;
        trim_span(&line, &line_len);
        masker_add_value(masker, line, line_len);
        start = i + 1;
    }
}

size_t masker_pattern_count(const struct masker *masker)
{
    return masker->pattern_count;
}

/* ---- the index ---- */

static uint32_t load_gram(const char *p)
{
    uint32_t g;
    memcpy(&g, p, sizeof(g));
    return g;
}

static uint32_t gram_hash(uint32_t gram)
{
    return (gram * 2654435761u) >> (32 - BITMAP_BITS);
}

static int pattern_order(const struct pattern *a, const struct pattern *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->bytes, b->bytes, n);
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static size_t slot_index(uint32_t gram, size_t cap)
{
    return (size_t)((gram * 0x9E3779B97F4A7C15ULL) >> 32) & (cap - 1);
}

static void slots_grow(struct masker_index *index)
{
    size_t cap = index->slot_cap ? index->slot_cap * 2 : 1024;
    struct gram_slot *slots = xmalloc(cap * sizeof(*slots));
    for (size_t i = 0; i < cap; i++)
        slots[i].head = NO_CANDIDATE;
    for (size_t i = 0; i < index->slot_cap; i++) {
        if (index->slots[i].head == NO_CANDIDATE)
            continue;
        size_t s = slot_index(index->slots[i].gram, cap);
        while (slots[s].head != NO_CANDIDATE)
            s = (s + 1) & (cap - 1);
        slots[s] = index->slots[i];
    }
    free(index->slots);
    index->slots = slots;
    index->slot_cap = cap;
}

static struct gram_slot *slot_insert(struct masker_index *index, uint32_t gram)
{
    if ((index->slot_used + 1) * 2 > index->slot_cap)
        slots_grow(index);
    size_t s = slot_index(gram, index->slot_cap);
    while (index->slots[s].head != NO_CANDIDATE && index->slots[s].gram != gram)
        s = (s + 1) & (index->slot_cap - 1);
    if (index->slots[s].head == NO_CANDIDATE) {
        index->slots[s].gram = gram;
        index->slot_used++;
    }
    return &index->slots[s];
}

static void index_add_grams(struct masker_index *index, const struct pattern *pat, uint32_t id)
{
    if (index->candidate_count + index->stride > index->candidate_cap) {
        index->candidate_cap = (index->candidate_count + index->stride) * 2;
        index->candidates =
            xrealloc(index->candidates, index->candidate_cap * sizeof(*index->candidates));
    }
    for (size_t off = 0; off < index->stride; off++) {
        uint32_t gram = load_gram(pat->bytes + off);
        uint32_t h = gram_hash(gram);
        index->bitmap[h >> 6] |= 1ULL << (h & 63);
        struct gram_slot *slot = slot_insert(index, gram);
        index->candidates[index->candidate_count] = (struct candidate){
            id, (uint32_t)off, slot->head, load_gram(pat->bytes + pat->len - GRAM)};
        slot->head = (uint32_t)index->candidate_count++;
    }
}

static void index_add_short(struct masker_index *index, const struct pattern *pat, uint32_t id)
{
    if (index->short_count == index->short_cap) {
        index->short_cap = index->short_cap ? index->short_cap * 2 : 16;
        index->short_ids = xrealloc(index->short_ids, index->short_cap * sizeof(uint32_t));
    }
    index->short_ids[index->short_count++] = id;
    index->short_first[(unsigned char)pat->bytes[0]] = true;
}

static void index_add_sorted(const struct masker *masker, struct masker_index *index, uint32_t id)
{
    if (index->indexed == index->sorted_cap) {
        index->sorted_cap = index->sorted_cap ? index->sorted_cap * 2 : 64;
        index->sorted = xrealloc(index->sorted, index->sorted_cap * sizeof(uint32_t));
    }
    const struct pattern *pat = &masker->patterns[id];
    size_t lo = 0, hi = index->indexed;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pattern_order(&masker->patterns[index->sorted[mid]], pat) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(index->sorted + lo + 1, index->sorted + lo, (index->indexed - lo) * sizeof(uint32_t));
    index->sorted[lo] = id;
}

static void index_add(const struct masker *masker, struct masker_index *index, size_t p)
{
    const struct pattern *pat = &masker->patterns[p];
    if (pat->len > index->max_len)
        index->max_len = pat->len;
    if (pat->len >= GRAM)
        index_add_grams(index, pat, (uint32_t)p);
    else
        index_add_short(index, pat, (uint32_t)p);
    index_add_sorted(masker, index, (uint32_t)p);
    index->indexed++;
}

static void index_reset(struct masker_index *index, size_t min_long)
{
    index_free(index);
    index->min_long = min_long;
    index->stride = min_long ? min_long - GRAM + 1 : 1;
    index->bitmap = xcalloc((1u << BITMAP_BITS) / 64, sizeof(uint64_t));
}

static struct masker_index *index_get(struct masker *masker)
{
    struct masker_index *index = &masker->index;
    bool rebuild = !index->bitmap;
    for (size_t p = index->indexed; p < masker->pattern_count && !rebuild; p++) {
        size_t len = masker->patterns[p].len;
        rebuild = len >= GRAM && (!index->min_long || len < index->min_long);
    }
    if (rebuild) {
        size_t min_long = 0;
        for (size_t p = 0; p < masker->pattern_count; p++) {
            size_t len = masker->patterns[p].len;
            if (len >= GRAM && (!min_long || len < min_long))
                min_long = len;
        }
        index_reset(index, min_long);
    }
    while (index->indexed < masker->pattern_count)
        index_add(masker, index, index->indexed);
    return index;
}

/* ---- searching ---- */

static void ranges_push(struct ranges *r, size_t start, size_t end)
{
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->items = xrealloc(r->items, r->cap * sizeof(*r->items));
    }
    r->items[r->count++] = (struct range){start, end};
}

static const struct gram_slot *slot_find(const struct masker_index *index, uint32_t gram)
{
    for (size_t s = slot_index(gram, index->slot_cap);; s = (s + 1) & (index->slot_cap - 1)) {
        const struct gram_slot *slot = &index->slots[s];
        if (slot->head == NO_CANDIDATE)
            return NULL;
        if (slot->gram == gram)
            return slot;
    }
}

static void scan_long(const struct masker *masker, const struct masker_index *index,
                      const char *text, size_t len, struct ranges *found)
{
    if (!index->min_long || len < index->min_long)
        return;
    const uint64_t *bitmap = index->bitmap;
    size_t stride = index->stride;
    for (size_t i = 0; i + GRAM <= len; i += stride) {
        uint32_t gram = load_gram(text + i);
        uint32_t h = gram_hash(gram);
        if (!((bitmap[h >> 6] >> (h & 63)) & 1))
            continue;
        const struct gram_slot *slot = slot_find(index, gram);
        for (uint32_t k = slot ? slot->head : NO_CANDIDATE; k != NO_CANDIDATE;
             k = index->candidates[k].next) {
            const struct candidate *c = &index->candidates[k];
            const struct pattern *pat = &masker->patterns[c->pattern];
            if (c->offset > i)
                continue;
            size_t start = i - c->offset;
            if (start + pat->len <= len && load_gram(text + start + pat->len - GRAM) == c->tail &&
                memcmp(text + start, pat->bytes, pat->len) == 0)
                ranges_push(found, start, start + pat->len);
        }
    }
}

static void scan_short(const struct masker *masker, const struct masker_index *index,
                       const char *text, size_t len, struct ranges *found)
{
    if (!index->short_count)
        return;
    for (size_t i = 0; i < len; i++) {
        if (!index->short_first[(unsigned char)text[i]])
            continue;
        for (size_t k = 0; k < index->short_count; k++) {
            const struct pattern *pat = &masker->patterns[index->short_ids[k]];
            if (i + pat->len <= len && memcmp(text + i, pat->bytes, pat->len) == 0)
                ranges_push(found, i, i + pat->len);
        }
    }
}

static int range_compare(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Every occurrence, merged as the official runner does: sorted by start, a range that starts
 * at or before the end of the current one extends it. */
static void find_ranges(struct masker *masker, const char *text, size_t len, struct ranges *out)
{
    out->count = 0;
    if (!masker->pattern_count || !len)
        return;
    const struct masker_index *index = index_get(masker);
    scan_long(masker, index, text, len, out);
    scan_short(masker, index, text, len, out);
    if (out->count < 2)
        return;
    qsort(out->items, out->count, sizeof(struct range), range_compare);
    size_t merged = 0;
    for (size_t i = 1; i < out->count; i++) {
        struct range *cur = &out->items[merged];
        if (out->items[i].start <= cur->end) {
            if (out->items[i].end > cur->end)
                cur->end = out->items[i].end;
        } else {
            out->items[++merged] = out->items[i];
        }
    }
    out->count = merged + 1;
}

void masker_mask_into(struct masker *masker, const char *text, size_t len, struct buf *out)
{
    struct ranges found = {0};
    find_ranges(masker, text, len, &found);
    size_t pos = 0;
    for (size_t i = 0; i < found.count; i++) {
        buf_append(out, text + pos, found.items[i].start - pos);
        buf_append(out, MASK, sizeof(MASK) - 1);
        pos = found.items[i].end;
    }
    buf_append(out, text + pos, len - pos);
    free(found.items);
}

char *masker_mask(struct masker *masker, const char *text, size_t len)
{
    struct buf out = BUF_INIT;
    buf_reserve(&out, len);
    masker_mask_into(masker, text, len, &out);
    return buf_steal(&out);
}

/* ---- streams ---- */

/* Whether s[0..len) is a proper prefix of some pattern (so more bytes could complete one). */
static bool is_pattern_prefix(const struct masker *masker, const struct masker_index *index,
                              const char *s, size_t len)
{
    struct pattern key = {(char *)s, len};
    size_t lo = 0, hi = masker->pattern_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pattern_order(&masker->patterns[index->sorted[mid]], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < masker->pattern_count; lo++) {
        const struct pattern *p = &masker->patterns[index->sorted[lo]];
        if (p->len < len || memcmp(p->bytes, s, len) != 0)
            return false;
        if (p->len > len)
            return true;
    }
    return false;
}

/* The first position from which the tail of text could still begin a pattern. */
static size_t hold_start(struct masker *masker, const char *text, size_t len)
{
    if (!masker->pattern_count)
        return len;
    const struct masker_index *index = index_get(masker);
    size_t from = len >= index->max_len ? len - index->max_len + 1 : 0;
    for (size_t j = from; j < len; j++)
        if (is_pattern_prefix(masker, index, text + j, len - j))
            return j;
    return len;
}

void masker_stream_init(struct masker_stream *stream, struct masker *masker)
{
    stream->masker = masker;
    buf_init(&stream->pending);
    stream->touching_mask = false;
}

/* Emits the part of text[0..len) no pattern can still cover; returns how many bytes that was. */
static size_t stream_emit(struct masker_stream *stream, const char *text, size_t len, bool final,
                          struct buf *out)
{
    if (!len)
        return 0;
    struct ranges found = {0};
    find_ranges(stream->masker, text, len, &found);
    size_t cut = final ? len : hold_start(stream->masker, text, len);
    for (size_t i = 0; i < found.count; i++)
        if (found.items[i].start < cut && found.items[i].end > cut)
            cut = found.items[i].start; /* never emit part of a masked range */
    size_t pos = 0;
    bool touching = false;
    for (size_t i = 0; i < found.count && found.items[i].end <= cut; i++) {
        const struct range *r = &found.items[i];
        /* A range that touches the "***" already written merges into it. */
        if (!(r->start == 0 && stream->touching_mask)) {
            buf_append(out, text + pos, r->start - pos);
            buf_append(out, MASK, sizeof(MASK) - 1);
        }
        pos = r->end;
        touching = r->end == cut;
    }
    buf_append(out, text + pos, cut - pos);
    if (cut > 0)
        stream->touching_mask = touching && pos == cut;
    free(found.items);
    return cut;
}

void masker_stream_feed(struct masker_stream *stream, const char *data, size_t len, struct buf *out)
{
    if (stream->pending.len == 0) {
        /* The common case: nothing held back, so scan the caller's bytes in place. */
        size_t done = stream_emit(stream, data, len, false, out);
        buf_append(&stream->pending, data + done, len - done);
        return;
    }
    buf_append(&stream->pending, data, len);
    size_t done = stream_emit(stream, stream->pending.data, stream->pending.len, false, out);
    buf_consume(&stream->pending, done);
}

void masker_stream_flush(struct masker_stream *stream, struct buf *out)
{
    stream_emit(stream, stream->pending.data, stream->pending.len, true, out);
    buf_reset(&stream->pending);
    stream->touching_mask = false;
}

void masker_stream_free(struct masker_stream *stream)
{
    buf_free(&stream->pending);
}
