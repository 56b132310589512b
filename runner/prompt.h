/* prompt: `harrier config`'s questions for values given neither as flags nor as
 * ACTIONS_RUNNER_INPUT_*, asked as the official config.sh asks them ("Enter the name of runner:
 * [press Enter for host]"). Answers are read from stdin, a terminal or piped lines; a secret is
 * read without echo on a terminal. With --unattended nothing is asked: the default is taken,
 * or configuration stops naming the missing value. */
#ifndef HARRIER_RUNNER_PROMPT_H
#define HARRIER_RUNNER_PROMPT_H

#include "lib/error.h"

#include <stdbool.h>
#include <stdio.h>

struct prompt {
    FILE *in, *out;  /* stdin and stdout for the command */
    bool unattended; /* never ask */
};

enum prompt_check {
    PROMPT_ANY,  /* any non-empty answer */
    PROMPT_URL,  /* http:// or https:// */
    PROMPT_BOOL, /* Y/N, true/false */
};

struct prompt_question {
    const char *arg;           /* the flag's name, for messages: "url" */
    const char *text;          /* the question, as the official runner words it */
    const char *default_value; /* NULL or "" when none */
    bool optional;             /* an empty answer is fine ("press Enter to skip") */
    bool secret;               /* no echo on a terminal */
    enum prompt_check check;
};

/* Asks until a valid answer comes; *out is a new string ("" for a skipped optional value).
 * Negative with err set when unattended and nothing can be taken, or when stdin ends. */
int prompt_ask(struct prompt *p, const struct prompt_question *q, char **out, struct error *err);
/* A Y/N question; *answer is the default when unattended. */
int prompt_yes_no(struct prompt *p, const char *arg, const char *text, bool default_value,
                  bool *answer, struct error *err);

#endif
