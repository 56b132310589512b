"""harrier run against fakehub (PROTOCOL.md §4, §7, §10): session, long-poll, decryption, lock
renewal, the worker's events as timeline records, logs, live lines, summaries and the job's
completion; cancellation, signals, faults, JIT and ephemeral runners, exit codes (§2.1).
Every test asserts what fakehub recorded. HARRIER_TEST_TIMER_SCALE shrinks the protocol's
timers (test-only); one test runs at the real cadence to see a real lock renewal."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402
from fakehub_fixtures import fakehub_factory  # noqa: E402,F401

SECRET = "hunter2-Zq8vX-s3cret"
SCALE = {"HARRIER_TEST_TIMER_SCALE": "0.01"}


class Runner:
    """A configured harrier in its own folder, and the `harrier run` processes started there."""

    def __init__(self, bin_path, hub, path, name="r1", config_args=(), configure=True):
        self.bin = bin_path
        self.hub = hub
        self.admin = fh.FakeHubClient(hub.url)
        self.path = path
        self.name = name
        self.procs = []
        path.mkdir(exist_ok=True)
        if configure:
            p = subprocess.run([bin_path, "config", "--url", hub.url + "/octo-org/octo-repo", "--token",
                                self.admin.registration_token(), "--name", name, "--unattended", *config_args],
                               cwd=path, capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr

    def start(self, *args, env=None, scale=True):
        full = dict(os.environ)
        if scale:
            full.update(SCALE)
        full.update(env or {})
        proc = subprocess.Popen([self.bin, "run", "--sandbox", "none", *args], cwd=self.path, env=full,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def wait_polling(self, timeout=20):
        self.admin.wait_polling(self.name, timeout=timeout)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


@pytest.fixture
def hub(fakehub_factory):
    return fakehub_factory(poll_hold=2.0)


@pytest.fixture
def make_runner(harrier_bin, hub, tmp_path):
    made = []

    def make(name="r1", config_args=(), configure=True):
        r = Runner(harrier_bin, hub, tmp_path / name, name, config_args, configure)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()


def finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def job_message(*scripts, outputs=None, secret=True):
    steps = [fh.script_step(s, name=f"s{i}") if isinstance(s, str) else s for i, s in enumerate(scripts)]
    msg = fh.minimal_job_message(steps, outputs=outputs)
    if secret:
        msg["variables"]["MY_SECRET"] = {"value": SECRET, "isSecret": True}
    return msg


def refusals(admin):
    """Refusals other than Bearer challenges and a Busy poll cut short by the session's deletion."""
    out = []
    for r in admin.refusals():
        if r.get("challenge"):
            continue
        if r["route"] == "messages" and "(deleted)" in (r.get("refused") or ""):
            continue
        out.append(r)
    return out


def test_run_once_reports_the_job(make_runner):
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    msg = job_message(f'echo "hello from harrier"; echo "the secret is {SECRET}"; '
                      'echo "greeting=hi there" >> "$GITHUB_OUTPUT"; echo "## Summary" >> "$GITHUB_STEP_SUMMARY"',
                      outputs={"greeting": "steps.s0.outputs.greeting"})
    step_id = msg["steps"][0]["id"]
    q = r.admin.queue_job(msg)
    rc, out, err = finish(proc)
    assert rc == 0, err
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["state"] == "completed" and job["result"] == "succeeded", job
    assert job["completedVia"] == "event" and job["outputs"] == {"greeting": "hi there"}
    assert job["assignments"] == 1 and job["renewals"] >= 1 and job["violations"] == []
    timeline = r.admin.job(q["requestId"], "timeline")
    records = {x["id"]: x for x in timeline["records"]}
    assert records[job["jobId"]]["state"] == "completed" and records[job["jobId"]]["result"] == "succeeded"
    step = records[step_id]                                   # the step keeps the message's id
    assert step["state"] == "completed" and step["result"] == "succeeded" and step["parentId"] == job["jobId"]
    assert step["log"] and step["log"]["id"]
    logs = r.admin.job(q["requestId"], "logs")
    assert "hello from harrier" in logs["records"][step_id]
    assert "the secret is ***" in logs["records"][step_id]
    assert "hello from harrier" in logs["records"][job["jobId"]]   # the job log has every line
    feed = r.admin.job(q["requestId"], "feed")
    assert "hello from harrier" in feed[step_id]
    assert r.admin.job(q["requestId"], "summaries")[step_id].startswith("## Summary")
    assert r.admin.search(SECRET) == [] or r.admin.search(SECRET).get("seq") == []
    assert refusals(r.admin) == []
    deletes = [x for x in r.admin.requests(route="sessions") if x["method"] == "DELETE"]
    assert len(deletes) == 1                                  # session deleted on exit (§4.7)
    assert "Running job: build" in out


