/* libFuzzer target for workflow/expr: the input up to the first NUL byte is an expression,
 * the rest (when it is JSON) the value of a context named "data". Each input is parsed,
 * walked, evaluated against fixed contexts with a host function, and its result converted
 * to a string and to JSON. Crashes, leaks and sanitizer reports are the findings. */
#include "lib/mem.h"
#include "workflow/expr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *CONTEXTS = "{\"github\": {\"ref\": \"refs/heads/main\", \"event\": "
                              "{\"commits\": [{\"id\": \"a\", \"n\": 1},"
                              " {\"id\": \"b\", \"n\": 2.5, \"tags\": [\"x\", null, true]}]}},"
                              " \"env\": {\"A\": \"1\", \"B\": \"0x10\", \"EMPTY\": \"\", "
                              "\"Unicode\": \"\\u00e9\\u00df\\u2028\"},"
                              " \"matrix\": {\"os\": [\"linux\", \"windows\"], \"deep\": {\"a\": "
                              "{\"b\": {\"c\": [[1], [2]]}}}}}";

static int host_echo(void *host, const struct expr_value *args, size_t nargs,
                     struct expr_value *out, struct error *err)
{
    (void)host;
    if (nargs > 0 && args[0].kind == EXPR_STRING && strcmp(args[0].string, "fail") == 0)
        return error_set(err, -1, "echo failed");
    if (nargs == 0) {
        out->kind = EXPR_BOOLEAN;
        out->boolean = true;
        return 0;
    }
    out->kind = args[0].kind;
    out->boolean = args[0].boolean;
    out->number = args[0].number;
    out->string = args[0].string ? xstrdup(args[0].string) : NULL;
    out->json = args[0].json ? json_incref(args[0].json) : NULL;
    return 0;
}

static const struct expr_function FUNCTIONS[] = {
    {"echo", 0, 3, host_echo}, {"success", 0, 0, host_echo}, {0}};

static void ignore(void *data, const char *name)
{
    (void)data;
    (void)name;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    size_t text_len = strlen(text);

    json_t *contexts = json_loads(CONTEXTS, 0, NULL);
    if (text_len + 1 < size) {
        json_t *extra = json_loadb(text + text_len + 1, size - text_len - 1, JSON_DECODE_ANY, NULL);
        if (extra)
            json_object_set_new(contexts, "data", extra);
    }
    static const char *const names[] = {"github", "env", "matrix", "data", NULL};
    struct expr_parse_options options = {names, FUNCTIONS};
    struct expr_context ctx = {contexts, FUNCTIONS, NULL, (size & 1) ? 4096 : 0};

    struct expr *e = NULL;
    struct error err = {0};
    enum expr_stage stage;
    if (expr_parse(text, &options, &e, &stage, &err) == 0) {
        expr_walk_references(e, ignore, ignore, NULL);
        struct expr_value v = {0};
        if (expr_evaluate(e, &ctx, &v, &err) == 0) {
            free(expr_value_to_string(&v));
            json_decref(expr_value_to_json(&v));
            (void)expr_value_truthy(&v);
        }
        expr_value_clear(&v);
        expr_free(e);
    }
    json_decref(contexts);
    free(text);
    return 0;
}
