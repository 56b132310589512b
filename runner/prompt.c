/* The official runner's PromptManager, in C: question, "[press Enter for …]", validation,
 * "Entered value is invalid" and ask again. */
#include "runner/prompt.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

static bool answer_valid(enum prompt_check check, const char *value)
{
    switch (check) {
    case PROMPT_URL:
        return strncasecmp(value, "https://", 8) == 0 || strncasecmp(value, "http://", 7) == 0;
    case PROMPT_BOOL:
        return strcasecmp(value, "y") == 0 || strcasecmp(value, "n") == 0 ||
               strcasecmp(value, "true") == 0 || strcasecmp(value, "false") == 0;
    case PROMPT_ANY:
        break;
    }
    return *value != 0;
}

/* One line from in, trimmed; NULL at the end of input. Echo is off for secrets on a tty. */
static char *read_answer(struct prompt *p, bool secret)
{
    int fd = fileno(p->in);
    struct termios saved;
    bool quiet = secret && isatty(fd) && tcgetattr(fd, &saved) == 0;
    if (quiet) {
        struct termios t = saved;
        t.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &t);
    }
    struct buf line = BUF_INIT;
    int c;
    while ((c = fgetc(p->in)) != EOF && c != '\n')
        buf_putc(&line, (char)c);
    if (quiet) {
        tcsetattr(fd, TCSAFLUSH, &saved);
        fputc('\n', p->out);
    }
    if (c == EOF && line.len == 0) {
        buf_free(&line);
        return NULL;
    }
    char *text = buf_steal(&line);
    char *trimmed = xstrdup(str_trim(text));
    free(text);
    return trimmed;
}

int prompt_ask(struct prompt *p, const struct prompt_question *q, char **out, struct error *err)
{
    bool has_default = q->default_value && *q->default_value;
    if (p->unattended) {
        if (has_default || q->optional) {
            *out = xstrdup(has_default ? q->default_value : "");
            return 0;
        }
        return error_set(err, EINVAL,
                         "Invalid configuration provided for %s. Terminating unattended "
                         "configuration (pass --%s)",
                         q->arg, q->arg);
    }
    for (;;) {
        fprintf(p->out, "%s ", q->text);
        if (has_default)
            fprintf(p->out, "[press Enter for %s] ", q->default_value);
        else if (q->optional)
            fputs("[press Enter to skip] ", p->out);
        fflush(p->out);
        char *value = read_answer(p, q->secret);
        /* The end of input answers as an empty line does (the official runner reads null and
         * takes the default); with no default there is nothing to take. */
        if (!value && !has_default && !q->optional) {
            fputc('\n', p->out);
            char env[64];
            snprintf(env, sizeof env, "%s", q->arg);
            for (char *c = env; *c; c++)
                *c = (char)toupper((unsigned char)*c);
            return error_set(err, EINVAL,
                             "no answer for %s: the input ended; pass --%s (or "
                             "ACTIONS_RUNNER_INPUT_%s)",
                             q->arg, q->arg, env);
        }
        if (!value || (!*value && (has_default || q->optional))) {
            if (!value)
                fputc('\n', p->out);
            free(value);
            *out = xstrdup(has_default ? q->default_value : "");
            return 0;
        }
        if (*value && answer_valid(q->check, value)) {
            *out = value;
            return 0;
        }
        if (*value)
            fputs("Entered value is invalid\n", p->out);
        free(value);
    }
}

int prompt_yes_no(struct prompt *p, const char *arg, const char *text, bool default_value,
                  bool *answer, struct error *err)
{
    struct prompt_question q = {
        .arg = arg, .text = text, .default_value = default_value ? "Y" : "N", .check = PROMPT_BOOL};
    char *value = NULL;
    if (prompt_ask(p, &q, &value, err) < 0)
        return err->code;
    *answer = strcasecmp(value, "y") == 0 || strcasecmp(value, "true") == 0;
    free(value);
    return 0;
}