def test_failed_step_fails_the_job_with_its_issue(make_runner):
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    msg = job_message("echo before; exit 3", "echo never")
    q = r.admin.queue_job(msg)
    assert finish(proc)[0] == 0
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "failed"
    records = {x["id"]: x for x in r.admin.job(q["requestId"], "timeline")["records"]}
    first, second = records[msg["steps"][0]["id"]], records[msg["steps"][1]["id"]]
    assert first["result"] == "failed" and first["errorCount"] == 1
    assert "exit code 3" in first["issues"][0]["message"]
    assert second["result"] == "skipped"


def test_service_cancellation_reaches_the_worker(make_runner):
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    always = fh.script_step("echo cleanup ran", name="cleanup", condition="always()")
    msg = job_message("echo started; sleep 60; echo not-reached", always)
    q = r.admin.queue_job(msg)
    deadline = time.time() + 20
    while time.time() < deadline and "started" not in json.dumps(r.admin.job(q["requestId"], "feed")):
        time.sleep(0.2)
    t0 = time.time()
    r.admin.cancel_job(q["requestId"])
    rc, _, err = finish(proc, timeout=40)
    assert rc == 0, err
    assert time.time() - t0 < 25
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "canceled" and job["cancelSent"]
    logs = r.admin.job(q["requestId"], "logs")["records"]
    assert "Z cleanup ran\n" in logs[always["id"]] and "Z not-reached\n" not in json.dumps(logs)


def test_sigterm_cancels_the_job_and_exits_0(make_runner):
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    q = r.admin.queue_job(job_message("echo started; sleep 60"))
    deadline = time.time() + 20
    while time.time() < deadline and "started" not in json.dumps(r.admin.job(q["requestId"], "feed")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc, timeout=40)
    assert rc == 0, err
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["state"] == "completed" and job["result"] == "canceled"
    assert [x for x in r.admin.requests(route="sessions") if x["method"] == "DELETE"]


def test_idle_sigint_exits_0_and_deletes_the_session(make_runner):
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc, timeout=20)
    assert rc == 0, err
    assert [x for x in r.admin.requests(route="sessions") if x["method"] == "DELETE" and x["status"] == 204]


@pytest.mark.parametrize("fault", [
    {"route": "messages", "action": "status", "status": 500, "times": 3},
    {"route": "messages", "action": "drop", "times": 2},
    {"route": "messages", "action": "duplicate"},
    {"route": "records", "action": "status", "status": 503, "times": 1},
    {"route": "jobrequests", "action": "status", "status": 500, "times": 2},
    {"route": "events", "action": "status", "status": 500, "times": 1},
], ids=["poll-500", "poll-drop", "duplicate-message", "records-503", "renew-500", "events-500"])
def test_faults_are_survived_without_lost_or_duplicated_jobs(make_runner, fault):
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    r.admin.fault(**fault)
    first = r.admin.queue_job(job_message("echo one"))
    second = r.admin.queue_job(job_message("echo two"))
    for q in (first, second):
        job = r.admin.wait_job(q["requestId"], timeout=60)
        assert job["state"] == "completed" and job["result"] == "succeeded", job
        assert job["assignments"] == 1 or fault["action"] == "duplicate", job
        assert job["violations"] == [], job
    for q in (first, second):
        tasks = [x["name"] for x in r.admin.job(q["requestId"], "timeline")["records"] if x["type"] == "Task"]
        assert sorted(tasks) == sorted(["Set up job", "Run echo one" if q is first else "Run echo two",
                                        "Complete job"]), tasks
        completions = [e for e in r.admin.job(q["requestId"], "events") if "JobCompleted" in json.dumps(e)]
        assert len(completions) == 1, completions             # ran once
    proc.send_signal(signal.SIGTERM)
    rc, out, _ = finish(proc)
    assert rc == 0 and out.count("Running job") == 2, out


