/* The four status functions over a struct status_source. */
#include "workflow/status.h"

static struct status_now status_ask(void *host)
{
    struct status_now now = {0};
    const struct status_source *source = host;
    if (source && source->query)
        source->query(source, &now);
    return now;
}

static int status_answer(struct expr_value *out, bool b)
{
    *out = (struct expr_value){.kind = EXPR_BOOLEAN, .boolean = b};
    return 0;
}

static int fn_success(void *host, const struct expr_value *args, size_t n, struct expr_value *out,
                      struct error *err)
{
    (void)args, (void)n, (void)err;
    struct status_now now = status_ask(host);
    return status_answer(out, now.succeeded && !now.cancelled);
}

static int fn_failure(void *host, const struct expr_value *args, size_t n, struct expr_value *out,
                      struct error *err)
{
    (void)args, (void)n, (void)err;
    struct status_now now = status_ask(host);
    return status_answer(out, now.failed && !now.cancelled);
}

static int fn_cancelled(void *host, const struct expr_value *args, size_t n, struct expr_value *out,
                        struct error *err)
{
    (void)args, (void)n, (void)err;
    return status_answer(out, status_ask(host).cancelled);
}

static int fn_always(void *host, const struct expr_value *args, size_t n, struct expr_value *out,
                     struct error *err)
{
    (void)host, (void)args, (void)n, (void)err;
    return status_answer(out, true);
}

const struct expr_function status_functions[] = {
    {"success", 0, 0, fn_success},
    {"failure", 0, 0, fn_failure},
    {"cancelled", 0, 0, fn_cancelled},
    {"always", 0, 0, fn_always},
    {0},
};
