/* libFuzzer target for the YAML reader and the template reader: the input is read as a
 * workflow (first byte even) or an action.yml (odd), through workflow/yaml_reader and the
 * schema, with small limits so deep and aliased inputs reach them; the result is written as
 * token JSON and read back. Crashes, leaks and sanitizer reports are the findings. */
#include "workflow/schema.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena arena;
    arena_init(&arena, 0);
    struct schema_context ctx;
    bool action = size > 0 && (data[0] & 1);
    schema_context_init(&ctx, &arena, action ? &schema_action : &schema_workflow);
    ctx.max_bytes = 1 << 20;
    struct yaml_reader_options options = {.max_nodes = 20000, .max_depth = 40};
    struct token *t =
        action ? schema_read_action(&ctx, "action.yml", (const char *)data, size, &options)
               : schema_read_workflow(&ctx, ".github/workflows/f.yml", (const char *)data, size,
                                      &options);
    if (t) {
        json_t *j = token_to_json(t, TOKEN_JSON_JOB_MESSAGE);
        struct error err = {0};
        struct token *back = token_from_json(&arena, j, &err);
        if (!back)
            abort(); /* what we write we must read */
        json_decref(j);
        const struct token *jobs = token_mapping_get(t, "jobs", true);
        if (jobs && jobs->type == TOKEN_MAPPING && jobs->u.mapping.count) {
            struct token *job = jobs->u.mapping.pairs[0].value;
            struct token *cond = token_mapping_get(job, "if", false);
            if (cond)
                schema_if_condition(&ctx, cond, "job-if");
        }
    }
    struct error err = {0};
    schema_context_check(&ctx, &err);
    schema_context_free(&ctx);
    arena_free(&arena);
    return 0;
}
