#include "runner/step_commands.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct masker *masker;
static struct step_commands *commands;
static struct step_commands_options options;
static struct buf logs;

static void setup(void)
{
    masker = masker_new();
    memset(&options, 0, sizeof(options));
    options.enhanced_annotations = true;
    options.step_context_name = "build";
    commands = step_commands_new(masker, &options);
    buf_init(&logs);
}

static void teardown(void)
{
    step_commands_free(commands);
    masker_free(masker);
    buf_free(&logs);
}

/* Criterion's suite macro, unknown to cppcheck */
// cppcheck-suppress unknownMacro
TestSuite(step_commands, .init = setup, .fini = teardown);

static void reopen(void)
{
    step_commands_free(commands);
    commands = step_commands_new(masker, &options);
}

/* Processes a line; the LOG lines it produced, joined with '\n', are in `logs`. */
static struct step_command_result run(const char *line)
{
    struct step_command_result r = step_commands_process(commands, line, strlen(line));
    buf_reset(&logs);
    for (size_t i = 0; i < r.count; i++) {
        if (r.actions[i].kind != STEP_ACTION_LOG)
            continue;
        if (logs.len)
            buf_putc(&logs, '\n');
        buf_puts(&logs, r.actions[i].text);
    }
    return r;
}

static const struct step_action *find(struct step_command_result r, enum step_action_kind kind)
{
    for (size_t i = 0; i < r.count; i++)
        if (r.actions[i].kind == kind)
            return &r.actions[i];
    return NULL;
}

static size_t count_kind(struct step_command_result r, enum step_action_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < r.count; i++)
        n += r.actions[i].kind == kind;
    return n;
}

Test(step_commands, plain_output_is_a_log_line)
{
    struct step_command_result r = run("hello world :: not a command");
    cr_assert_not(r.is_command);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(logs.data, "hello world :: not a command");
}

Test(step_commands, unknown_command_is_plain_output)
{
    struct step_command_result r = run("::frobnicate::x");
    cr_assert_not(r.is_command);
    cr_assert_str_eq(logs.data, "::frobnicate::x");
}

Test(step_commands, runner_markers_cannot_be_faked)
{
    run("##[start-action id=x] and ##[end-action]");
    cr_assert_str_eq(logs.data, "##[\\start-action id=x] and ##[\\end-action]");
}

Test(step_commands, add_mask_masks_the_very_next_line)
{
    struct step_command_result r = run("::add-mask::my-new-secret");
    cr_assert(r.is_command);
    cr_assert_eq(r.count, 0, "add-mask is not echoed by default");
    char *masked = masker_mask(masker, "got my-new-secret", 17);
    cr_assert_str_eq(masked, "got ***");
    free(masked);
}

Test(step_commands, add_mask_with_escaped_newline_masks_each_line)
{
    run("::add-mask::first-part%0Asecond-part");
    char *masked = masker_mask(masker, "x second-part y", 15);
    cr_assert_str_eq(masked, "x *** y");
    free(masked);
}

Test(step_commands, add_mask_echo_shows_stars_only)
{
    options.echo = true;
    reopen();
    run("::add-mask::visible-secret");
    cr_assert_str_eq(logs.data, "::add-mask::***");
}

Test(step_commands, add_mask_empty_warns)
{
    struct step_command_result r = run("::add-mask::   ");
    const struct step_action *a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_not_null(a);
    cr_assert_eq(a->annotation.level, ANNOTATION_WARNING);
    cr_assert_str_eq(a->annotation.message,
                     "Can't add secret mask for empty string in ##[add-mask] command.");
    cr_assert_str_eq(logs.data,
                     "##[warning]Can't add secret mask for empty string in ##[add-mask] command.");
}

Test(step_commands, group_and_endgroup)
{
    struct step_command_result r = run("::group::Build step");
    cr_assert_str_eq(logs.data, "##[group]Build step");
    cr_assert_str_eq(find(r, STEP_ACTION_GROUP)->text, "Build step");
    r = run("::endgroup::");
    cr_assert_str_eq(logs.data, "##[endgroup]");
    cr_assert_not_null(find(r, STEP_ACTION_END_GROUP));
}

Test(step_commands, legacy_form_is_understood)
{
    struct step_command_result r = run("##[group]Old style");
    cr_assert(r.is_command);
    cr_assert_str_eq(logs.data, "##[group]Old style");
    r = run("prefix ##[set-output name=x%3By;]a%5Db");
    const struct step_action *a = find(r, STEP_ACTION_SET_OUTPUT);
    cr_assert_str_eq(a->name, "x;y");
    cr_assert_str_eq(a->text, "a]b");
}

