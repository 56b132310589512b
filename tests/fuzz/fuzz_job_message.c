/* libFuzzer target: the job message decoder (runner/job_message.h), which reads what GitHub's
 * service (or a hostile one) sends. It must refuse bad input with an error, never crash or
 * leak. */
#include "runner/job_message.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct job_message *m = NULL;
    struct error err = {0};
    if (job_message_decode((const char *)data, size, &m, &err) == 0) {
        bool secret;
        job_message_variable(m, "system.github.token", &secret);
        job_message_free(m);
    }
    return 0;
}
