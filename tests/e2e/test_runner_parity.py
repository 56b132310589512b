"""Runner mode against local mode (issue 16, "Done when"): one real workflow (`needs`, a matrix
built from a job's outputs, job outputs read by later jobs, a secret, step summaries, a failing
step with continue-on-error, a skipped step, a skipped job and a failed one) runs twice:

- locally: `harrier exec --json --messages-dir` (the worker's events, and the job messages the
  planner produced);
- in runner mode: `harrier config` + `harrier run` against fakehub, which queues the same
  workflow job by job in `needs` order through harrier's planner (`POST /_admin/workflows`),
  each later job planned with what fakehub recorded of the earlier ones in *this* run (their
  JobCompleted results and outputs), never with the local run's.

Then every job and matrix configuration must end the same: job results and outputs, step names
and results (timeline records against step_finished events), annotations (record issues against
annotation events), log lines per step and per job (fakehub's logs against the log events),
step summaries; and the secret must be absent from everything fakehub received. Where the two
modes differ legitimately the difference is named and normalized in one place below, each with
its reason; anything else is a finding."""
import base64
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402

SECRET = "Parity-s3cret-9f2Qx"

WORKFLOW = """\
name: parity
on: push
env:
  WF_LEVEL: workflow-env
jobs:
  setup:
    runs-on: self-hosted
    outputs:
      arches: ${{ steps.cfg.outputs.arches }}
      version: ${{ steps.cfg.outputs.version }}
      go: ${{ steps.cfg.outputs.go }}
      leak: ${{ secrets.DEPLOY_TOKEN }}
    steps:
      - id: cfg
        name: Configure
        run: |
          echo "configuring at $WF_LEVEL"
          echo 'arches=["amd64","arm64"]' >> "$GITHUB_OUTPUT"
          echo "version=1.2.3" >> "$GITHUB_OUTPUT"
          echo "go=no" >> "$GITHUB_OUTPUT"
      - name: Use the secret
        env:
          TOKEN: ${{ secrets.DEPLOY_TOKEN }}
        run: |
          echo "token is $TOKEN"
          echo "inline ${{ secrets.DEPLOY_TOKEN }}"
          echo "base64 $(printf %s "$TOKEN" | base64)"
          echo "## Setup" >> "$GITHUB_STEP_SUMMARY"
          echo "deployed with $TOKEN" >> "$GITHUB_STEP_SUMMARY"
  build:
    needs: setup
    runs-on: self-hosted
    name: Build ${{ matrix.arch }}
    strategy:
      matrix:
        arch: ${{ fromJSON(needs.setup.outputs.arches) }}
    outputs:
      version: ${{ steps.b.outputs.version }}
      amd64: ${{ matrix.arch == 'amd64' && steps.b.outputs.artifact || '' }}
      arm64: ${{ matrix.arch == 'arm64' && steps.b.outputs.artifact || '' }}
    steps:
      - id: b
        name: Compile for ${{ matrix.arch }}
        run: |
          echo "building ${{ needs.setup.outputs.version }} for ${{ matrix.arch }}"
          echo "::group::details"
          echo "inside a group"
          echo "::endgroup::"
          echo "::warning title=Heads up::a warning for ${{ matrix.arch }}"
          echo "::notice file=src/app.c,line=12,col=3::a notice with a place"
          echo "version=${{ needs.setup.outputs.version }}" >> "$GITHUB_OUTPUT"
          echo "artifact=app-${{ matrix.arch }}.tar" >> "$GITHUB_OUTPUT"
  test:
    needs: [setup, build]
    runs-on: self-hosted
    env:
      VERSION: ${{ needs.build.outputs.version }}
    steps:
      - name: Show what the builds left
        run: |
          echo "version $VERSION"
          echo "artifacts ${{ needs.build.outputs.amd64 }} ${{ needs.build.outputs.arm64 }}"
          echo "build result ${{ needs.build.result }}"
          echo "leak output is '${{ needs.setup.outputs.leak }}'"
          echo "### Tests passed" >> "$GITHUB_STEP_SUMMARY"
      - name: Flaky
        continue-on-error: true
        run: |
          echo "about to fail"
          exit 3
      - name: Only on failure
        if: failure()
        run: echo "never printed"
      - run: echo "after the flaky step, job status ${{ job.status }}"
  deploy:
    needs: setup
    if: needs.setup.outputs.go == 'yes'
    runs-on: self-hosted
    steps:
      - run: echo never deployed
  report:
    needs: [test, deploy]
    if: always()
    runs-on: self-hosted
    steps:
      - run: |
          echo "test ${{ needs.test.result }}, deploy ${{ needs.deploy.result }}"
          echo "::error::the report fails the run"
          exit 1
      - if: always()
        run: echo cleanup
"""