Test(step_commands, error_with_all_properties)
{
    struct step_command_result r =
        run("::error file=app.js,line=10,col=15,endLine=10,endColumn=20,title=Bad thing::Oops");
    const struct step_action *a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_not_null(a);
    cr_assert_eq(a->annotation.level, ANNOTATION_ERROR);
    cr_assert_str_eq(a->annotation.message, "Oops");
    cr_assert_str_eq(a->annotation.file, "app.js");
    cr_assert_str_eq(a->annotation.title, "Bad thing");
    cr_assert_eq(a->annotation.line, 10);
    cr_assert_eq(a->annotation.end_line, 10);
    cr_assert_eq(a->annotation.col, 15);
    cr_assert_eq(a->annotation.end_column, 20);
    cr_assert_str_eq(logs.data, "##[error]Oops");
}

Test(step_commands, warning_notice_debug_levels)
{
    struct step_command_result r = run("::warning::careful");
    cr_assert_eq(find(r, STEP_ACTION_ANNOTATION)->annotation.level, ANNOTATION_WARNING);
    cr_assert_str_eq(logs.data, "##[warning]careful");
    r = run("::notice title=T::fyi");
    cr_assert_eq(find(r, STEP_ACTION_ANNOTATION)->annotation.level, ANNOTATION_NOTICE);
    cr_assert_str_eq(logs.data, "##[notice]fyi");
    r = run("::debug::hidden");
    cr_assert(r.is_command);
    cr_assert_eq(r.count, 0, "debug lines only with step debug");
    options.debug = true;
    reopen();
    run("::debug::two%0Alines");
    cr_assert_str_eq(logs.data, "##[debug]two\n##[debug]lines");
}

Test(step_commands, notice_ignored_without_enhanced_annotations)
{
    options.enhanced_annotations = false;
    reopen();
    struct step_command_result r = run("::notice::hello");
    cr_assert_not(r.is_command);
    cr_assert_str_eq(logs.data, "::notice::hello");
}

Test(step_commands, escapes_in_data_and_properties)
{
    struct step_command_result r =
        run("::error file=a%3Ab%2Cc.txt,title=100%25::line1%0Aline2%0D %25 %3A %2C");
    const struct step_action *a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_str_eq(a->annotation.file, "a:b,c.txt");
    cr_assert_str_eq(a->annotation.title, "100%");
    /* data keeps %3A and %2C: only properties unescape them */
    cr_assert_str_eq(a->annotation.message, "line1\nline2\r % %3A %2C");
    /* "%250A" is a literal "%0A", not a newline */
    r = run("::warning::100%250A");
    cr_assert_str_eq(find(r, STEP_ACTION_ANNOTATION)->annotation.message, "100%0A");
}

Test(step_commands, property_parsing_as_dotnet_split)
{
    struct step_command_result r = run("::error  title==a=b ,,line=5,=x,col=::m");
    const struct step_action *a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_str_eq(a->annotation.title, "a=b ", "pieces are not trimmed, only the whole list");
    cr_assert_eq(a->annotation.line, 5);
    cr_assert_eq(a->annotation.col, 0);
    r = run("::error title=t, line=5::m"); /* the key is " line" */
    cr_assert_eq(find(r, STEP_ACTION_ANNOTATION)->annotation.line, 0);
}

Test(step_commands, leading_white_space_and_case)
{
    struct step_command_result r = run("   ::WARNING::loud");
    cr_assert(r.is_command);
    cr_assert_str_eq(logs.data, "##[warning]loud");
}

Test(step_commands, line_and_column_rules)
{
    options.debug = true;
    reopen();
    struct step_command_result r = run("::error endLine=3::m");
    const struct step_action *a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_eq(a->annotation.line, 3);
    cr_assert_eq(a->annotation.end_line, 3);
    cr_assert(strstr(logs.data,
                     "##[debug]Invalid error command value. 'endLine' can only be set if 'line' "
                     "is provided"));

    r = run("::warning col=4::m");
    a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_eq(a->annotation.col, 0);
    cr_assert(strstr(logs.data, "'col' and 'endColumn' can only be set if 'line' value is "
                                "provided."));

    r = run("::error line=1,endLine=2,col=1,endColumn=5::m");
    a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_eq(a->annotation.col, 0);
    cr_assert_eq(a->annotation.end_column, 0);
    cr_assert(strstr(logs.data, "cannot be set if 'line' and 'endLine' are different values."));

    r = run("::error line=5,endLine=2::m");
    a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_eq(a->annotation.line, 0);
    cr_assert_eq(a->annotation.end_line, 0);
    cr_assert(strstr(logs.data, "'endLine' cannot be less than 'line'."));

    r = run("::error line=5,col=9,endColumn=2::m");
    a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_eq(a->annotation.line, 5);
    cr_assert_eq(a->annotation.col, 0);
    cr_assert(strstr(logs.data, "'endColumn' cannot be less than 'col'."));

    r = run("::error line=5,endColumn=7::m");
    a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_eq(a->annotation.col, 7);
    cr_assert(strstr(logs.data, "'endColumn' can only be set if 'col' is provided"));
}

