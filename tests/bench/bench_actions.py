#!/usr/bin/python3
"""bench_actions: what uses: steps cost.

1. Job set-up with 20 remote actions already in the action cache, against the same job with
   20 run: steps (no actions): the difference is reading 20 action.yml files and the node
   version probe. Every step is `if: false`, so only set-up is measured. The first, cold run
   (20 downloads from a local server) is shown beside them.
2. A JavaScript action step (an empty main.js) against `node -e 0` started directly: the
   difference is harrier's per-step cost (inputs, env, file-command files, sandbox spawn).
"""
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HARRIER = os.environ.get("HARRIER_BIN", os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "build", "harrier"))
ACTIONS = 20
NODE_STEPS = 10
RUNS = 5


def tarball(files):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo("top/" + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return data.getvalue()


def serve(tarballs):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = tarballs.get(self.path.lstrip("/"), b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/{{owner}}/{{repo}}/{{ref}}"


def make_repo(root, workflows):
    os.makedirs(os.path.join(root, ".github", "workflows"))
    for name, text in workflows.items():
        with open(os.path.join(root, ".github", "workflows", name), "w") as f:
            f.write(text)
    subprocess.run(["git", "init", "-q", "-b", "main", root], check=True)
    subprocess.run(["git", "-C", root, "add", "-A"], check=True)
    subprocess.run(["git", "-C", root, "-c", "user.name=b", "-c", "user.email=b@b", "commit",
                    "-qm", "b"], check=True)


def messages(root, work, url, workflow):
    out = os.path.join(work, "messages-" + workflow)
    p = subprocess.run([HARRIER, "exec", "-W", ".github/workflows/" + workflow, "--work", work,
                        "--messages-dir", out, "--actions-url", url], cwd=root,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_actions: exec failed: {p.stdout[-2000:]}{p.stderr[-2000:]}")
    return os.path.join(out, "j-0.json")


def run_worker(message, work, cache, url, checkout):
    start = time.perf_counter()
    p = subprocess.run([HARRIER, "worker", "--message", message, "--work", work,
                        "--actions-cache", cache, "--actions-url", url, "--checkout", checkout],
                       capture_output=True, text=True)
    took = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"bench_actions: the worker failed: {p.stdout[-2000:]}{p.stderr[-2000:]}")
    return took


def best(f):
    return min(f() for _ in range(RUNS))


def main():
    if not os.path.exists(HARRIER):
        sys.exit("bench_actions: build harrier first")
    tarballs = {f"octo/a{i}/v1": tarball({"action.yml": "runs: {using: node20, main: m.js}\n",
                                          "m.js": ""}) for i in range(ACTIONS)}
    httpd, url = serve(tarballs)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "repo")
        uses = "".join(f"      - if: false\n        uses: octo/a{i}@v1\n" for i in range(ACTIONS))
        runs = "".join(f"      - if: false\n        run: echo {i}\n" for i in range(ACTIONS))
        node = "".join("      - uses: octo/a0@v1\n" for _ in range(NODE_STEPS))
        head = "on: push\njobs:\n  j:\n    runs-on: self-hosted\n    steps:\n"
        make_repo(root, {"uses.yml": head + uses, "runs.yml": head + runs,
                         "node.yml": head + node, "none.yml": head + "      - run: 'true'\n"})
        work = os.path.join(tmp, "work")
        msg = {n: messages(root, work, url, n + ".yml") for n in ("uses", "runs", "node", "none")}
        cache = os.path.join(tmp, "cache")
        wdir = os.path.join(tmp, "w")

        def cold():
            shutil.rmtree(cache, ignore_errors=True)
            return run_worker(msg["uses"], wdir, cache, url, root)
        cold_s = best(cold)
        cached_s = best(lambda: run_worker(msg["uses"], wdir, cache, url, root))
        plain_s = best(lambda: run_worker(msg["runs"], wdir, cache, url, root))
        diff_ms = (cached_s - plain_s) * 1000
        verdict = "ok" if diff_ms < 100 else "MISSED"
        print(f"bench actions-setup: job with {ACTIONS} cached actions {cached_s * 1000:.1f} ms "
              f"vs {ACTIONS} run steps {plain_s * 1000:.1f} ms: +{diff_ms:.1f} ms "
              f"(cold, {ACTIONS} downloads: {cold_s * 1000:.1f} ms) (target < +100 ms) {verdict}")

        node_job = best(lambda: run_worker(msg["node"], wdir, cache, url, root))
        one_step = best(lambda: run_worker(msg["none"], wdir, cache, url, root))
        per_step = (node_job - one_step) / (NODE_STEPS - 1) * 1000

        def direct():
            start = time.perf_counter()
            for _ in range(NODE_STEPS):
                subprocess.run(["node", "-e", "0"], check=True)
            return (time.perf_counter() - start) / NODE_STEPS
        direct_ms = best(direct) * 1000
        over = per_step - direct_ms
        verdict = "ok" if over < 25 else "MISSED"
        print(f"bench node-action-step: {per_step:.1f} ms per step vs node -e 0 "
              f"{direct_ms:.1f} ms: +{over:.1f} ms (target < +25 ms) {verdict}")
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
