/* The local-mode commands: exec (plan and run a workflow) and worker (run one job). */
#include "runner/commands.h"

#include <stdio.h>

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
    {"message", 0, true, false, false, "FILE", "read the job message from FILE"},
    {"sandbox", 0, true, false, false, "LEVEL", "none, process (default) or strict"},
    {0},
};

int command_exec(const struct cli_command *cmd, struct cli_args *args)
{
    (void)args;
    fprintf(stderr, "harrier %s: local mode is not built yet\n", cmd->name);
    return EXEC_EXIT_JOB_FAILED;
}

int command_worker(const struct cli_command *cmd, struct cli_args *args)
{
    (void)args;
    fprintf(stderr, "harrier %s: the worker is not built yet\n", cmd->name);
    return EXEC_EXIT_JOB_FAILED;
}