Test(step_commands, annotation_file_made_relative_to_workspace)
{
    options.workspace = "/home/runner/work/repo/repo";
    options.repository = "octo/repo";
    reopen();
    struct step_command_result r = run("::error file=/home/runner/work/repo/repo/src/a.c::m");
    const struct step_action *a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_str_eq(a->annotation.file, "src/a.c");
    cr_assert_str_eq(a->annotation.repo, "octo/repo");
    r = run("::error file=/elsewhere/b.c::m");
    a = find(r, STEP_ACTION_ANNOTATION);
    cr_assert_str_eq(a->annotation.file, "/elsewhere/b.c");
    cr_assert_null(a->annotation.repo);
}

Test(step_commands, stop_commands_and_resume)
{
    struct step_command_result r = run("::stop-commands::pause-token-1234");
    cr_assert(r.is_command);
    cr_assert_str_eq(logs.data, "::stop-commands::pause-token-1234");
    r = run("::error::not an error now");
    cr_assert_not(r.is_command);
    cr_assert_null(find(r, STEP_ACTION_ANNOTATION));
    cr_assert_str_eq(logs.data, "::error::not an error now");
    /* the token is longer than 6 characters: it is masked */
    char *masked = masker_mask(masker, "pause-token-1234", 16);
    cr_assert_str_eq(masked, "***");
    free(masked);
    r = run("::PAUSE-TOKEN-1234::");
    cr_assert(r.is_command);
    r = run("::error::an error again");
    cr_assert_not_null(find(r, STEP_ACTION_ANNOTATION));
    /* the token is no longer a command */
    r = run("::pause-token-1234::");
    cr_assert_not(r.is_command);
}

Test(step_commands, stop_commands_refuses_unsafe_tokens)
{
    const char *tokens[] = {"::stop-commands::", "::stop-commands::pause-logging",
                            "::stop-commands::set-env", "::stop-commands::STOP-COMMANDS"};
    for (size_t i = 0; i < 4; i++) {
        reopen();
        struct step_command_result r = run(tokens[i]);
        cr_assert(r.is_command);
        cr_assert_not_null(find(r, STEP_ACTION_FAIL_STEP), "%s", tokens[i]);
        cr_assert_str_eq(find(r, STEP_ACTION_ANNOTATION)->annotation.message,
                         STEP_COMMANDS_STOP_TOKEN_MESSAGE);
        cr_assert(strstr(STEP_COMMANDS_STOP_TOKEN_MESSAGE,
                         "You cannot use a endToken that is an empty string, the string "
                         "'pause-logging', or another workflow command."));
        /* not stopped: commands still work */
        r = run("::warning::w");
        cr_assert_not_null(find(r, STEP_ACTION_ANNOTATION));
    }
    options.allow_unsecure_stop_tokens = true;
    reopen();
    struct step_command_result r = run("::stop-commands::pause-logging");
    cr_assert_null(find(r, STEP_ACTION_FAIL_STEP));
    r = run("::warning::w");
    cr_assert_not(r.is_command);
}

Test(step_commands, echo_on_and_off)
{
    struct step_command_result r = run("::echo::on");
    cr_assert(r.is_command);
    cr_assert_eq(logs.len, 0, "echo was off when ::echo::on came");
    run("::group::g");
    cr_assert_str_eq(logs.data, "::group::g\n##[group]g");
    run("::warning::w"); /* warning is never echoed */
    cr_assert_str_eq(logs.data, "##[warning]w");
    run("::echo::Off   ");
    cr_assert_str_eq(logs.data, "::echo::Off   ");
    run("::group::g");
    cr_assert_str_eq(logs.data, "##[group]g");
}

