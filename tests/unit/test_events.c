#include "runner/events.h"

#include "lib/buf.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct masker *masker;
static struct events_writer *writer;
static struct buf stream;
static struct error err;

static int capture(void *context, const char *line, size_t len, struct error *e)
{
    (void)e;
    buf_append(context, line, len);
    return 0;
}

static void setup(void)
{
    masker = masker_new();
    masker_add_secret(masker, "s3cr3t-value", 12, true);
    buf_init(&stream);
    writer = events_writer_new(masker, capture, &stream);
}

static void teardown(void)
{
    events_writer_free(writer);
    masker_free(masker);
    buf_free(&stream);
}

/* Criterion's suite macro, unknown to cppcheck */
// cppcheck-suppress unknownMacro
TestSuite(events, .init = setup, .fini = teardown);

/* Decodes the n-th line of the captured stream. */
static void decode_line(size_t n, struct events_event *event)
{
    const char *line = buf_cstr(&stream);
    for (size_t i = 0; i < n; i++) {
        line = strchr(line, '\n');
        cr_assert_not_null(line);
        line++;
    }
    const char *end = strchr(line, '\n');
    cr_assert_not_null(end, "every event ends with a newline");
    cr_assert_eq(events_decode(line, (size_t)(end - line + 1), event, &err), 0, "%s: %s", line,
                 err.message);
}

static size_t line_count(void)
{
    size_t n = 0;
    for (const char *p = buf_cstr(&stream); (p = strchr(p, '\n')) != NULL; p++)
        n++;
    return n;
}

Test(events, a_whole_job_round_trips)
{
    struct events_output step_outputs[] = {{"version", "1.2.3"}};
    struct events_output job_outputs[] = {{"image", "app:1"}, {"empty", ""}};
    cr_assert_eq(events_job_started(writer, "build", "Build (linux)", &err), 0);
    cr_assert_eq(events_step_started(writer, 1, "compile", "Run make", EVENTS_STAGE_MAIN, &err), 0);
    cr_assert_eq(events_log(writer, 1, "hello", 5, &err), 0);
    struct step_annotation annotation = {.level = ANNOTATION_WARNING,
                                         .message = "careful",
                                         .file = "src/a.c",
                                         .title = "T",
                                         .line = 3,
                                         .end_line = 4,
                                         .col = 1,
                                         .end_column = 9};
    cr_assert_eq(events_annotation(writer, 1, &annotation, &err), 0);
    cr_assert_eq(events_step_summary(writer, 1, "# Sum\n", 6, &err), 0);
    cr_assert_eq(
        events_step_finished(writer, 1, EVENTS_FAILURE, EVENTS_SUCCESS, step_outputs, 1, &err), 0);
    cr_assert_eq(events_job_finished(writer, EVENTS_SUCCESS, job_outputs, 2, &err), 0);
    cr_assert_eq(line_count(), 7);

    struct events_event e;
    decode_line(0, &e);
    cr_assert_eq(e.kind, EVENTS_JOB_STARTED);
    cr_assert_str_eq(e.job_id, "build");
    cr_assert_str_eq(e.name, "Build (linux)");
    cr_assert_not_null(e.time);
    cr_assert_eq(strlen(e.time), 24);
    events_event_free(&e);

    decode_line(1, &e);
    cr_assert_eq(e.kind, EVENTS_STEP_STARTED);
    cr_assert_eq(e.step, 1);
    cr_assert_str_eq(e.id, "compile");
    cr_assert_eq(e.stage, EVENTS_STAGE_MAIN);
    events_event_free(&e);

    decode_line(2, &e);
    cr_assert_eq(e.kind, EVENTS_LOG);
    cr_assert_str_eq(e.line, "hello");
    events_event_free(&e);

    decode_line(3, &e);
    cr_assert_eq(e.kind, EVENTS_ANNOTATION);
    cr_assert_eq(e.annotation.level, ANNOTATION_WARNING);
    cr_assert_str_eq(e.annotation.message, "careful");
    cr_assert_str_eq(e.annotation.file, "src/a.c");
    cr_assert_str_eq(e.annotation.title, "T");
    cr_assert_eq(e.annotation.line, 3);
    cr_assert_eq(e.annotation.end_line, 4);
    cr_assert_eq(e.annotation.col, 1);
    cr_assert_eq(e.annotation.end_column, 9);
    cr_assert_null(e.annotation.repo);
    events_event_free(&e);

    decode_line(4, &e);
    cr_assert_eq(e.kind, EVENTS_STEP_SUMMARY);
    cr_assert_str_eq(e.markdown, "# Sum\n");
    events_event_free(&e);

    decode_line(5, &e);
    cr_assert_eq(e.kind, EVENTS_STEP_FINISHED);
    cr_assert_eq(e.outcome, EVENTS_FAILURE);
    cr_assert_eq(e.conclusion, EVENTS_SUCCESS);
    cr_assert_str_eq(json_string_value(json_object_get(e.outputs, "version")), "1.2.3");
    events_event_free(&e);

    decode_line(6, &e);
    cr_assert_eq(e.kind, EVENTS_JOB_FINISHED);
    cr_assert_eq(e.result, EVENTS_SUCCESS);
    cr_assert_eq(json_object_size(e.outputs), 2);
    cr_assert_str_eq(json_string_value(json_object_get(e.outputs, "empty")), "");
    events_event_free(&e);
}

