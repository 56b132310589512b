/* action_steps: a composite action's runs.steps turned into the job message's step form
 * (runner/job_message.h), so that the worker runs them as it runs the job's steps: run steps
 * with their required shell, uses steps with their parsed reference, if: conditions under
 * GitHub's success() rule. Everything is allocated in the caller's arena. */
#ifndef HARRIER_RUNNER_ACTION_STEPS_H
#define HARRIER_RUNNER_ACTION_STEPS_H

#include "actions/action.h"
#include "lib/error.h"
#include "lib/mem.h"
#include "runner/job_message.h"
#include "workflow/token.h"

/* The steps of action (a composite) into *steps (in arena). owner makes the step ids unique
 * to one run of the action. Returns the number of steps, or negative with err naming the
 * step (file, line, column). */
int action_steps_convert(struct arena *arena, const struct action *action, const void *owner,
                         struct job_step **steps, struct error *err);

/* An if: condition (expression or literal token; NULL = fallback) as text; one that calls
 * none of success(), failure(), cancelled(), always() becomes "success() && (...)". */
const char *action_steps_condition(struct arena *arena, const struct token *t,
                                   const char *fallback);

#endif