# A timeline record's result (§7.4) as the worker's events name it.
RECORD_RESULT = {"succeeded": "success", "succeededWithIssues": "success", "failed": "failure",
                 "canceled": "cancelled", "skipped": "skipped", "abandoned": "failure"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")

# ---------------------------------------------------------------------------------------------
# The legitimate differences, each normalized here and nowhere else.


# Records the official runner adds around a job's steps (§7.4): local mode shows their lines as
# the job's own (step 0 of the events), with no step of their own.
RUNNER_ONLY_RECORDS = {"Set up job", "Complete job"}


def log_lines(text):
    """A log file's lines without the runner's per-line timestamps (§7.6); the event stream
    carries the time in its own member, not in the line."""
    return [same_runner_name(TIMESTAMP.sub("", line)) for line in text.splitlines()]


def same_runner_name(line):
    """"Set up job" names the runner: "harrier" for harrier exec, the registered name in runner
    mode ("parity")."""
    return "Runner name: 'harrier'" if line.startswith("Runner name: '") else line


def issue_of(annotation):
    """An annotation event as the timeline issue it becomes (§7.4: data values are strings)."""
    data = {}
    for event_key, issue_key in (("file", "file"), ("line", "line"), ("col", "col"),
                                 ("end_line", "endLine"), ("end_column", "endColumn"), ("title", "title")):
        if annotation.get(event_key) is not None:
            data[issue_key] = str(annotation[event_key])
    return {"type": annotation["level"], "message": annotation["message"], "data": data}


def issue_shape(issue):
    """A record's issue without `category` (GitHub's classification, which the event stream
    does not carry) and `logFileLineNumber` (a position in the uploaded log file)."""
    data = {k: v for k, v in (issue.get("data") or {}).items() if k != "logFileLineNumber"}
    return {"type": issue["type"], "message": issue["message"], "data": data}


# ---------------------------------------------------------------------------------------------
# The two runs (once for the module: every test below compares one aspect of them).


def decode_context(value):
    """PipelineContextData (§6.5) as plain JSON."""
    if isinstance(value, dict) and "t" in value:
        kind = value["t"]
        if kind == 0:
            return value.get("s", "")
        if kind == 1:
            return [decode_context(v) for v in value.get("a", [])]
        if kind in (2, 5):
            return {p["k"]: decode_context(p["v"]) for p in value.get("d", [])}
        if kind == 3:
            return value.get("b")
        if kind == 4:
            return value.get("n")
    return value


class Local:
    """What `harrier exec --json` printed, per configuration (the "job" label it adds)."""

    def __init__(self, stdout, messages_dir):
        self.lines = stdout
        self.events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        self.workflow_jobs = {e["job_id"]: e for e in self.events if e["event"] == "workflow_job_finished"}
        self.messages = {}
        for name in os.listdir(messages_dir):
            with open(os.path.join(messages_dir, name)) as f:
                self.messages[name] = json.load(f)
        self.configs = {}
        for e in self.events:
            if "job" in e and e["event"] != "workflow_job_finished":
                self.configs.setdefault(e["job"], []).append(e)

    def of(self, label, kind):
        return [e for e in self.configs[label] if e["event"] == kind]

    def steps(self, label):
        """Step number → {name, outcome, conclusion, outputs, lines, summary, annotations}."""
        steps = {0: {"name": None, "lines": [], "annotations": [], "summary": None}}
        for e in self.configs[label]:
            if e["event"] == "step_started":
                steps[e["step"]] = {"name": e["name"], "lines": [], "annotations": [], "summary": None}
            elif e["event"] == "log":
                steps[e["step"]]["lines"].append(e["line"])
            elif e["event"] == "annotation":
                steps[e["step"]]["annotations"].append(e)
            elif e["event"] == "step_summary":
                steps[e["step"]]["summary"] = e["markdown"]
            elif e["event"] == "step_finished":
                steps[e["step"]].update(outcome=e["outcome"], conclusion=e["conclusion"], outputs=e["outputs"])
        return steps


class Remote:
    """What fakehub recorded of the workflow run, per configuration (its job display name)."""

    def __init__(self, admin, run):
        self.run = run
        self.configs = {}
        for job_id, job in run["jobs"].items():
            for c in job["configurations"]:
                rid = c["requestId"]
                self.configs[c["name"]] = {
                    "job_id": job_id, "config": c, "job": admin.job(rid),
                    "timeline": admin.job(rid, "timeline")["records"], "logs": admin.job(rid, "logs"),
                    "summaries": admin.job(rid, "summaries"), "message": admin.job(rid, "message"),
                    "events": admin.job(rid, "events"), "feed": admin.job(rid, "feed")}

    def steps(self, name):
        """The step records in order, without the runner-only ones (normalized, see above)."""
        c = self.configs[name]
        tasks = sorted((r for r in c["timeline"] if r["type"] == "Task"), key=lambda r: r["order"])
        return [r for r in tasks if r["name"] not in RUNNER_ONLY_RECORDS]

    def paired_steps(self, name, local):
        """(local step number, its record) for every step, in order; both modes must have the
        same number of steps."""
        steps = local.steps(name)
        numbers = [n for n in sorted(steps) if n > 0]
        records = self.steps(name)
        assert len(numbers) == len(records), (name, [steps[n]["name"] for n in numbers],
                                              [r["name"] for r in records])
        return list(zip(numbers, records))

    def job_record(self, name):
        c = self.configs[name]
        return next(r for r in c["timeline"] if r["id"] == c["job"]["jobId"])

    def record_lines(self, name, record):
        return log_lines(self.configs[name]["logs"]["records"].get(record["id"], ""))


@pytest.fixture(scope="module")
def runs(harrier_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "wf.yml").write_text(WORKFLOW)

    local_messages = tmp / "local-messages"
    p = subprocess.run([harrier_bin, "exec", "-W", "wf.yml", "--secret", f"DEPLOY_TOKEN={SECRET}", "--json",
                        "--messages-dir", str(local_messages), "--work", str(tmp / "local-work"),
                        "--sandbox", "none"],
                       cwd=repo, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr            # the report job fails the run, by design
    local = Local(p.stdout, local_messages)

    hub = fh.FakeHub(state_dir=str(tmp / "hub"), poll_hold=2.0).start()
    admin = fh.FakeHubClient(hub.url)
    runner_dir = tmp / "runner"
    runner_dir.mkdir()
    proc = None
    try:
        c = subprocess.run([harrier_bin, "config", "--url", hub.url + "/octo-org/octo-repo", "--token",
                            admin.registration_token(), "--name", "parity", "--unattended"],
                           cwd=runner_dir, capture_output=True, text=True, timeout=60)
        assert c.returncode == 0, c.stderr
        proc = subprocess.Popen([harrier_bin, "run", "--sandbox", "none"], cwd=runner_dir,
                                env=dict(os.environ, HARRIER_TEST_TIMER_SCALE="0.01"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        admin.wait_polling("parity")
        # the same relative path as the local run: messages name their workflow file (fileTable)
        queued = admin.queue_workflow([harrier_bin, "exec"], "wf.yml", cwd=str(repo),
                                      secrets={"DEPLOY_TOKEN": SECRET})
        run = admin.wait_workflow(queued["id"], timeout=240)
        assert run["state"] == "completed", run
        remote = Remote(admin, run)
        proc.terminate()                          # idle by now: a clean stop
        out, err = proc.communicate(timeout=60)
        remote.runner_output, remote.runner_exit = out + err, proc.returncode
        # everything the runner ever sent, its session's deletion included
        remote.secret_hits = admin.search(SECRET)
        remote.b64_hits = admin.search(base64.b64encode(SECRET.encode()).decode())
        remote.violations = admin.violations()
        # Bearer challenges are normal protocol; a Busy poll cut short by the session's deletion
        # at exit is the listener stopping, not a refusal of what it sent
        remote.refusals = [r for r in admin.refusals() if not r.get("challenge") and not
                           (r["route"] == "messages" and "(deleted)" in (r.get("refused") or ""))]
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.communicate()
        hub.stop()
    return local, remote


# ---------------------------------------------------------------------------------------------
# The workflow did what it is here to exercise (else the comparisons below prove little).


def test_the_workflow_exercises_what_it_claims(runs):
    local, remote = runs
    assert set(local.configs) == {"setup", "Build amd64", "Build arm64", "test", "report"}
    assert local.workflow_jobs["deploy"]["result"] == "skipped"
    assert local.workflow_jobs["report"]["result"] == "failure"
    assert local.workflow_jobs["build"]["outputs"] == {"version": "1.2.3", "amd64": "app-amd64.tar",
                                                       "arm64": "app-arm64.tar"}
    test_steps = local.steps("test")
    assert "artifacts app-amd64.tar app-arm64.tar" in test_steps[1]["lines"]
    assert (test_steps[2]["outcome"], test_steps[2]["conclusion"]) == ("failure", "success")
    assert test_steps[3]["conclusion"] == "skipped"
    assert "##[warning]Skip output 'leak' since it may contain secret." in local.steps("setup")[0]["lines"]
    # runner mode ran the same jobs, released in needs order by what fakehub recorded
    assert remote.run["order"][:2] == ["setup", "build"] and remote.run["result"] == "failure"
    assert remote.run["plans"] == 4                # setup; build (deploy skipped); test; report
    assert set(remote.configs) == set(local.configs)


# ---------------------------------------------------------------------------------------------
# Results and outputs.


def test_every_workflow_job_ends_the_same(runs):
    """Per workflow job (all its configurations, as `needs` sees it): result, outputs, note."""
    local, remote = runs
    assert set(local.workflow_jobs) == set(remote.run["jobs"])
    for job_id, job in remote.run["jobs"].items():
        mine = local.workflow_jobs[job_id]
        assert (job["result"], job["outputs"]) == (mine["result"], mine["outputs"]), job_id
        assert job["note"] == mine.get("note"), job_id


def test_every_configuration_ends_the_same(runs):
    local, remote = runs
    for name, c in remote.configs.items():
        finished = local.of(name, "job_finished")
        assert len(finished) == 1, name
        assert RECORD_RESULT[c["job"]["result"]] == finished[0]["result"], name
        assert RECORD_RESULT[remote.job_record(name)["result"]] == finished[0]["result"], name
        assert c["job"]["outputs"] == finished[0]["outputs"], name
        assert c["job_id"] == next(m["jobName"] for m in local.messages.values()
                                   if m["jobDisplayName"] == name)


# ---------------------------------------------------------------------------------------------
# Steps.


def test_steps_have_the_same_names_and_results(runs):
    local, remote = runs
    for name in remote.configs:
        steps = local.steps(name)
        mine = [(steps[n]["name"], steps[n]["conclusion"]) for n in sorted(steps) if n > 0]
        theirs = [(r["name"], RECORD_RESULT[r["result"]]) for r in remote.steps(name)]
        assert theirs == mine, name
        assert all(r["state"] == "completed" for r in remote.steps(name)), name


def test_steps_have_the_same_annotations(runs):
    local, remote = runs
    for name in remote.configs:
        steps = local.steps(name)
        for n, record in remote.paired_steps(name, local):
            mine = [issue_of(a) for a in steps[n]["annotations"]]
            theirs = [issue_shape(i) for i in record.get("issues") or []]
            levels = [a["level"] for a in steps[n]["annotations"]]
            assert (record.get("errorCount", 0), record.get("warningCount", 0), record.get("noticeCount", 0)) == \
                (levels.count("error"), levels.count("warning"), levels.count("notice")), (name, n)
            assert theirs == mine, (name, n)


def test_each_step_logs_the_same_lines(runs):
    local, remote = runs
    for name in remote.configs:
        steps = local.steps(name)
        for n, record in remote.paired_steps(name, local):
            assert remote.record_lines(name, record) == steps[n]["lines"], (name, record["name"])


def test_each_step_shows_the_same_live_lines(runs):
    """The live console (feed, §7.5) of each step: the lines a user watching the run sees,
    without timestamps already."""
    local, remote = runs
    for name in remote.configs:
        steps = local.steps(name)
        feed = remote.configs[name]["feed"]
        for n, record in remote.paired_steps(name, local):
            assert feed.get(record["id"], []) == steps[n]["lines"], (name, record["name"])


def without_block(lines, block):
    """lines without the contiguous run equal to block (which must be there)."""
    for i in range(len(lines) - len(block) + 1):
        if lines[i:i + len(block)] == block:
            return lines[:i] + lines[i + len(block):]
    raise AssertionError(f"the job log does not hold the lines {block}")


def test_each_job_logs_the_same_lines(runs):
    """The job record's log holds every line of the job, the job's own (step 0: a job output
    skipped for holding a secret) and each step's, in the order they were written."""
    local, remote = runs
    for name in remote.configs:
        mine = [same_runner_name(e["line"]) for e in local.of(name, "log")]
        job_own = [same_runner_name(e["line"]) for e in local.of(name, "log") if e["step"] == 0]
        theirs = remote.record_lines(name, remote.job_record(name))
        for record in remote.configs[name]["timeline"]:
            if record["name"] in RUNNER_ONLY_RECORDS:
                # the runner's own block; the job's own lines the runner files there stay compared
                block = remote.record_lines(name, record)
                theirs = without_block(theirs, block)
                mine = [line for line in mine if line not in block or line not in job_own]
        assert theirs == mine, name


def test_step_summaries_are_the_same(runs):
    local, remote = runs
    seen = 0
    for name in remote.configs:
        steps = local.steps(name)
        summaries = remote.configs[name]["summaries"]
        for n, record in remote.paired_steps(name, local):
            assert summaries.get(record["id"]) == steps[n]["summary"], (name, record["name"])
            seen += steps[n]["summary"] is not None
        assert len(summaries) == sum(1 for s in steps.values() if s["summary"] is not None), name
    assert seen == 2


def test_skipped_step_is_named_as_github_names_it(runs):
    """The official runner names every step record when the job starts (JobExtension evaluates
    each step's display name from the message), so a step skipped by its `if` still shows its
    `name:`. Both modes show the same thing; this checks it is GitHub's."""
    local, remote = runs
    shown = local.steps("test")[3]["name"]
    record = remote.steps("test")[2]["name"]
    assert shown == record == "Only on failure"


# ---------------------------------------------------------------------------------------------
# Secrets, and runner mode standing on its own.


def test_secret_reaches_neither_fakehub_nor_the_terminal(runs):
    local, remote = runs
    b64 = base64.b64encode(SECRET.encode()).decode()
    assert remote.secret_hits == [] and remote.b64_hits == []
    assert SECRET not in local.lines and SECRET not in remote.runner_output and b64 not in local.lines
    lines = remote.record_lines("setup", remote.steps("setup")[1])
    assert "inline ***" in lines and "base64 ***" in lines
    assert remote.configs["setup"]["job"]["outputs"].get("leak") is None


def test_runner_mode_planned_each_job_from_what_fakehub_recorded(runs):
    """A later job's `needs` in runner mode came from this run's JobCompleted events, and its
    messages are not the local run's."""
    local, remote = runs
    test = remote.configs["test"]
    needs = decode_context(test["message"]["contextData"]["needs"])
    build = remote.run["jobs"]["build"]
    assert needs["build"] == {"result": "success", "outputs": build["outputs"]}
    reported = {}
    for c in build["configurations"]:
        events = remote.configs[c["name"]]["events"]
        completed = [e for e in events if e.get("event") == "JobCompleted"]
        reported.update({k: v["value"] for k, v in completed[-1]["body"]["outputs"].items()})
    assert build["outputs"] == reported
    local_ids = {m["jobId"] for m in local.messages.values()}
    assert not local_ids & {c["job"]["jobId"] for c in remote.configs.values()}
    matrix = decode_context(remote.configs["Build arm64"]["message"]["contextData"]["matrix"])
    assert matrix == {"arch": "arm64"}


def test_runner_broke_no_protocol_rule(runs):
    _, remote = runs
    assert remote.violations == {}
    assert remote.refusals == []
    assert remote.runner_exit == 0                 # SIGTERM while idle: a clean stop (§2.1)
