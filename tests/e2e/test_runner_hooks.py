"""Job hooks (ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED) as the official runner runs them:
each a step of its own ("Set up runner" first, "Complete runner" last) with its log on
fakehub; `bash -e` in the workspace with the default GITHUB_* variables but not the
workflow's env:; a failing started hook fails the job; the completed hook runs whatever
happened to the job, also when the listener is stopped mid-job (where the official runner
skips it, actions/runner#2595). `harrier exec` runs them too."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402
from fakehub_fixtures import fakehub_factory  # noqa: E402,F401

SCALE = {"HARRIER_TEST_TIMER_SCALE": "0.01"}
SANITIZER = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")
STARTED_LINE = "A job started hook has been configured by the self-hosted runner administrator"
COMPLETED_LINE = "A job completed hook has been configured by the self-hosted runner administrator"


@pytest.fixture
def hub(fakehub_factory):
    return fakehub_factory(poll_hold=2.0)


class Runner:
    """A configured harrier; its hooks are named in the .env file beside the configuration,
    where an administrator of the official runner puts them."""

    def __init__(self, bin_path, hub, root):
        self.bin, self.admin, self.path = bin_path, fh.FakeHubClient(hub.url), root / "runner"
        self.hooks = root / "hooks"        # outside the runner's folder, as the docs ask
        self.path.mkdir()
        self.hooks.mkdir()
        self.proc = None
        p = subprocess.run([bin_path, "config", "--url", hub.url + "/octo-org/octo-repo", "--token",
                            self.admin.registration_token(), "--name", "r1", "--unattended"],
                           cwd=self.path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr

    def hook(self, name, body):
        f = self.hooks / name
        f.write_text(textwrap.dedent(body))
        return str(f)

    def set_hooks(self, started=None, completed=None):
        lines = []
        if started:
            lines.append(f"ACTIONS_RUNNER_HOOK_JOB_STARTED={started}")
        if completed:
            lines.append(f"ACTIONS_RUNNER_HOOK_JOB_COMPLETED={completed}")
        (self.path / ".env").write_text("\n".join(lines) + "\n")

    def start(self, *args, scale=True):
        env = dict(os.environ)
        for k in ("ACTIONS_RUNNER_HOOK_JOB_STARTED", "ACTIONS_RUNNER_HOOK_JOB_COMPLETED"):
            env.pop(k, None)
        if scale:
            env.update(SCALE)
        self.proc = subprocess.Popen([self.bin, "run", "--sandbox", "none", *args], cwd=self.path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.admin.wait_polling("r1", timeout=20)
        return self.proc

    def finish(self, timeout=60):
        out, err = self.proc.communicate(timeout=timeout)
        assert not SANITIZER.search(err), err          # the worker's stderr is the listener's
        return self.proc.returncode, out, err

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def runner(harrier_bin, hub, tmp_path):
    r = Runner(harrier_bin, hub, tmp_path)
    yield r
    r.stop()


def job_message(*steps, workflow_env=None):
    msg = fh.minimal_job_message([fh.script_step(s, name=f"s{i}") if isinstance(s, str) else s
                                  for i, s in enumerate(steps)])
    if workflow_env:
        msg["environmentVariables"] = [{"type": 2, "map": [{"key": k, "value": v}
                                                           for k, v in workflow_env.items()]}]
    return msg


def steps_in_order(admin, rid):
    """The job's step records as the job's page lists them, by their order, between the "Set up
    job" and "Complete job" records every job has."""
    records = admin.job(rid, "timeline")["records"]
    tasks = sorted([x for x in records if x["type"] == "Task"], key=lambda x: x["order"])
    assert tasks[0]["name"] == "Set up job" and tasks[-1]["name"] == "Complete job", tasks
    return tasks[1:-1]