Test(step_commands, echo_bad_value_fails_the_step)
{
    struct step_command_result r = run("::echo::maybe");
    cr_assert_not_null(find(r, STEP_ACTION_FAIL_STEP));
    cr_assert_str_eq(logs.data,
                     "##[error]Unable to process command '::echo::maybe' successfully.\n"
                     "##[error]Invalid echo command value. Possible values can be: 'on', 'off'. "
                     "Current value is: 'maybe'.");
    r = run("::echo::");
    cr_assert_str_eq(logs.data, "##[error]Unable to process command '::echo::' successfully.\n"
                                "##[error]Value cannot be null. (Parameter 'value')");
}

Test(step_commands, set_env_and_add_path_disabled_by_default)
{
    struct step_command_result r = run("::set-env name=FOO::bar");
    cr_assert(r.is_command);
    cr_assert_null(find(r, STEP_ACTION_SET_ENV));
    cr_assert_not_null(find(r, STEP_ACTION_FAIL_STEP));
    cr_assert_str_eq(logs.data,
                     "##[error]Unable to process command '::set-env name=FOO::bar' successfully.\n"
                     "##[error]The `set-env` command is disabled. Please upgrade to using "
                     "Environment Files or opt into unsecure command execution by setting the "
                     "`ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`. For more "
                     "information see: https://github.blog/changelog/"
                     "2020-10-01-github-actions-deprecating-set-env-and-add-path-commands/");
    r = run("::add-path::/opt/bin");
    cr_assert_null(find(r, STEP_ACTION_ADD_PATH));
    cr_assert(strstr(logs.data, "The `add-path` command is disabled. Please upgrade to using "
                                "Environment Files or opt into unsecure command execution by "
                                "setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment "
                                "variable to `true`."));
}

Test(step_commands, set_env_and_add_path_when_allowed)
{
    options.allow_unsecure_commands = true;
    reopen();
    struct step_command_result r = run("::set-env name=FOO::bar%0Abaz");
    const struct step_action *a = find(r, STEP_ACTION_SET_ENV);
    cr_assert_str_eq(a->name, "FOO");
    cr_assert_str_eq(a->text, "bar\nbaz");
    r = run("::add-path::/opt/bin");
    cr_assert_str_eq(find(r, STEP_ACTION_ADD_PATH)->text, "/opt/bin");
    r = run("::set-env name=node_options::--inspect");
    cr_assert_null(find(r, STEP_ACTION_SET_ENV));
    cr_assert_str_eq(find(r, STEP_ACTION_ANNOTATION)->annotation.message,
                     "Can't update NODE_OPTIONS environment variable using ::set-env:: command.");
    cr_assert_null(find(r, STEP_ACTION_FAIL_STEP));
    r = run("::set-env::nameless");
    cr_assert_not_null(find(r, STEP_ACTION_FAIL_STEP));
    cr_assert(
        strstr(logs.data, "##[error]Required field 'name' is missing in ##[set-env] command."));
    r = run("::add-path::");
    cr_assert(strstr(logs.data, "##[error]Value cannot be null. (Parameter 'path')"));
}

Test(step_commands, unsecure_settings_read_as_the_official_runner)
{
    cr_assert(step_commands_unsecure_commands_allowed("true", NULL));
    cr_assert(step_commands_unsecure_commands_allowed(NULL, " TRUE "));
    cr_assert_not(step_commands_unsecure_commands_allowed("1", NULL));
    cr_assert_not(step_commands_unsecure_commands_allowed("false", "yes"));
    cr_assert(step_commands_unsecure_stop_tokens_allowed("1", NULL));
    cr_assert(step_commands_unsecure_stop_tokens_allowed(NULL, "$True"));
    cr_assert_not(step_commands_unsecure_stop_tokens_allowed("yes", NULL));
}

Test(step_commands, set_output_and_save_state)
{
    options.debug = true;
    reopen();
    struct step_command_result r = run("::set-output name=result::42");
    const struct step_action *a = find(r, STEP_ACTION_SET_OUTPUT);
    cr_assert_str_eq(a->name, "result");
    cr_assert_str_eq(a->text, "42");
    cr_assert_str_eq(logs.data, "##[debug]steps.build.outputs.result='42'");
    r = run("::set-output name=my-out::x");
    cr_assert_str_eq(logs.data, "##[debug]steps['build']['outputs']['my-out']='x'");
    r = run("::save-state name=pid::123");
    a = find(r, STEP_ACTION_SAVE_STATE);
    cr_assert_str_eq(a->name, "pid");
    cr_assert_str_eq(a->text, "123");
    cr_assert_str_eq(logs.data, "##[debug]Save intra-action state pid = 123");
    r = run("::set-output::v");
    cr_assert_not_null(find(r, STEP_ACTION_FAIL_STEP));
    cr_assert(strstr(logs.data, "Required field 'name' is missing in ##[set-output] command."));
    r = run("::save-state::v");
    cr_assert(strstr(logs.data, "Required field 'name' is missing in ##[save-state] command."));
}

