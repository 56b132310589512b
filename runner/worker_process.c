/* One `harrier worker` and its event stream: the pipe and the process both end before the
 * caller hears of it, so no event is lost to a worker that exits early. */
#include "runner/worker_process.h"

#include "lib/buf.h"
#include "lib/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct worker_process {
    struct worker_process_options o;
    struct sandbox_step *proc; /* NULL once it exited */
    uv_pipe_t pipe;
    bool pipe_open, pipe_closing;
    int exit_code;
    struct buf partial;
};

static void worker_process_maybe_done(struct worker_process *w)
{
    if (w->proc || w->pipe_open || w->pipe_closing)
        return;
    w->o.on_exit(w->o.data, w->exit_code);
    buf_free(&w->partial);
    free(w);
}

static void on_pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = xmalloc(suggested);
    buf->len = suggested;
}

static void on_pipe_closed(uv_handle_t *h)
{
    struct worker_process *w = h->data;
    w->pipe_closing = false;
    worker_process_maybe_done(w);
}

static void on_pipe_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    struct worker_process *w = stream->data;
    if (n > 0) {
        buf_append(&w->partial, buf->base, (size_t)n);
        size_t start = 0;
        for (size_t i = 0; i < w->partial.len; i++)
            if (w->partial.data[i] == '\n') {
                w->o.on_line(w->o.data, w->partial.data + start, i - start);
                start = i + 1;
            }
        buf_consume(&w->partial, start);
    }
    free(buf->base);
    if (n < 0 && w->pipe_open) {
        w->pipe_open = false;
        w->pipe_closing = true;
        uv_close((uv_handle_t *)&w->pipe, on_pipe_closed);
    }
}

static void on_worker_exit(struct sandbox_step *step, const struct sandbox_step_result *r,
                           void *data)
{
    (void)step;
    struct worker_process *w = data;
    w->proc = NULL;
    w->exit_code = r->term_signal ? 128 + r->term_signal : r->exit_code;
    worker_process_maybe_done(w);
}

int worker_process_start(uv_loop_t *loop, struct sandbox_job *procs,
                         const struct worker_process_options *options, struct worker_process **out,
                         struct error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return error_set_errno(err, errno, "cannot create a pipe for the worker");
    struct worker_process *w = xcalloc(1, sizeof *w);
    w->o = *options;
    extern char **environ;
    struct sandbox_spawn_options so = {
        .argv = options->argv,
        .env = (const char *const *)environ,
        .stdio = {{SANDBOX_STDIO_NULL, -1}, {SANDBOX_STDIO_FD, fds[1]}, {SANDBOX_STDIO_FD, 2}},
        .on_exit = on_worker_exit,
        .data = w,
    };
    int rc = sandbox_spawn(procs, &so, &w->proc, err);
    close(fds[1]);
    if (rc < 0) {
        close(fds[0]);
        free(w);
        return rc;
    }
    uv_pipe_init(loop, &w->pipe, 0);
    w->pipe.data = w;
    uv_pipe_open(&w->pipe, fds[0]);
    w->pipe_open = true;
    uv_read_start((uv_stream_t *)&w->pipe, on_pipe_alloc, on_pipe_read);
    *out = w;
    return 0;
}

void worker_process_signal(struct worker_process *w, int signum)
{
    if (w && w->proc)
        kill(sandbox_step_pid(w->proc), signum);
}

void worker_process_end(struct worker_process *w)
{
    if (w && w->proc)
        sandbox_step_cancel(w->proc);
}