def test_both_hooks_run_in_order_as_their_own_steps(runner):
    trace = runner.hooks / "trace"
    started = runner.hook("started.sh", f"""\
        echo "started: pwd=$(pwd) workspace=$GITHUB_WORKSPACE"
        echo "started: repo=$GITHUB_REPOSITORY run=$GITHUB_RUN_ID job=$GITHUB_JOB actions=$GITHUB_ACTIONS"
        echo "started: event=$(cat "$GITHUB_EVENT_PATH" | head -c 1) workflow-env=${{WORKFLOW_ENV:-unset}}"
        echo "started: shell=$BASH_VERSION"
        echo "FROM_HOOK=set-by-the-started-hook" >> "$GITHUB_ENV"
        echo "::warning::this runner pool is deprecated"
        echo started >> {trace}
        """)
    completed = runner.hook("completed.sh", f"""\
        echo "completed: repo=$GITHUB_REPOSITORY"
        echo completed >> {trace}
        """)
    runner.set_hooks(started, completed)
    runner.start("--once")
    msg = job_message(f'echo "main: FROM_HOOK=$FROM_HOOK WORKFLOW_ENV=$WORKFLOW_ENV"; echo main >> {trace}',
                      workflow_env={"WORKFLOW_ENV": "from-the-workflow"})
    q = runner.admin.queue_job(msg)
    rc, _, err = runner.finish()
    assert rc == 0, err
    job = runner.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "succeeded", job
    assert trace.read_text().split() == ["started", "main", "completed"]

    steps = steps_in_order(runner.admin, q["requestId"])
    first, main, last = steps
    assert first["name"] == "Set up runner" and last["name"] == "Complete runner"
    assert main["id"] == msg["steps"][0]["id"]
    for s in steps:
        assert s["state"] == "completed" and s["result"] == "succeeded" and s["parentId"] == job["jobId"]
        assert s["log"] and s["log"]["id"]
    assert first["warningCount"] == 1 and "deprecated" in first["issues"][0]["message"]

    logs = runner.admin.job(q["requestId"], "logs")["records"]
    started_log, completed_log, main_log = logs[first["id"]], logs[last["id"]], logs[main["id"]]
    assert STARTED_LINE in started_log and COMPLETED_LINE in completed_log
    assert f"##[group]Run '{started}'" in started_log and f"Run '{completed}'" in completed_log
    assert "shell: " in started_log and "bash -e {0}" in started_log
    workspace = [ln for ln in started_log.splitlines() if "started: pwd=" in ln][0]
    pwd, ws = workspace.split("pwd=")[1].split(" workspace=")
    assert pwd == ws and ws.startswith(str(runner.path))        # runs in the job's workspace
    assert "repo=octo-org/octo-repo" in started_log and f"run={q['requestId']}" in started_log
    assert "job=build actions=true" in started_log
    assert "event={" in started_log
    assert "workflow-env=unset" in started_log                  # the workflow's env: is not theirs
    assert re.search(r"started: shell=\d", started_log)        # bash, not sh
    assert "main: FROM_HOOK=set-by-the-started-hook WORKFLOW_ENV=from-the-workflow" in main_log
    assert "completed: repo=octo-org/octo-repo" in completed_log


@pytest.mark.parametrize("case", ["exit-3", "missing-file", "not-a-script"])
def test_a_failing_started_hook_fails_the_job(runner, case):
    trace = runner.hooks / "trace"
    if case == "exit-3":
        started = runner.hook("started.sh", "echo 'cannot provision'\nexit 3\necho not-reached\n")
        expected = "Process completed with exit code 3."
    elif case == "missing-file":
        started = str(runner.hooks / "absent.sh")
        expected = "File doesn't exist"
    else:
        started = runner.hook("started.py", "print('python')\n")
        expected = "is not a valid path to a script. Make sure it ends in '.sh', '.ps1' or '.js'."
    completed = runner.hook("completed.sh", f"echo completed >> {trace}\n")
    runner.set_hooks(started, completed)
    runner.start("--once")
    always = fh.script_step(f"echo always >> {trace}", name="always", condition="always()")
    q = runner.admin.queue_job(job_message(f"echo main >> {trace}", always))
    rc, _, err = runner.finish()
    assert rc == 0, err
    job = runner.admin.wait_job(q["requestId"], timeout=5)
    assert job["result"] == "failed", job
    # The job's steps do not run (an always() step does), the completed hook still does.
    assert trace.read_text().split() == ["always", "completed"]
    first, main, always_rec, last = steps_in_order(runner.admin, q["requestId"])
    assert first["name"] == "Set up runner" and first["result"] == "failed"
    assert first["errorCount"] == 1 and expected in first["issues"][0]["message"]
    assert main["result"] == "skipped" and always_rec["result"] == "succeeded"
    assert last["name"] == "Complete runner" and last["result"] == "succeeded"
    log = runner.admin.job(q["requestId"], "logs")["records"][first["id"]]
    assert STARTED_LINE in log and "##[error]" in log and expected in log
    if case == "exit-3":
        assert "cannot provision" in log and "not-reached" not in log   # bash -e


