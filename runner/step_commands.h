/* step_commands: the workflow commands a step writes on its output (`::name k=v,k=v::data`
 * and the legacy `##[name k=v;k=v]data`), processed line by line as the official runner's
 * ActionCommandManager does. Holds one step's state (stop-commands token, echo); add-mask
 * values go into the masker at once, so they are masked from the very next line on. Each
 * line becomes a list of typed actions for the executor, log lines among them (unmasked:
 * the events writer masks every string it is given). */
#ifndef HARRIER_RUNNER_STEP_COMMANDS_H
#define HARRIER_RUNNER_STEP_COMMANDS_H

#include "runner/masker.h"

#include <stdbool.h>
#include <stddef.h>

enum step_action_kind {
    STEP_ACTION_LOG,         /* text: a line for the step's log */
    STEP_ACTION_ANNOTATION,  /* annotation (its "##[error]…" line is a LOG action just before) */
    STEP_ACTION_SET_OUTPUT,  /* name, text: ::set-output */
    STEP_ACTION_SET_ENV,     /* name, text: ::set-env (when unsecure commands are allowed) */
    STEP_ACTION_ADD_PATH,    /* text: ::add-path (when unsecure commands are allowed) */
    STEP_ACTION_SAVE_STATE,  /* name, text: ::save-state */
    STEP_ACTION_GROUP,       /* text: the title (the "##[group]…" line is a LOG action too) */
    STEP_ACTION_END_GROUP,   /* (the "##[endgroup]" line is a LOG action too) */
    STEP_ACTION_ADD_MATCHER, /* text: the problem-matcher file, as written */
    STEP_ACTION_REMOVE_MATCHER, /* name: the owner, or text: the file */
    STEP_ACTION_FAIL_STEP,      /* a command failed: the step's result becomes failure */
};

enum annotation_level { ANNOTATION_ERROR, ANNOTATION_WARNING, ANNOTATION_NOTICE };

/* An annotation as the official runner builds its Issue. Strings are NULL when absent,
 * numbers 0. The executor caps annotations at 10 per level per step, as GitHub does. */
struct step_annotation {
    enum annotation_level level;
    const char *message;
    const char *file; /* relative to the workspace when under it */
    const char *title;
    const char *repo; /* github.repository when file was made relative */
    int line, end_line, col, end_column;
};

struct step_action {
    enum step_action_kind kind;
    const char *name;
    const char *text;
    struct step_annotation annotation;
};

struct step_commands_options {
    bool echo;  /* echo commands by default (true when ACTIONS_STEP_DEBUG is on) */
    bool debug; /* show "##[debug]" lines (ACTIONS_STEP_DEBUG) */
    bool allow_unsecure_commands;        /* step_commands_unsecure_commands_allowed() */
    bool allow_unsecure_stop_tokens;     /* step_commands_unsecure_stop_tokens_allowed() */
    bool enhanced_annotations;           /* DistributedTask.EnhancedAnnotations (github.com: on) */
    bool deprecate_step_output_commands; /* DistributedTask.DeprecateStepOutputCommands */
    const char *step_context_name;       /* the step's id, for "steps.<id>.outputs.<name>" */
    const char *workspace;               /* github.workspace; NULL leaves annotation files alone */
    const char *repository;              /* github.repository */
};

struct step_commands;

/* One per step. masker must outlive it; options' strings are copied. */
struct step_commands *step_commands_new(struct masker *masker,
                                        const struct step_commands_options *options);
void step_commands_free(struct step_commands *commands);

struct step_command_result {
    bool is_command; /* the line was taken as a workflow command */
    const struct step_action *actions;
    size_t count;
};

/* Processes one line of output (without its line ending). The result, and every string in it,
 * stays valid until the next call or step_commands_free. */
struct step_command_result step_commands_process(struct step_commands *commands, const char *line,
                                                 size_t len);

/* ACTIONS_ALLOW_UNSECURE_COMMANDS as the official runner reads it: .NET bool.TryParse of the
 * runner's own environment, else of the step's env context. Either value may be NULL. */
bool step_commands_unsecure_commands_allowed(const char *runner_env, const char *step_env);

/* ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS: "true", "1" or "$true" (any case), from the
 * runner's environment, else from the step's env context. */
bool step_commands_unsecure_stop_tokens_allowed(const char *runner_env, const char *step_env);

/* The official runner's messages, for tests and for the executor. */
extern const char STEP_COMMANDS_DISABLED_MESSAGE[];   /* printf format, %s: the command */
extern const char STEP_COMMANDS_DEPRECATED_MESSAGE[]; /* printf format, %s: the command */
extern const char STEP_COMMANDS_STOP_TOKEN_MESSAGE[];

#endif