Test(events, every_string_is_masked)
{
    struct events_output outputs[] = {{"token-s3cr3t-value", "is s3cr3t-value"}};
    struct step_annotation annotation = {.level = ANNOTATION_ERROR,
                                         .message = "leaked s3cr3t-value",
                                         .file = "s3cr3t-value.c",
                                         .title = "s3cr3t-value"};
    events_job_started(writer, "s3cr3t-value", "s3cr3t-value", &err);
    events_step_started(writer, 1, "s3cr3t-value", "s3cr3t-value", EVENTS_STAGE_PRE, &err);
    events_log(writer, 1, "echo s3cr3t-value", 17, &err);
    events_log(writer, 1, "base64: czNjcjN0LXZhbHVl", 24, &err);
    events_annotation(writer, 1, &annotation, &err);
    events_step_summary(writer, 1, "| s3cr3t-value |", 16, &err);
    events_step_finished(writer, 1, EVENTS_SUCCESS, EVENTS_SUCCESS, outputs, 1, &err);
    events_job_finished(writer, EVENTS_SUCCESS, outputs, 1, &err);
    cr_assert_null(strstr(stream.data, "s3cr3t"), "%s", stream.data);
    cr_assert_null(strstr(stream.data, "czNjcjN0LXZhbHVl"));
    cr_assert(strstr(stream.data, "\"line\":\"echo ***\""));
    cr_assert(strstr(stream.data, "{\"token-***\":\"is ***\"}"));
}

Test(events, value_added_to_the_masker_later_is_masked_in_later_events)
{
    events_log(writer, 1, "new-secret-42", 13, &err);
    masker_add_secret(masker, "new-secret-42", 13, false);
    events_log(writer, 1, "new-secret-42", 13, &err);
    struct events_event e;
    decode_line(1, &e);
    cr_assert_str_eq(e.line, "***");
    events_event_free(&e);
}

Test(events, invalid_utf8_becomes_replacement_characters)
{
    events_log(writer, 2, "a\xff\xc3(b\xe2\x82", 7, &err);
    struct events_event e;
    decode_line(0, &e);
    cr_assert_str_eq(e.line, "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd");
    events_event_free(&e);
}

Test(events, annotation_message_masked_then_cut_to_4096)
{
    struct buf long_message = BUF_INIT;
    for (int i = 0; i < 4090; i++)
        buf_putc(&long_message, 'x');
    buf_puts(&long_message, "s3cr3t-value and more");
    struct step_annotation annotation = {.level = ANNOTATION_ERROR, .message = long_message.data};
    events_annotation(writer, 1, &annotation, &err);
    struct events_event e;
    decode_line(0, &e);
    cr_assert_eq(strlen(e.annotation.message), 4096);
    cr_assert_str_eq(e.annotation.message + 4090, "*** an");
    events_event_free(&e);
    buf_free(&long_message);
}

Test(events, at_most_ten_annotations_per_level_per_step)
{
    struct step_annotation error = {.level = ANNOTATION_ERROR, .message = "e"};
    struct step_annotation warning = {.level = ANNOTATION_WARNING, .message = "w"};
    for (int i = 0; i < 12; i++)
        events_annotation(writer, 1, &error, &err);
    events_annotation(writer, 1, &warning, &err);
    events_annotation(writer, 2, &error, &err);
    cr_assert_eq(line_count(), 12);
}

Test(events, decoder_refuses_bad_events)
{
    struct events_event e;
    const char *bad[] = {
        "not json",
        "[1]",
        "{\"event\":\"party\"}",
        "{\"event\":\"log\",\"line\":\"x\"}",
        "{\"event\":\"log\",\"step\":1}",
        "{\"event\":\"step_finished\",\"step\":1,\"outcome\":\"ok\",\"conclusion\":\"success\"}",
        "{\"event\":\"job_finished\",\"result\":\"success\",\"outputs\":{\"a\":1}}",
        "{\"event\":\"annotation\",\"step\":1,\"level\":\"fatal\",\"message\":\"m\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_lt(events_decode(bad[i], strlen(bad[i]), &e, &err), 0, "%s", bad[i]);
        cr_assert_null(e.root);
    }
    const char *newer = "{\"event\":\"log\",\"step\":3,\"line\":\"x\",\"colour\":\"red\"}\n";
    cr_assert_eq(events_decode(newer, strlen(newer), &e, &err), 0);
    cr_assert_eq(e.step, 3);
    events_event_free(&e);
}