def test_expired_runner_token_is_refreshed(make_runner):
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    r.admin.expire("runner-tokens")
    q = r.admin.queue_job(job_message("echo after expiry"))
    job = r.admin.wait_job(q["requestId"], timeout=40)
    assert job["result"] == "succeeded"
    assert len([x for x in r.admin.requests(route="oauth") if x["status"] == 200]) >= 2
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0


def test_expired_session_is_recreated(make_runner):
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    r.admin.expire("sessions")
    q = r.admin.queue_job(job_message("echo new session"))
    assert r.admin.wait_job(q["requestId"], timeout=40)["result"] == "succeeded"
    creates = [x for x in r.admin.requests(route="sessions") if x["method"] == "POST" and x["status"] == 200]
    assert len(creates) == 2
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0


def test_second_listener_gets_the_session_conflict_exit_5(make_runner):
    r = make_runner()
    first = r.start()
    r.wait_polling()
    second = r.start()                      # 4 minutes of retries, scaled to 2.4 s
    rc, _, err = finish(second, timeout=60)
    assert rc == 5 and "already exists" in err
    conflicts = [x for x in r.admin.requests(route="sessions") if x["status"] == 409]
    assert len(conflicts) >= 2
    first.send_signal(signal.SIGTERM)
    assert finish(first)[0] == 0


def test_runner_deleted_while_polling_removes_config_and_exits_0(make_runner):
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    r.admin.delete_agent(r.name)
    rc, _, err = finish(proc, timeout=30)
    assert rc == 0, err
    assert not os.path.exists(r.path / ".runner") and not os.path.exists(r.path / ".credentials")


def test_deleted_runner_at_start_exits_1(make_runner):
    r = make_runner()
    r.admin.delete_agent(r.name)
    rc, _, err = finish(r.start(), timeout=30)
    assert rc == 1 and "deleted" in err.lower() or "no longer exists" in err
    assert os.path.exists(r.path / ".runner")                # only a poll-time not-found deletes it


@pytest.mark.parametrize("env_switch,code", [("1", 7), (None, 1)])
def test_version_refused_on_the_poll(make_runner, hub, env_switch, code):
    r = make_runner()
    r.admin.settings(min_runner_version="99.0.0")
    env = {"ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE": env_switch} if env_switch else {}
    rc, _, err = finish(r.start(env=env), timeout=30)
    assert rc == code and "too old" in err


def test_ephemeral_runner_takes_one_job_and_forgets_itself(make_runner):
    r = make_runner(config_args=("--ephemeral",))
    proc = r.start()
    r.wait_polling()
    first = r.admin.queue_job(job_message("echo one"))
    second = r.admin.queue_job(job_message("echo two"))
    rc, _, err = finish(proc)
    assert rc == 0, err
    assert r.admin.wait_job(first["requestId"], timeout=5)["result"] == "succeeded"
    assert r.admin.job(second["requestId"])["state"] in ("queued", "assigned")   # left for others
    assert not os.path.exists(r.path / ".runner")


