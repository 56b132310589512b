/* The local-mode commands: exec (plan and run a workflow) and worker (run one job). */
#include "runner/commands.h"

#include "lib/path.h"
#include "runner/job_message.h"
#include "runner/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const struct cli_option command_exec_options[] = {
    {"workflow", 'W', true, false, false, "FILE", "run this workflow file"},
    {"job", 'j', true, false, false, "JOB", "run only this job (and what it needs)"},
    {"event", 0, true, false, false, "NAME", "event that triggers the run (default: push)"},
    {"eventpath", 'e', true, false, false, "FILE", "event payload JSON"},
    {"secret", 's', true, true, false, "K=V", "a secret (repeatable)"},
    {"secret-file", 0, true, false, false, "FILE", "secrets from a K=V file"},
    {"var", 0, true, true, false, "K=V", "a configuration variable (repeatable)"},
    {"input", 0, true, true, false, "K=V", "a workflow_dispatch input (repeatable)"},
    {"matrix", 0, true, true, false, "K:V", "run only matrix combinations with K=V"},
    {"jobs", 0, true, false, false, "N", "jobs to run at once (default: cores)"},
    {"list", 'l', false, false, false, NULL, "list the jobs and stop"},
    {"graph", 'g', false, false, false, NULL, "draw the job graph and stop"},
    {"dry-run", 'n', false, false, false, NULL, "plan and show, run nothing"},
    {"logs-dir", 0, true, false, false, "DIR", "write a log file per step into DIR"},
    {"json", 0, false, false, false, NULL, "print the raw event stream"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {"offline", 0, false, false, false, NULL, "use only cached actions"},
    {0},
};

const struct cli_option command_worker_options[] = {
    {"message", 0, true, false, false, "FILE", "read the job message from FILE (default: stdin)"},
    {"work", 0, true, false, false, "DIR", "the work folder (default: ./_work)"},
    {"name", 0, true, false, false, "NAME", "the runner's name (runner.name)"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {0},
};

int command_exec(const struct cli_command *cmd, struct cli_args *args)
{
    (void)args;
    fprintf(stderr, "harrier %s: local mode is not built yet\n", cmd->name);
    return EXEC_EXIT_JOB_FAILED;
}

/* The sandbox level from --sandbox; process by default, falling back (with one line saying
 * why) only when the admin did not ask for a level. */
int command_sandbox_level(const struct cli_command *cmd, const char *value,
                          enum sandbox_level *level, bool *fallback)
{
    *fallback = value == NULL;
    int parsed = sandbox_level_parse(value ? value : "process");
    if (parsed < 0)
        return cli_usage_error(cmd, "--sandbox must be none, process or strict, not '%s'", value);
    *level = (enum sandbox_level)parsed;
    return 0;
}

int command_worker(const struct cli_command *cmd, struct cli_args *args)
{
    const char *file = cli_get(cmd, args, "message");
    struct error err = {0};
    size_t len = 0;
    char *text = path_read_file(file ? file : "/dev/stdin", &len, &err);
    if (!text) {
        fprintf(stderr, "harrier worker: %s\n", err.message);
        return EXEC_EXIT_USAGE;
    }
    struct job_message *message = NULL;
    int rc = job_message_decode(text, len, &message, &err);
    free(text);
    if (rc < 0) {
        char line[ERROR_MESSAGE_MAX + ERROR_WHERE_MAX + 32];
        fprintf(stderr, "harrier worker: %s\n", error_format(&err, line, sizeof line));
        return EXEC_EXIT_USAGE;
    }
    struct worker_options options = {
        .work_root = cli_get(cmd, args, "work") ? cli_get(cmd, args, "work") : "_work",
        .runner_name = cli_get(cmd, args, "name"),
        .events_fd = STDOUT_FILENO,
    };
    if (command_sandbox_level(cmd, cli_get(cmd, args, "sandbox"), &options.sandbox_level,
                              &options.sandbox_fallback) < 0) {
        job_message_free(message);
        return EXEC_EXIT_USAGE;
    }
    bool succeeded = false;
    rc = worker_run(message, &options, &succeeded, &err);
    job_message_free(message);
    return rc < 0 || !succeeded ? EXEC_EXIT_JOB_FAILED : EXEC_EXIT_OK;
}