Test(events, fd_writer_writes_whole_lines)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    struct events_writer *fd_writer = events_writer_new_fd(masker, fds[1]);
    cr_assert_eq(events_log(fd_writer, 0, "Set up job", 10, &err), 0);
    events_writer_free(fd_writer);
    close(fds[1]);
    char text[256] = {0};
    cr_assert_gt(read(fds[0], text, sizeof(text) - 1), 0);
    close(fds[0]);
    struct events_event e;
    cr_assert_eq(events_decode(text, strlen(text), &e, &err), 0);
    cr_assert_eq(e.step, 0);
    cr_assert_str_eq(e.line, "Set up job");
    events_event_free(&e);
}

/* The pipeline of DESIGN.md: a step's line through the command parser, then the masker, then
 * events: an add-mask value is masked from the next line on, and never shown itself. */
Test(events, step_output_through_commands_to_events)
{
    struct step_commands_options options = {.enhanced_annotations = true, .echo = true};
    struct step_commands *commands = step_commands_new(masker, &options);
    const char *lines[] = {"::add-mask::fresh-secret-9", "value is fresh-secret-9",
                           "::error file=x.c,line=2::bad fresh-secret-9", "::group::G"};
    for (size_t i = 0; i < 4; i++) {
        struct step_command_result r = step_commands_process(commands, lines[i], strlen(lines[i]));
        cr_assert_eq(events_step_command_result(writer, 1, &r, &err), 0);
    }
    step_commands_free(commands);
    cr_assert_null(strstr(stream.data, "fresh-secret"), "%s", stream.data);
    cr_assert_eq(line_count(), 6);
    struct events_event e;
    const char *expected_lines[] = {"::add-mask::***", "value is ***", "##[error]bad ***"};
    for (size_t i = 0; i < 3; i++) {
        decode_line(i, &e);
        cr_assert_eq(e.kind, EVENTS_LOG);
        cr_assert_str_eq(e.line, expected_lines[i]);
        events_event_free(&e);
    }
    decode_line(3, &e);
    cr_assert_eq(e.kind, EVENTS_ANNOTATION);
    cr_assert_str_eq(e.annotation.message, "bad ***");
    cr_assert_eq(e.annotation.line, 2);
    events_event_free(&e);
    decode_line(4, &e);
    cr_assert_str_eq(e.line, "::group::G", "echo is on");
    events_event_free(&e);
    decode_line(5, &e);
    cr_assert_str_eq(e.line, "##[group]G");
    events_event_free(&e);
}

/* Reads what is in the pipe now, without waiting. */
static size_t pipe_read_now(int fd, char *out, size_t size)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, out + n, size - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = 0;
    return n;
}

Test(events, buffered_fd_writer_holds_lines_until_flushed_and_masks_them)
{
    int fds[2];
    cr_assert_eq(pipe2(fds, O_NONBLOCK), 0);
    struct events_writer *w = events_writer_new_fd(masker, fds[1]);
    events_writer_set_buffered(w, true);
    events_log(w, 1, "one s3cr3t-value", 16, &err);
    events_log(w, 1, "two", 3, &err);
    char text[4096];
    cr_assert_eq(pipe_read_now(fds[0], text, sizeof text), 0, "nothing written before a flush");
    cr_assert_eq(events_writer_flush(w, &err), 0);
    cr_assert_gt(pipe_read_now(fds[0], text, sizeof text), 0);
    cr_assert_not_null(strstr(text, "\"one ***\""), "%s", text);
    cr_assert_not_null(strstr(text, "\"two\""), "%s", text);
    cr_assert_null(strstr(text, "s3cr3t"), "the secret never reaches the stream");
    /* freeing flushes what is still held: nothing is lost at the end */
    events_log(w, 2, "last", 4, &err);
    events_writer_free(w);
    cr_assert_gt(pipe_read_now(fds[0], text, sizeof text), 0);
    cr_assert_not_null(strstr(text, "\"last\""), "%s", text);
    close(fds[0]);
    close(fds[1]);
}

Test(events, buffered_fd_writer_writes_when_64_kib_are_held)
{
    int fds[2];
    cr_assert_eq(pipe2(fds, O_NONBLOCK), 0);
    int size = 1 << 20;
    fcntl(fds[1], F_SETPIPE_SZ, size);
    struct events_writer *w = events_writer_new_fd(masker, fds[1]);
    events_writer_set_buffered(w, true);
    char line[1000];
    memset(line, 'x', sizeof line);
    for (int i = 0; i < 80; i++)
        events_log(w, 1, line, sizeof line, &err);
    static char text[1 << 20];
    cr_assert_geq(pipe_read_now(fds[0], text, sizeof text), 64 * 1024,
                  "a big burst does not wait for the flush");
    events_writer_free(w);
    close(fds[0]);
    close(fds[1]);
}
