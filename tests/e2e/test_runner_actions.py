"""uses: in runner mode (PROTOCOL.md §8.2, §8.4): every repository action of the job, and those
inside its composite actions, resolved through fakehub's actiondownloadinfo in one call per
level of nesting, downloaded from the tarball URL it gives with its token (Basic
x-access-token), cached by the commit it resolved; the official runner's tries (422 at once,
404/403 at once, anything else up to three times); a cancellation during set-up; a local
composite's actions resolved when it starts. Every test asserts what fakehub recorded or what
the job's log says. Two answers fakehub does not give (no download token; an answer under
another key) come from a minimal service in this file, with `harrier worker` run directly."""
import base64
import gzip
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402
from fakehub_fixtures import fakehub_factory  # noqa: E402,F401

SCALE = {"HARRIER_TEST_TIMER_SCALE": "0.01"}

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="JavaScript actions need node")


class Runner:
    """A configured harrier in its own folder, running `harrier run` (stopped at the end)."""

    def __init__(self, bin_path, hub, path):
        self.admin = fh.FakeHubClient(hub.url)
        self.path = path
        self.bin = bin_path
        self.proc = None
        path.mkdir(exist_ok=True)
        p = subprocess.run([bin_path, "config", "--url", hub.url + "/octo-org/octo-repo", "--token",
                            self.admin.registration_token(), "--name", "r1", "--unattended"],
                           cwd=path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr

    def start(self, *args):
        env = dict(os.environ, **SCALE)
        self.proc = subprocess.Popen([self.bin, "run", "--sandbox", "none", *args], cwd=self.path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.admin.wait_polling("r1", timeout=20)

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        # The workers' stderr ends here: under `make asan`, a sanitizer report fails the test.
        assert not re.search(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:", err), err


@pytest.fixture
def runner(harrier_bin, fakehub_factory, tmp_path):
    r = Runner(harrier_bin, fakehub_factory(poll_hold=2.0), tmp_path / "runner")
    yield r
    r.stop()


def uses_step(uses, name, with_=None, condition="success()", timeout_minutes=None):
    """A `uses: owner/repo[/path]@ref` step as the service sends it (§6.7)."""
    repo, ref = uses.split("@")
    parts = repo.split("/")
    step = {"type": "action", "id": fh.new_guid(), "name": name, "contextName": name,
            "condition": condition,
            "reference": {"type": "repository", "name": "/".join(parts[:2]), "ref": ref,
                          "repositoryType": "GitHub", "path": "/".join(parts[2:])}}
    if with_:
        step["inputs"] = {"type": 2, "map": [{"key": k, "value": v} for k, v in with_.items()]}
    if timeout_minutes:
        step["timeoutInMinutes"] = timeout_minutes
    return step


def run_job(r, steps, timeout=60):
    q = r.admin.queue_job(fh.minimal_job_message(steps))
    job = r.admin.wait_job(q["requestId"], timeout=timeout)
    assert job["state"] == "completed", job
    logs = r.admin.job(q["requestId"], "logs")["records"]
    return job, logs


JS_ACTION = {
    "action.yml": """name: greet
inputs:
  who: {default: world}
outputs:
  greeting: {description: the greeting}
runs:
  using: node20
  main: main.js
""",
    "main.js": """const fs = require('fs');
const who = process.env.INPUT_WHO;
console.log(`js says hello ${who} from ${process.env.GITHUB_ACTION_REPOSITORY}@${process.env.GITHUB_ACTION_REF}`);
fs.appendFileSync(process.env.GITHUB_OUTPUT, `greeting=hello ${who}\\n`);
""",
}

INNER_ACTION = {
    "action.yml": """name: inner
inputs:
  word: {required: true}
runs:
  using: node20
  main: index.js
""",
    "index.js": "console.log(`inner got ${process.env.INPUT_WORD}`);\n",
}

COMPOSITE_ACTION = {
    "action.yml": """name: wrap
inputs:
  who: {default: composite}
outputs:
  said: {value: "${{ steps.g.outputs.greeting }}"}
runs:
  using: composite
  steps:
    - id: g
      uses: octo/greet@v1
      with: {who: "${{ inputs.who }}"}
    - uses: octo/inner@v2
      with: {word: nested}
    - shell: bash
      run: echo "composite saw ${{ steps.g.outputs.greeting }}"
""",
}


def tarball_requests(admin):
    return [x for x in admin.requests(route="tarball")]


def download_tokens(admin):
    """The tokens harrier sent to the tarball endpoint (Basic x-access-token:<token>)."""
    tokens = set()
    for x in tarball_requests(admin):
        auth = {k.lower(): v for k, v in x["headers"].items()}.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        assert scheme == "Basic", auth
        user, _, token = base64.b64decode(value).decode().partition(":")
        assert user == "x-access-token"
        tokens.add(token)
    return tokens


def test_served_javascript_and_nested_composite_actions(runner):
    r = runner
    greet = r.admin.add_action("octo/greet", "v1", JS_ACTION)
    inner = r.admin.add_action("octo/inner", "v2", INNER_ACTION)
    wrap = r.admin.add_action("octo/wrap", "v1", COMPOSITE_ACTION)
    r.start()
    steps = [uses_step("octo/greet@v1", "js", {"who": "mona"}),
             uses_step("octo/wrap@v1", "comp"),
             fh.script_step({"type": 3, "expr": "format('echo \"outputs: {0} / {1}\"', "
                                                "steps.js.outputs.greeting, steps.comp.outputs.said)"},
                            name="show")]
    job, logs = run_job(r, steps)
    assert job["result"] == "succeeded", (job, logs)
    js, comp, show = (logs[s["id"]] for s in steps)
    assert "js says hello mona from octo/greet@v1" in js
    assert "js says hello composite from octo/greet@v1" in comp
    assert "inner got nested" in comp and "composite saw hello composite" in comp
    assert "outputs: hello mona / hello composite" in show
    # Set-up, in the job's log: what was asked, and each repository once with its commit.
    setup = logs[job["jobId"]]
    for a in (greet, wrap, inner):
        line = f"Download action repository '{a['name']}@{a['ref']}' (SHA:{a['sha']})"
        assert setup.count(line) == 1, setup
    assert setup.index("octo/wrap@v1' (SHA") < setup.index("octo/inner@v2' (SHA")
    # One call per level of nesting: the job's actions, then those inside the composite
    # (octo/greet@v1 again is not asked twice).
    calls = r.admin.requests(route="actiondownloadinfo")
    asked = [[(a["nameWithOwner"], a["ref"]) for a in json.loads(c["body"])["actions"]] for c in calls]
    assert asked == [[("octo/greet", "v1"), ("octo/wrap", "v1")], [("octo/inner", "v2")]], asked
    for c in calls:
        auth = {k.lower(): v for k, v in c["headers"].items()}["authorization"]
        assert auth.startswith("Bearer ") and c["query"].startswith("jobId=")
    # Each tarball fetched once, with the download token fakehub handed out...
    assert len(tarball_requests(r.admin)) == 3
    tokens = download_tokens(r.admin)
    assert len(tokens) == 3 and all(t.startswith("ghs_") for t in tokens)
    # ...which never appears in anything harrier sent.
    for t in tokens:
        assert r.admin.search(t) == [], t
    refused = [x for x in r.admin.refusals() if not x.get("challenge")]
    assert refused == []


def test_the_cache_is_keyed_by_the_resolved_commit(runner):
    r = runner
    first = r.admin.add_action("octo/greet", "v1", JS_ACTION)
    r.start()
    step = uses_step("octo/greet@v1", "js")
    job, logs = run_job(r, [step])
    assert job["result"] == "succeeded" and "js says hello world" in logs[step["id"]]
    # The same commit again: from the cache, nothing downloaded.
    step = uses_step("octo/greet@v1", "js")
    job, logs = run_job(r, [step])
    assert job["result"] == "succeeded" and "js says hello world" in logs[step["id"]]
    assert len(tarball_requests(r.admin)) == 1
    assert f"Action repository 'octo/greet@v1' (SHA:{first['sha']}) is in the action cache" in logs[job["jobId"]]
    # The tag moves to a new commit: downloaded again, and the new code runs.
    moved = r.admin.add_action("octo/greet", "v1", dict(JS_ACTION, **{
        "main.js": "console.log('the moved tag runs');\n"}))
    assert moved["sha"] != first["sha"]
    step = uses_step("octo/greet@v1", "js")
    job, logs = run_job(r, [step])
    assert job["result"] == "succeeded"
    assert "the moved tag runs" in logs[step["id"]]
    assert f"Download action repository 'octo/greet@v1' (SHA:{moved['sha']})" in logs[job["jobId"]]
    assert len(tarball_requests(r.admin)) == 2


def test_unresolvable_action_fails_the_job_at_once(runner):
    r = runner
    r.start()
    after = fh.script_step("echo should-not-run", name="after", condition="always()")
    job, logs = run_job(r, [uses_step("octo/missing@v9", "m"), after])
    assert job["result"] == "failed"
    setup = logs[job["jobId"]]
    assert "Unable to resolve action octo/missing@v9" in setup, setup
    assert len(r.admin.requests(route="actiondownloadinfo")) == 1     # a 422 is not tried again
    assert "should-not-run" not in json.dumps(logs)                   # set-up failed: no step runs
    assert tarball_requests(r.admin) == []


def test_tarball_not_found_is_not_tried_again(runner):
    r = runner
    r.admin.add_action("octo/greet", "v1", JS_ACTION)
    r.admin.fault(route="tarball", action="status", status=404, times=0)
    r.start()
    job, logs = run_job(r, [uses_step("octo/greet@v1", "js")])
    assert job["result"] == "failed"
    assert "An action could not be found at the URI" in logs[job["jobId"]]
    assert len(tarball_requests(r.admin)) == 1


def test_service_errors_are_tried_again(runner):
    r = runner
    greet = r.admin.add_action("octo/greet", "v1", JS_ACTION)
    r.admin.fault(route="actiondownloadinfo", action="status", status=500, times=1)
    r.admin.fault(route="tarball", action="status", status=500, times=1)
    r.start()
    step = uses_step("octo/greet@v1", "js")
    job, logs = run_job(r, [step])
    assert job["result"] == "succeeded", logs
    assert "js says hello world" in logs[step["id"]]
    setup = logs[job["jobId"]]
    assert "Failed to resolve action download info. Error:" in setup
    assert "Failed to download action" in setup and "Back off" in setup
    assert f"(SHA:{greet['sha']})" in setup
    assert len(r.admin.requests(route="actiondownloadinfo")) == 2
    assert len(tarball_requests(r.admin)) == 2


def test_a_service_that_keeps_failing_is_tried_three_times(runner):
    r = runner
    r.admin.add_action("octo/greet", "v1", JS_ACTION)
    r.admin.fault(route="actiondownloadinfo", action="status", status=503, times=0)
    r.start()
    job, logs = run_job(r, [uses_step("octo/greet@v1", "js")])
    assert job["result"] == "failed"
    assert "Failed to resolve action download info." in logs[job["jobId"]]
    assert len(r.admin.requests(route="actiondownloadinfo")) == 3


def test_cancellation_during_set_up_is_heard(runner):
    r = runner
    r.admin.add_action("octo/greet", "v1", JS_ACTION)
    r.admin.settings(cancel_delay=0.5)
    # The service takes 30 s to answer: the job is still setting up when it is cancelled.
    r.admin.fault(route="actiondownloadinfo", action="delay", delay=30, times=1)
    r.start()
    after = fh.script_step("echo should-not-run", name="after", condition="always()")
    q = r.admin.queue_job(fh.minimal_job_message([uses_step("octo/greet@v1", "js"), after]))
    # fakehub logs a request once answered; the job's live lines show set-up asking.
    deadline = time.time() + 20
    while time.time() < deadline and "Getting action download info" not in json.dumps(
            r.admin.job(q["requestId"], "feed")):
        time.sleep(0.1)
    assert "Getting action download info" in json.dumps(r.admin.job(q["requestId"], "feed"))
    t0 = time.time()
    r.admin.cancel_job(q["requestId"])
    job = r.admin.wait_job(q["requestId"], timeout=25)
    assert job["state"] == "completed" and job["result"] == "canceled", job
    assert time.time() - t0 < 10
    logs = r.admin.job(q["requestId"], "logs")["records"]
    assert "should-not-run" not in json.dumps(logs)


def test_a_local_composite_resolves_its_actions_when_it_starts(runner):
    """A local composite is read when its step starts (the workspace holds it only then), and
    the repository actions inside it are resolved then, as ActionRunner prepares them."""
    r = runner
    greet = r.admin.add_action("octo/greet", "v1", JS_ACTION)
    r.start()
    write = fh.script_step(
        "mkdir -p .github/actions/local && printf '%s\\n' 'name: local' 'runs:' "
        "'  using: composite' '  steps:' '    - uses: octo/greet@v1' '      with: {who: local}' "
        "> .github/actions/local/action.yml", name="write")
    local = {"type": "action", "id": fh.new_guid(), "name": "local", "contextName": "local",
             "condition": "success()",
             "reference": {"type": "repository", "repositoryType": "self",
                           "path": "./.github/actions/local"}}
    job, logs = run_job(r, [write, local])
    assert job["result"] == "succeeded", logs
    assert "js says hello local from octo/greet@v1" in logs[local["id"]]
    assert f"Download action repository 'octo/greet@v1' (SHA:{greet['sha']})" in logs[local["id"]]
    calls = r.admin.requests(route="actiondownloadinfo")
    assert [[a["nameWithOwner"] for a in json.loads(c["body"])["actions"]] for c in calls] == \
        [["octo/greet"]]


TIDY_ACTION = {
    "action.yml": """name: tidy
inputs:
  tag: {required: true}
runs:
  using: node20
  main: main.js
  post: post.js
""",
    "main.js": """require('fs').appendFileSync(process.env.GITHUB_STATE, `made=${process.env.INPUT_TAG}\\n`);
console.log(`tidy main ${process.env.INPUT_TAG}`);
""",
    "post.js": "console.log(`tidy post ${process.env.INPUT_TAG} state=${process.env.STATE_made}`);\n",
}


def test_post_steps_inside_a_composite_are_one_timeline_record(runner):
    """The post steps of the actions inside a composite run in one post step of the composite
    (CompositeActionHandler), so the timeline has one "Post <composite>" record, after the main
    steps, and its log holds theirs, last registered first."""
    r = runner
    r.admin.add_action("octo/tidy", "v1", TIDY_ACTION)
    r.admin.add_action("octo/kit", "v1", {"action.yml": """name: kit
runs:
  using: composite
  steps:
    - uses: octo/tidy@v1
      with: {tag: one}
    - uses: octo/tidy@v1
      with: {tag: two}
"""})
    r.start()
    kit = uses_step("octo/kit@v1", "kit")
    q = r.admin.queue_job(fh.minimal_job_message([kit, fh.script_step("echo after", name="after")]))
    job = r.admin.wait_job(q["requestId"], timeout=60)
    assert job["state"] == "completed" and job["result"] == "succeeded", job
    records = r.admin.job(q["requestId"], "timeline")["records"]
    tasks = sorted([x for x in records if x["type"] == "Task"], key=lambda x: x["order"])
    names = [x["name"] for x in tasks]
    assert names == ["Set up job", "Run octo/kit@v1", "Run echo after", "Post Run octo/kit@v1",
                     "Complete job"], names
    post = tasks[3]
    assert post["result"] == "succeeded" and post["state"] == "completed", post
    log = r.admin.job(q["requestId"], "logs")["records"][post["id"]]
    assert log.count("Post job cleanup.") == 3, log
    assert log.index("tidy post two state=two") < log.index("tidy post one state=one"), log


# ---- `harrier worker` against a minimal service: the answers fakehub does not give ----------

class MiniService:
    """connectionData, actiondownloadinfo and tarballs (§1.3, §8.2, §8.4), answering with what
    `answers` says: for each requested name@ref, (key to answer under, token or None)."""

    def __init__(self, answers):
        self.answers = answers
        self.tarball_auth = []
        self.calls = []
        outer = self
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, text in JS_ACTION.items():
                data = text.encode()
                info = tarfile.TarInfo("octo-x-sha/" + name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.tarball = gzip.compress(raw.getvalue())

        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self, code, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.startswith("/_apis/connectionData"):
                    self.reply(200, {"locationServiceData": {"serviceDefinitions": [{
                        "identifier": "27d7f831-88c1-4719-8ca1-6a061dad90eb", "resourceVersion": 1,
                        "relativePath": "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/"
                                        "{planId}/actiondownloadinfo"}]}})
                elif self.path.startswith("/tarball/"):
                    outer.tarball_auth.append(self.headers.get("Authorization"))
                    self.reply(200, outer.tarball, "application/x-gzip")
                else:
                    self.reply(404, {"message": "no"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls.append(body)
                out = {}
                for a in body["actions"]:
                    asked = f"{a['nameWithOwner']}@{a['ref']}"
                    key, token = outer.answers[asked]
                    info = {"nameWithOwner": a["nameWithOwner"], "resolvedNameWithOwner": a["nameWithOwner"],
                            "ref": a["ref"], "resolvedSha": "ab" * 20,
                            "tarballUrl": f"http://127.0.0.1:{port}/tarball/{a['nameWithOwner']}"}
                    if token:
                        info["authentication"] = {"token": token}
                    out[key] = info
                self.reply(200, {"actions": out})

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def worker_message(url, steps):
    msg = fh.minimal_job_message(steps)
    msg.update({"messageType": "PipelineAgentJobRequest", "requestId": 7, "jobId": fh.new_guid(),
                "plan": {"planId": fh.new_guid(), "scopeIdentifier": fh.new_guid(), "planType": "actions",
                         "version": 12},
                "timeline": {"id": fh.new_guid()},
                "resources": {"endpoints": [{"name": "SystemVssConnection", "url": url,
                                             "authorization": {"scheme": "OAuth",
                                                               "parameters": {"AccessToken": "the-job-token"}}}]}})
    msg["variables"]["system.github.token"] = {"value": "ghs_thejobsowntoken", "isSecret": True}
    return msg


def run_worker(harrier, tmp_path, url, steps):
    path = tmp_path / "message.json"
    path.write_text(json.dumps(worker_message(url, steps)))
    p = harrier("worker", "--message", str(path), "--work", str(tmp_path / "work"), "--sandbox", "none",
                timeout=60)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return p, [e.get("line", "") for e in lines if e["event"] == "log"]


def test_no_download_token_means_the_jobs_own_token(harrier, tmp_path):
    svc = MiniService({"octo/greet@v1": ("octo/greet@v1", None)})
    try:
        p, lines = run_worker(harrier, tmp_path, svc.url, [uses_step("octo/greet@v1", "js")])
    finally:
        svc.close()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "js says hello world from octo/greet@v1" in lines
    want = "Basic " + base64.b64encode(b"x-access-token:ghs_thejobsowntoken").decode()
    assert svc.tarball_auth == [want]
    assert not any("ghs_thejobsowntoken" in l for l in lines)


def test_an_answer_under_another_key_is_missing_download_info(harrier, tmp_path):
    # The lookup is exact, as the official runner's dictionary: "Octo/Greet@v1" is not asked.
    svc = MiniService({"octo/greet@v1": ("Octo/Greet@v1", "ghs_download")})
    try:
        p, lines = run_worker(harrier, tmp_path, svc.url, [uses_step("octo/greet@v1", "js")])
    finally:
        svc.close()
    assert p.returncode == 1, p.stdout + p.stderr
    assert "##[error]Missing download info for octo/greet@v1" in lines
    assert svc.tarball_auth == []