Test(step_commands, set_output_deprecation_warning_when_the_server_asks)
{
    options.deprecate_step_output_commands = true;
    reopen();
    struct step_command_result r = run("::set-output name=a::b");
    cr_assert_not_null(find(r, STEP_ACTION_SET_OUTPUT));
    cr_assert_str_eq(logs.data,
                     "##[warning]The `set-output` command is deprecated and will be disabled "
                     "soon. Please upgrade to using Environment Files. For more information see: "
                     "https://github.blog/changelog/"
                     "2022-10-11-github-actions-deprecating-save-state-and-set-output-commands/");
    r = run("::save-state name=a::b");
    cr_assert(strstr(logs.data, "The `save-state` command is deprecated"));
}

Test(step_commands, matchers)
{
    struct step_command_result r = run("::add-matcher::.github/matcher.json");
    cr_assert_str_eq(find(r, STEP_ACTION_ADD_MATCHER)->text, ".github/matcher.json");
    r = run("::add-matcher::");
    cr_assert_str_eq(logs.data, "##[warning]File path must be specified.");
    r = run("::remove-matcher owner=eslint::");
    cr_assert_str_eq(find(r, STEP_ACTION_REMOVE_MATCHER)->name, "eslint");
    r = run("::remove-matcher owner=eslint::file.json");
    cr_assert_str_eq(logs.data, "##[warning]Either specify an owner name or a file path in "
                                "##[remove-matcher] command. Both values cannot be set.");
    r = run("::remove-matcher::");
    cr_assert_str_eq(logs.data, "##[warning]Either an owner name or a file path must be "
                                "specified in ##[remove-matcher] command.");
    cr_assert_eq(count_kind(r, STEP_ACTION_REMOVE_MATCHER), 0);
}

Test(step_commands, debug_messages_of_stop_echo_and_notice)
{
    options.debug = true;
    reopen();
    run("::stop-commands::tok-abcdefg");
    cr_assert_str_eq(logs.data, "::stop-commands::tok-abcdefg\n"
                                "##[debug]Paused processing commands until the token you called "
                                "::stopCommands:: with is received");
    run("::warning::ignored");
    cr_assert_str_eq(logs.data, "##[debug]Process commands has been stopped and waiting for "
                                "'##[tok-abcdefg]' to resume.\n::warning::ignored");
    run("::tok-abcdefg::");
    cr_assert_str_eq(logs.data, "::tok-abcdefg::\n##[debug]Resume processing commands");
    run("::echo::on");
    cr_assert_str_eq(logs.data, "##[debug]Setting echo command value to 'on'");
    run("::echo::off");
    cr_assert_str_eq(logs.data, "::echo::off\n##[debug]Setting echo command value to 'off'");
    options.enhanced_annotations = false;
    reopen();
    run("::notice::n");
    cr_assert_str_eq(logs.data, "##[debug]Enhanced Annotations not enabled on the server: "
                                "'notice' command will not be processed.\n::notice::n");
    run("::error title=t::e");
    cr_assert_str_eq(logs.data, "##[debug]Enhanced Annotations not enabled on the server. The "
                                "'title', 'end_line', and 'end_column' fields are unsupported.\n"
                                "##[error]e");
}

Test(step_commands, stop_token_message_text)
{
    struct step_command_result r = run("::stop-commands::");
    cr_assert_str_eq(
        find(r, STEP_ACTION_ANNOTATION)->annotation.message,
        "You cannot use a endToken that is an empty string, the string 'pause-logging', or "
        "another workflow command. For more information see: "
        "https://docs.github.com/actions/learn-github-actions/"
        "workflow-commands-for-github-actions#example-stopping-and-starting-workflow-commands or "
        "opt into insecure command execution by setting the "
        "`ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS` environment variable to `true`.");
    cr_assert_str_eq(logs.data, "##[error]You cannot use a endToken that is an empty string, the "
                                "string 'pause-logging', or another workflow command. For more "
                                "information see: https://docs.github.com/actions/"
                                "learn-github-actions/workflow-commands-for-github-actions"
                                "#example-stopping-and-starting-workflow-commands or opt into "
                                "insecure command execution by setting the "
                                "`ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS` environment "
                                "variable to `true`.");
}
