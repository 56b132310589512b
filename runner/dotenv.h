/* dotenv: KEY=VALUE text, as in act's .secrets/.vars files, the official runner's .env file
 * beside its config, and `--secret K=V` flags. Lines: `KEY=VALUE`, optional `export `, `#`
 * comments, blank lines; values may be single-quoted (literal) or double-quoted (with \n,
 * \t, \\ and \" escapes, and newlines inside the quotes). */
#ifndef HARRIER_RUNNER_DOTENV_H
#define HARRIER_RUNNER_DOTENV_H

#include "lib/error.h"

#include <jansson.h>

/* Adds each pair of text to object (later ones win). where names the source in errors,
 * which carry the line number. Returns 0 or negative with err set. */
int dotenv_parse(const char *text, const char *where, json_t *object, struct error *err);

/* One `KEY=VALUE` (a flag's value): the value is taken as is, no quotes or escapes. */
int dotenv_parse_pair(const char *pair, const char *flag, json_t *object, struct error *err);

#endif