def jit_blob(hub, name):
    req = urllib.request.Request(hub.url + "/api/v3/repos/octo-org/octo-repo/actions/runners/generate-jitconfig",
                                 data=json.dumps({"name": name, "runner_group_id": 1,
                                                  "labels": ["self-hosted"]}).encode(),
                                 headers={"Authorization": f"Bearer {hub.pat}",
                                          "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["encoded_jit_config"]


@pytest.mark.parametrize("via", ["flag", "env"])
def test_jit_runner_runs_one_job_and_scrubs_its_inputs(make_runner, hub, via):
    r = make_runner(name="jit-1", configure=False)
    blob = jit_blob(hub, "jit-1")
    proc = r.start("--jitconfig", blob) if via == "flag" else \
        r.start(env={"ACTIONS_RUNNER_INPUT_JITCONFIG": blob, "ACTIONS_RUNNER_INPUT_OTHER": "x"})
    r.wait_polling()
    q = r.admin.queue_job(job_message('echo "inputs: $(env | grep -c ACTIONS_RUNNER_INPUT_ || true)"'))
    rc, _, err = finish(proc)
    assert rc == 0, err
    assert r.admin.wait_job(q["requestId"], timeout=5)["result"] == "succeeded"
    logs = json.dumps(r.admin.job(q["requestId"], "logs"))
    assert "inputs: 0" in logs
    # the JIT files' credential signs RS256 when RequireFipsCryptography is absent, PS256 else (§3.1)
    assert [x for x in r.admin.requests(route="oauth") if x["status"] == 200]


def test_bad_jit_blob_exits_1(make_runner):
    r = make_runner(name="jit-bad", configure=False)
    rc, _, err = finish(r.start("--jitconfig", "not-a-blob"), timeout=20)
    assert rc == 1 and "JIT" in err


def test_plan_version_7_finishes_by_patch(make_runner):
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    q = r.admin.queue_job(job_message("echo old plan"), plan_version=7)
    assert finish(proc)[0] == 0
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "succeeded" and job["completedVia"] == "finish" and job["violations"] == []


def test_not_configured_exits_1(harrier, tmp_path):
    p = harrier("run", cwd=tmp_path)
    assert p.returncode == 1 and "not configured" in p.stderr


@pytest.mark.skipif(os.environ.get("HARRIER_SKIP_SLOW") == "1", reason="HARRIER_SKIP_SLOW=1")
def test_real_cadence_lock_renewal(make_runner):
    """No timer scaling: the lock is renewed once at the start and again 60 s later."""
    r = make_runner()
    proc = r.start("--once", scale=False)
    r.wait_polling()
    q = r.admin.queue_job(job_message("sleep 64; echo done"))
    rc, _, err = finish(proc, timeout=120)
    assert rc == 0, err
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "succeeded" and job["renewals"] >= 2
    renews = [x for x in r.admin.requests(route="jobrequests") if x["method"] == "PATCH" and x["status"] == 200]
    gap = fh_time(renews[1]) - fh_time(renews[0])
    assert 55 <= gap <= 70, gap


def fh_time(req):
    from datetime import datetime
    return datetime.strptime(req["time"][:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def test_env_and_path_files_reach_the_job(make_runner):
    r = make_runner()
    bindir = r.path / "tools"
    bindir.mkdir()
    tool = bindir / "only-here"
    tool.write_text("#!/bin/sh\necho tool-from-dot-path\n")
    tool.chmod(0o755)
    (r.path / ".env").write_text("RUNNER_SITE=lab-7\n")
    (r.path / ".path").write_text(f"{bindir}:/usr/bin:/bin\n")
    proc = r.start("--once")
    r.wait_polling()
    q = r.admin.queue_job(job_message('echo "site=$RUNNER_SITE"; only-here'))
    assert finish(proc)[0] == 0
    assert r.admin.wait_job(q["requestId"], timeout=5)["result"] == "succeeded"
    logs = json.dumps(r.admin.job(q["requestId"], "logs"))
    assert "site=lab-7" in logs and "tool-from-dot-path" in logs


def test_a_big_step_log_goes_up_in_8_mib_pages_to_one_log(make_runner):
    """§7.6: the official runner rolls a log over at 8 MiB; harrier uploads each page as it fills
    (so a long step's log reaches the service while it runs and the listener holds one page),
    appended to the record's one log, nothing lost or reordered."""
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    msg = job_message("seq 1 300000; echo done-after-seq", secret=False)
    step_id = msg["steps"][0]["id"]
    q = r.admin.queue_job(msg)
    rc, out, err = finish(proc, timeout=180)
    assert rc == 0, err
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "succeeded", job
    logs = r.admin.job(q["requestId"], "logs")
    step_log = logs["records"][step_id]
    numbers = [line.split(" ", 1)[1] for line in step_log.splitlines()
               if line.split(" ", 1)[-1].isdigit()]
    assert numbers == [str(i) for i in range(1, 300001)]
    assert step_log.rstrip().endswith("done-after-seq")
    by_id = {lid: log for lid, log in logs["logs"].items() if log["path"].endswith(step_id)}
    assert len(by_id) == 1 and list(by_id.values())[0]["text"] == step_log
    (log,) = by_id.values()
    assert log["appends"] >= 2                       # > 8 MiB: at least two pages, one log id
    creates = [x for x in r.admin.requests(route="logs") if x["method"] == "POST" and x["path"].endswith("/logs")]
    assert len(creates) == len(logs["logs"])         # one log created per record, never per page


def test_set_up_job_and_complete_job_are_records_of_their_own(make_runner):
    """As on GitHub: the job's own lines before its first step are the "Set up job" step (order
    1), the ones after its last step "Complete job" (last); the steps sit between them."""
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    msg = job_message("echo first", "echo second", secret=False)
    q = r.admin.queue_job(msg)
    assert finish(proc)[0] == 0
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "succeeded"
    tasks = sorted((x for x in r.admin.job(q["requestId"], "timeline")["records"] if x["type"] == "Task"),
                   key=lambda x: x["order"])
    assert [t["name"] for t in tasks] == ["Set up job", "Run echo first", "Run echo second", "Complete job"]
    assert [t["order"] for t in tasks] == [1, 2, 3, 4]
    assert all(t["state"] == "completed" and t["result"] == "succeeded" for t in tasks), tasks
    logs = r.admin.job(q["requestId"], "logs")["records"]
    setup, complete = logs[tasks[0]["id"]], logs[tasks[-1]["id"]]
    assert "Current runner version: '" in setup and "Runner name: 'r1'" in setup
    assert "Cleaning up orphan processes" in complete and "echo first" not in complete
    job_log = logs[job["jobId"]]
    import re
    for line in job_log.splitlines():                 # §7.6: "<UTC time, 7 decimals>Z <text>"
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ", line), line
    assert job_log.index("Current runner version") < job_log.index("Run echo first") < \
        job_log.index("Cleaning up orphan processes")


def test_a_job_that_fails_in_set_up_fails_its_set_up_job_step(make_runner):
    """An action that cannot be had fails the job before its first step, in "Set up job"."""
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    step = {"type": "action", "id": fh.new_guid(), "name": "missing", "contextName": "missing",
            "condition": "success()",
            "reference": {"type": "repository", "name": "nobody/no-such-action", "ref": "v9",
                          "repositoryType": "GitHub"}}
    q = r.admin.queue_job(job_message(step, "echo never", secret=False))
    assert finish(proc, timeout=120)[0] == 0
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "failed"
    tasks = {x["name"]: x for x in r.admin.job(q["requestId"], "timeline")["records"] if x["type"] == "Task"}
    assert tasks["Set up job"]["result"] == "failed" and tasks["Set up job"]["errorCount"] >= 1, tasks
    assert "nobody/no-such-action" in json.dumps(tasks["Set up job"]["issues"])
    assert "Run echo never" not in tasks


def _wait_feed(r, q, text, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline and text not in json.dumps(r.admin.job(q["requestId"], "feed")):
        time.sleep(0.2)


def test_a_running_always_step_outlives_the_services_cancel(make_runner):
    """As the official StepsRunner: on the service's cancellation the running step's if: is tested
    again; an always() step goes on to its end, the job is still canceled."""
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    slow_cleanup = fh.script_step("echo cleanup-begins; sleep 2; echo cleanup-ends", name="cleanup",
                                  condition="always()")
    msg = job_message(slow_cleanup, "echo not-reached", secret=False)
    q = r.admin.queue_job(msg)
    _wait_feed(r, q, "cleanup-begins")
    r.admin.cancel_job(q["requestId"])
    rc, _, err = finish(proc, timeout=40)
    assert rc == 0, err
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "canceled" and job["cancelSent"], job
    records = {x["id"]: x for x in r.admin.job(q["requestId"], "timeline")["records"]}
    logs = r.admin.job(q["requestId"], "logs")["records"]
    assert "Z cleanup-ends\n" in logs[slow_cleanup["id"]]
    assert records[slow_cleanup["id"]]["result"] == "succeeded"
    assert records[msg["steps"][1]["id"]]["result"] == "skipped"


def test_runner_shutdown_cancels_even_a_running_always_step(make_runner):
    """On the runner's shutdown (SIGTERM to harrier run) nothing running goes on, as the official
    runner skips re-testing conditions then."""
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    cleanup = fh.script_step("echo cleanup-begins; sleep 30; echo cleanup-ends", name="cleanup",
                             condition="always()")
    q = r.admin.queue_job(job_message(cleanup, secret=False))
    _wait_feed(r, q, "cleanup-begins")
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc, timeout=40)
    assert rc == 0, err
    assert time.time() - t0 < 20
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "canceled", job
    assert "Z cleanup-ends\\n" not in json.dumps(r.admin.job(q["requestId"], "logs"))
    assert "Z cleanup-begins\\n" in json.dumps(r.admin.job(q["requestId"], "logs"))


OIDC_STEP = r'''
import json, os, base64, urllib.request
names = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_RUNTIME_TOKEN",
         "ACTIONS_RUNTIME_URL", "ACTIONS_CACHE_URL")
print("present:", " ".join(n for n in names if n in os.environ))
if "ACTIONS_ID_TOKEN_REQUEST_URL" in os.environ:
    req = urllib.request.Request(os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=harrier-test",
                                 headers={"Authorization": "Bearer " + os.environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]})
    jwt = json.load(urllib.request.urlopen(req))["value"]
    claims = json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))
    print("aud:", claims["aud"])
'''


@pytest.mark.parametrize("id_token", [True, False])
def test_run_steps_get_the_oidc_endpoint_and_not_the_runtime_token(make_runner, id_token):
    """§7.11, as the official ScriptHandler: a run step gets ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN
    when the job may ask for an id token (id-token: write gives GenerateIdTokenUrl), and never
    the runtime token or cache URL that only actions get."""
    r = make_runner()
    proc = r.start("--once")
    r.wait_polling()
    step = fh.script_step(OIDC_STEP, name="oidc")
    step["inputs"]["map"].append({"key": "shell", "value": "python3 {0}"})
    q = r.admin.queue_job(job_message(step, secret=False), id_token=id_token)
    assert finish(proc)[0] == 0
    job = r.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "succeeded", job
    log = r.admin.job(q["requestId"], "logs")["records"][step["id"]]
    if id_token:
        assert "present: ACTIONS_ID_TOKEN_REQUEST_URL ACTIONS_ID_TOKEN_REQUEST_TOKEN\n" in log, log
        assert "aud: harrier-test" in log
    else:
        assert "present: \n" in log or log.rstrip().endswith("present:"), log


def test_a_job_whose_lock_is_never_renewed_is_dropped_unreported(make_runner):
    """§7.1: when the first lock renewal fails six times the job is dropped as abandoned:
    no worker, nothing sent for it, and the runner goes back to listening."""
    r = make_runner()
    proc = r.start()
    r.wait_polling()
    r.admin.fault(route="jobrequests", method="PATCH", action="status", status=500, times=0)
    q = r.admin.queue_job(job_message("echo must-not-run", secret=False))
    deadline = time.time() + 30
    while time.time() < deadline:
        renews = [x for x in r.admin.requests(route="jobrequests") if x["method"] == "PATCH"]
        if len(renews) >= 6:
            break
        time.sleep(0.2)
    assert len(renews) >= 6, renews
    r.admin.clear_faults()
    r.wait_polling()                                   # listening again
    time.sleep(1)
    job = r.admin.job(q["requestId"])
    assert job["state"] != "completed", job
    sent = [x for x in r.admin.requests() if x["route"] in ("records", "feed", "logs", "events")]
    assert sent == [], sent
    assert "must-not-run" not in json.dumps(r.admin.requests())
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 0, err
    assert "abandoned" in err
