/* libFuzzer target for the token JSON decoder and the context-data decoder: the input is
 * parsed as JSON, decoded as a template token (and, when that works, written in both
 * styles and decoded again, which must give the same JSON) and as PipelineContextData
 * (encoded back and decoded again). Crashes, leaks and sanitizer reports are the findings. */
#include "lib/json.h"
#include "workflow/context_data.h"
#include "workflow/token.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct error err = {0};
    json_t *j = json_load_text((const char *)data, size, "fuzz", &err);
    if (!j)
        return 0;
    struct arena arena;
    arena_init(&arena, 0);
    struct token *t = token_from_json(&arena, j, &err);
    if (t) {
        json_t *a = token_to_json(t, TOKEN_JSON_CORPUS);
        json_t *b = token_to_json(t, TOKEN_JSON_JOB_MESSAGE);
        struct token *t2 = token_from_json(&arena, b, &err);
        if (!t2)
            abort();
        json_t *c = token_to_json(t2, TOKEN_JSON_CORPUS);
        if (!json_equal(a, c))
            abort(); /* a round trip must not change the tree */
        json_decref(a);
        json_decref(b);
        json_decref(c);
    }
    struct context_data_marks marks = {0};
    json_t *plain = context_data_decode(j, &marks, &err);
    if (plain) {
        json_t *enc = context_data_encode(plain, &marks);
        struct context_data_marks marks2 = {0};
        json_t *again = context_data_decode(enc, &marks2, &err);
        if (!again || !json_equal(again, plain))
            abort();
        json_decref(again);
        json_decref(enc);
        context_data_marks_free(&marks2);
        json_decref(plain);
    }
    context_data_marks_free(&marks);
    json_decref(j);
    arena_free(&arena);
    return 0;
}