def test_the_completed_hook_runs_when_the_job_fails(runner):
    completed = runner.hook("completed.sh", 'echo "cleaning up after the job"\n')
    runner.set_hooks(completed=completed)
    runner.start("--once")
    q = runner.admin.queue_job(job_message("echo main; exit 1", "echo never"))
    rc, _, err = runner.finish()
    assert rc == 0, err
    assert runner.admin.wait_job(q["requestId"], timeout=5)["result"] == "failed"
    steps = steps_in_order(runner.admin, q["requestId"])
    assert [s["result"] for s in steps] == ["failed", "skipped", "succeeded"]
    assert steps[-1]["name"] == "Complete runner"
    assert "cleaning up after the job" in runner.admin.job(q["requestId"], "logs")["records"][steps[-1]["id"]]


def wait_for(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sigterm_mid_job_cancels_it_and_still_runs_the_completed_hook(runner):
    """The official runner skips "Complete runner" when its listener is stopped mid-job
    (actions/runner#2595); harrier runs it before the job is reported."""
    marker = runner.hooks / "step-started"
    completed = runner.hook("completed.sh", 'echo "completed hook after cancel: status=done"\n')
    runner.set_hooks(completed=completed)
    # Unscaled timers: the listener's kill deadline after cancelling is the real 45 s.
    runner.start(scale=False)
    q = runner.admin.queue_job(job_message(f"touch {marker}; sleep 60; echo not-reached"))
    assert wait_for(marker.exists)
    runner.proc.send_signal(signal.SIGTERM)
    rc, _, err = runner.finish(timeout=60)
    assert rc == 0, err
    job = runner.admin.wait_job(q["requestId"], timeout=5)
    assert job["state"] == "completed" and job["result"] == "canceled", job
    main, last = steps_in_order(runner.admin, q["requestId"])
    assert main["result"] == "canceled"
    assert last["name"] == "Complete runner" and last["state"] == "completed" and last["result"] == "succeeded"
    logs = runner.admin.job(q["requestId"], "logs")["records"]
    assert "completed hook after cancel: status=done" in logs[last["id"]]
    assert "Z not-reached\\n" not in json.dumps(logs)


def test_cancelling_the_job_does_not_cut_the_completed_hook_short(runner):
    began = runner.hooks / "hook-began"
    completed = runner.hook("completed.sh", f'touch {began}\nsleep 2\necho "clean-up finished"\n')
    runner.set_hooks(completed=completed)
    runner.start(scale=False)
    q = runner.admin.queue_job(job_message("echo main"))
    assert wait_for(began.exists)
    runner.proc.send_signal(signal.SIGTERM)         # the listener cancels the job now
    rc, _, err = runner.finish(timeout=60)
    assert rc == 0, err
    runner.admin.wait_job(q["requestId"], timeout=5)
    last = steps_in_order(runner.admin, q["requestId"])[-1]
    assert last["name"] == "Complete runner" and last["result"] == "succeeded"
    assert "clean-up finished" in runner.admin.job(q["requestId"], "logs")["records"][last["id"]]


def test_exec_runs_the_hooks_too(harrier, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text(
        "on: push\njobs:\n  build:\n    runs-on: self-hosted\n    steps:\n      - run: echo main\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    started, completed = tmp_path / "started.sh", tmp_path / "completed.sh"
    started.write_text('echo "hook saw $GITHUB_WORKFLOW"\n')
    completed.write_text("echo bye\n")
    p = harrier("exec", "--json", "--sandbox", "none", "--work", str(tmp_path / "work"), cwd=repo,
                env={"ACTIONS_RUNNER_HOOK_JOB_STARTED": str(started),
                     "ACTIONS_RUNNER_HOOK_JOB_COMPLETED": str(completed)})
    assert p.returncode == 0 and not SANITIZER.search(p.stderr), p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    names = [e["name"] for e in events if e.get("event") == "step_started"]
    assert names == ["Set up runner", "Run echo main", "Complete runner"]
    assert any("hook saw" in e.get("line", "") for e in events if e.get("event") == "log")
