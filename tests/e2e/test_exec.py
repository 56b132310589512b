"""harrier exec: local mode runs workflows end to end, as a user sees them."""
import json
import os
import signal
import subprocess
import textwrap
import time

import pytest


@pytest.fixture
def repo(tmp_path):
    """A git checkout with workflows; returns a helper that writes one and runs exec."""
    root = tmp_path / "octo-repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin",
                    "https://github.com/octo-org/octo-repo.git"], check=True)

    class Repo:
        path = root
        work = tmp_path / "work"

        def write(self, name, text):
            f = root / ".github" / "workflows" / name
            f.write_text(textwrap.dedent(text))
            return f

        def commit(self):
            subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
            subprocess.run(["git", "-C", str(root), "-c", "user.name=Mona", "-c",
                            "user.email=m@example.com", "commit", "-qm", "change"], check=True)
    return Repo()


@pytest.fixture
def exec_in(harrier, repo):
    def run(*args, timeout=120, commit=True):
        if commit:
            repo.commit()
        return harrier("exec", "--work", str(repo.work), *args, cwd=str(repo.path),
                       timeout=timeout, env={"NO_COLOR": "1"})
    return run


def summary_rows(stdout):
    """The run's closing table: job label → result."""
    lines = stdout.splitlines()
    start = max(i for i, l in enumerate(lines) if l.startswith("Job ") and "Result" in l)
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        label, result = line.rsplit(None, 2)[0].strip(), line.rsplit(None, 2)[1]
        rows[label] = result
    return rows


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_needs_matrix_outputs_and_summary(repo, exec_in):
    repo.write("ci.yml", """
        on: push
        env:
          GREETING: hello
        jobs:
          build:
            runs-on: self-hosted
            outputs:
              word: ${{ steps.make.outputs.word }}
            steps:
              - id: make
                run: |
                  echo "$GREETING from $GITHUB_REPOSITORY on $GITHUB_REF"
                  echo "word=bird" >> "$GITHUB_OUTPUT"
              - run: echo "second step sees ${{ steps.make.outputs.word }}"
          test:
            needs: build
            strategy:
              matrix:
                n: [1, 2]
            runs-on: self-hosted
            steps:
              - run: echo "test ${{ matrix.n }} got ${{ needs.build.outputs.word }}"
              - run: echo "### Report ${{ matrix.n }}" >> "$GITHUB_STEP_SUMMARY"
    """)
    p = exec_in()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[build]   | hello from octo-org/octo-repo on refs/heads/main" in p.stdout
    assert "second step sees bird" in p.stdout
    assert "[test (1)]   | test 1 got bird" in p.stdout
    assert "[test (2)]   | test 2 got bird" in p.stdout
    assert "### Report 1" in p.stdout and "### Report 2" in p.stdout
    assert summary_rows(p.stdout) == {"build": "success", "test (1)": "success",
                                      "test (2)": "success"}


def test_failure_exit_code_if_conditions_and_continue_on_error(repo, exec_in):
    repo.write("ci.yml", """
        on: push
        jobs:
          a:
            runs-on: self-hosted
            steps:
              - run: exit 3
                continue-on-error: true
                id: soft
              - run: echo "soft outcome=${{ steps.soft.outcome }} conclusion=${{ steps.soft.conclusion }}"
              - run: exit 7
              - run: echo never
              - if: failure()
                run: echo "cleanup after failure"
              - if: always()
                run: echo "always runs"
          b:
            needs: a
            runs-on: self-hosted
            steps:
              - run: echo "b should be skipped"
          c:
            needs: a
            if: failure()
            runs-on: self-hosted
            steps:
              - run: echo "c runs because a failed"
    """)
    p = exec_in()
    assert p.returncode == 1
    assert "soft outcome=failure conclusion=success" in p.stdout
    assert "Process completed with exit code 7." in p.stdout
    assert "never" not in p.stdout.replace("Run echo never", "")
    assert "cleanup after failure" in p.stdout
    assert "always runs" in p.stdout
    assert "b should be skipped" not in p.stdout
    assert "c runs because a failed" in p.stdout
    assert summary_rows(p.stdout) == {"a": "failure", "b": "skipped", "c": "success"}


def test_secrets_are_masked_everywhere(repo, exec_in, tmp_path):
    secret = "s3cr3t-Value-42"
    repo.write("ci.yml", """
        on: push
        jobs:
          leak:
            runs-on: self-hosted
            steps:
              - env:
                  TOKEN: ${{ secrets.TOKEN }}
                run: |
                  echo "plain $TOKEN"
                  echo "split ${TOKEN:0:6}" "${TOKEN:6}"
                  printf '%s' "$TOKEN" | base64
                  echo "::add-mask::dynamic-value-99"
                  echo "then dynamic-value-99"
                  echo "::error file=a.c,line=3::bad $TOKEN"
    """)
    logs = tmp_path / "logs"
    p = exec_in("--secret", f"TOKEN={secret}", "--logs-dir", str(logs), "--json")
    assert p.returncode == 0, p.stderr
    everything = p.stdout + p.stderr + "".join(f.read_text() for f in logs.rglob("*.log"))
    assert secret not in everything
    import base64
    assert base64.b64encode(secret.encode()).decode() not in everything
    lines = [e["line"] for e in events(p.stdout) if e["event"] == "log"]
    # The script is shown before it runs (as on GitHub); from add-mask on, the value is masked.
    output = lines[lines.index("##[endgroup]") + 1:]
    assert not any("dynamic-value-99" in l for l in output if "::add-mask::" not in l)
    assert "plain ***" in lines
    assert "then ***" in lines
    notes = [e for e in events(p.stdout) if e["event"] == "annotation"]
    assert notes and notes[0]["message"] == "bad ***"


def test_env_path_and_state_across_steps(repo, exec_in):
    repo.write("ci.yml", """
        on: push
        defaults:
          run:
            shell: sh
        jobs:
          j:
            runs-on: self-hosted
            env:
              JOB_LEVEL: job
            steps:
              - run: |
                  mkdir -p "$RUNNER_TEMP/bin"
                  printf '#!/bin/sh\\necho tool ran\\n' > "$RUNNER_TEMP/bin/mytool"
                  chmod +x "$RUNNER_TEMP/bin/mytool"
                  echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
                  echo "FROM_STEP=one" >> "$GITHUB_ENV"
                  {
                    echo "MULTI<<EOF"
                    echo "line a"
                    echo "line b"
                    echo "EOF"
                  } >> "$GITHUB_ENV"
              - run: |
                  mytool
                  echo "env $FROM_STEP $JOB_LEVEL ${{ env.FROM_STEP }}"
                  echo "$MULTI" | tail -1
              - working-directory: sub
                run: pwd
                shell: bash
    """)
    p = exec_in()
    # The working directory does not exist: that step fails as GitHub's does.
    assert p.returncode == 1
    assert "tool ran" in p.stdout
    assert "env one job one" in p.stdout
    assert "| line b" in p.stdout
    assert "No such file or directory" in p.stdout


def test_shells_python_and_custom(repo, exec_in):
    repo.write("ci.yml", """
        on: push
        jobs:
          j:
            runs-on: self-hosted
            steps:
              - shell: python
                run: |
                  import os
                  print("python sees", os.environ["GITHUB_ACTIONS"])
              - shell: perl {0}
                run: print "perl says hi\\n";
              - run: echo "default shell pipefail=$(set -o | grep pipefail | awk '{print $2}')"
              - shell: bash
                run: echo "bash shell pipefail=$(set -o | grep pipefail | awk '{print $2}')"
    """)
    p = exec_in()
    assert p.returncode == 0, p.stdout
    assert "python sees true" in p.stdout
    assert "perl says hi" in p.stdout
    # As GitHub: no `shell:` means `bash -e {0}`; `shell: bash` adds -o pipefail.
    assert "default shell pipefail=off" in p.stdout
    assert "bash shell pipefail=on" in p.stdout


def test_invalid_workflow_exits_2_with_file_line_col(repo, exec_in):
    repo.write("bad.yml", """
        on: push
        jobs:
          j:
            runs-on: self-hosted
            steps:
              - run: echo ${{ nosuch.value }}
    """)
    p = exec_in()
    assert p.returncode == 2
    assert ".github/workflows/bad.yml (Line: 7, Col: 14): Unrecognized named-value: 'nosuch'" in p.stderr


def test_list_graph_job_filter_and_matrix_filter(repo, exec_in):
    repo.write("ci.yml", """
        on: push
        jobs:
          lint:
            runs-on: self-hosted
            steps:
              - run: echo lint
          build:
            runs-on: self-hosted
            strategy:
              matrix:
                os: [debian, alpine]
            steps:
              - run: echo "build ${{ matrix.os }}"
          deploy:
            needs: [build]
            runs-on: self-hosted
            steps:
              - run: echo deploy
    """)
    p = exec_in("--list")
    assert p.returncode == 0
    assert "deploy" in p.stdout and "lint" in p.stdout
    p = exec_in("--graph", commit=False)
    assert "deploy (needs build)" in p.stdout
    p = exec_in("-j", "deploy", "--matrix", "os:alpine", commit=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "build alpine" in p.stdout
    assert "build debian" not in p.stdout
    assert "| lint" not in p.stdout
    assert "| deploy" in p.stdout


def test_event_filters_pick_the_workflow(repo, exec_in):
    repo.write("main-only.yml", """
        on:
          push:
            branches: [main]
            paths: ['src/**']
        jobs:
          m: {runs-on: self-hosted, steps: [{run: echo main-only ran}]}
    """)
    repo.write("release.yml", """
        on:
          push:
            branches: [release/*]
        jobs:
          r: {runs-on: self-hosted, steps: [{run: echo release ran}]}
    """)
    repo.write("dispatch.yml", """
        on:
          workflow_dispatch:
            inputs:
              level: {default: low}
        jobs:
          d:
            runs-on: self-hosted
            steps:
              - run: echo "dispatch ${{ inputs.level }}"
    """)
    (repo.path / "src").mkdir()
    (repo.path / "src" / "a.c").write_text("int a;\n")
    p = exec_in()
    assert p.returncode == 0, p.stderr
    assert "main-only ran" in p.stdout
    assert "release ran" not in p.stdout
    assert "dispatch" not in p.stdout
    (repo.path / "README").write_text("docs only\n")
    p = exec_in()
    assert "main-only ran" not in p.stdout  # the last commit touched no src/ file
    p = exec_in("--event", "workflow_dispatch", "--input", "level=high", commit=False)
    assert "dispatch high" in p.stdout


def test_timeout_minutes_ends_the_step(repo, exec_in):
    repo.write("ci.yml", """
        on: push
        jobs:
          j:
            runs-on: self-hosted
            steps:
              - timeout-minutes: 0.02
                run: sleep 30
              - if: always()
                run: echo after timeout
    """)
    start = time.monotonic()
    p = exec_in()
    assert p.returncode == 1
    assert time.monotonic() - start < 25
    assert "has timed out after 0.02 minutes" in p.stdout
    assert "after timeout" in p.stdout


def test_worker_runs_the_planners_message_the_same(repo, exec_in, harrier, tmp_path):
    """The job message the planner writes gives the same results fed to `harrier worker`."""
    repo.write("ci.yml", """
        on: push
        jobs:
          j:
            runs-on: self-hosted
            outputs: {x: "${{ steps.s.outputs.x }}"}
            steps:
              - id: s
                run: echo "x=42" >> "$GITHUB_OUTPUT"
    """)
    messages = tmp_path / "messages"
    p = exec_in("--json", "--messages-dir", str(messages))
    assert p.returncode == 0
    finished = [e for e in events(p.stdout) if e["event"] == "job_finished"]
    assert finished[0]["outputs"] == {"x": "42"}
    message = messages / "j-0.json"
    assert json.loads(message.read_text())["messageType"] == "PipelineAgentJobRequest"
    w = harrier("worker", "--message", str(message), "--work", str(tmp_path / "w"))
    assert w.returncode == 0, w.stderr
    again = [e for e in events(w.stdout) if e["event"] == "job_finished"]
    assert again[0]["outputs"] == {"x": "42"}
    assert again[0]["result"] == "success"


def test_ctrl_c_cancels_runs_always_steps_and_leaves_nothing(repo, exec_in, harrier_bin, tmp_path):
    marker = tmp_path / "marker"
    repo.write("ci.yml", f"""
        on: push
        jobs:
          j:
            runs-on: self-hosted
            steps:
              - run: |
                  sleep 1000 &
                  setsid sleep 1001 &
                  echo started > {marker}
                  sleep 1002
              - if: cancelled()
                run: echo "cleanup ran after cancel"
    """)
    repo.commit()
    proc = subprocess.Popen([harrier_bin, "exec", "--work", str(repo.work)], cwd=str(repo.path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NO_COLOR="1"))
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "cleanup ran after cancel" in out
    assert "The run was cancelled." in out
    # Killed processes may take a moment to be reaped on a loaded machine.
    deadline = time.monotonic() + 10
    while True:
        left = subprocess.run(["pgrep", "-f", "sleep 100[012]"], capture_output=True, text=True)
        if left.stdout.strip() == "" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left.stdout.strip() == "", "processes left behind: " + left.stdout


def test_matrix_outputs_join_without_empty_values(repo, exec_in):
    """As GitHub: each configuration's empty outputs are left out, so one configuration's
    empty value never erases another's (the runner's JobCompleted carries only non-empty ones)."""
    repo.write("ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            strategy:
              matrix:
                arch: [amd64, arm64]
            outputs:
              amd64: ${{ matrix.arch == 'amd64' && 'built-amd64' || '' }}
              arm64: ${{ matrix.arch == 'arm64' && 'built-arm64' || '' }}
            steps:
              - run: echo building
          use:
            needs: build
            runs-on: self-hosted
            steps:
              - run: echo "got [${{ needs.build.outputs.amd64 }}] [${{ needs.build.outputs.arm64 }}] ${{ toJSON(needs.build.outputs) }}"
    """)
    p = exec_in("--json")
    assert p.returncode == 0, p.stderr
    lines = [e["line"] for e in events(p.stdout) if e["event"] == "log"]
    assert "got [built-amd64] [built-arm64] {" in lines
    done = {e["job_id"]: e for e in events(p.stdout) if e["event"] == "workflow_job_finished"}
    assert done["build"]["outputs"] == {"amd64": "built-amd64", "arm64": "built-arm64"}


NEEDS_WORKFLOW = """
    on: push
    jobs:
      a:
        runs-on: self-hosted
        outputs: {list: "${{ steps.s.outputs.list }}", word: "${{ steps.s.outputs.word }}"}
        steps:
          - id: s
            run: |
              echo 'list=[7]' >> "$GITHUB_OUTPUT"
              echo "word=local" >> "$GITHUB_OUTPUT"
      b:
        needs: a
        runs-on: self-hosted
        strategy:
          matrix:
            n: ${{ fromJSON(needs.a.outputs.list) }}
        steps:
          - run: echo "n=${{ matrix.n }} word=${{ needs.a.outputs.word }}"
      c:
        needs: a
        if: needs.a.outputs.word == 'deploy'
        runs-on: self-hosted
        steps:
          - run: echo deploying
"""


def test_dry_run_json_plans_the_jobs_whose_needs_are_done(repo, exec_in, harrier, tmp_path):
    """The planner alone, as a service drives it: each call plans the jobs whose needs are
    done (given with --needs) and writes their job messages; nothing runs."""
    repo.write("ci.yml", NEEDS_WORKFLOW)
    messages = tmp_path / "messages"
    p = exec_in("--dry-run", "--json", "--messages-dir", str(messages))
    assert p.returncode == 0, p.stderr
    jobs = {j["id"]: j for j in json.loads(p.stdout)["workflows"][0]["jobs"]}
    assert jobs["a"]["state"] == "ready" and jobs["a"]["needs"] == []
    assert [c["name"] for c in jobs["a"]["configurations"]] == ["a"]
    assert jobs["b"]["state"] == "waiting" and jobs["b"]["needs"] == ["a"]
    assert jobs["c"]["state"] == "waiting"
    assert sorted(os.listdir(messages)) == ["a-0.json"]
    assert not repo.work.exists() or not any(repo.work.iterdir())       # nothing ran

    needs = tmp_path / "needs.json"
    needs.write_text(json.dumps({"a": {"result": "success", "outputs": {"list": "[1, 2]", "word": "remote"}}}))
    p = exec_in("--dry-run", "--json", "--messages-dir", str(messages), "--needs", str(needs), commit=False)
    assert p.returncode == 0, p.stderr
    jobs = {j["id"]: j for j in json.loads(p.stdout)["workflows"][0]["jobs"]}
    assert jobs["a"] == {"id": "a", "name": "a", "needs": [], "state": "done", "result": "success"}
    assert jobs["c"]["state"] == "skipped" and "`if` is false" in jobs["c"]["reason"]
    b = jobs["b"]
    assert b["state"] == "ready" and b["fail_fast"] is True and b["max_parallel"] == 0
    assert [(c["name"], c["matrix"]) for c in b["configurations"]] == [("b (1)", {"n": 1}), ("b (2)", {"n": 2})]
    assert b["configurations"][1]["message"] == str(messages / "b-1.json")
    w = harrier("worker", "--message", str(messages / "b-1.json"), "--work", str(tmp_path / "w"),
                "--sandbox", "none")
    assert w.returncode == 0, w.stderr
    assert "n=2 word=remote" in [e.get("line") for e in events(w.stdout)]


def test_needs_file_runs_only_the_jobs_left(repo, exec_in):
    repo.write("ci.yml", NEEDS_WORKFLOW)
    needs = repo.work.parent / "needs.json"
    needs.write_text(json.dumps({"a": {"result": "success", "outputs": {"list": "[3]", "word": "deploy"}}}))
    p = exec_in("--json", "--needs", str(needs))
    assert p.returncode == 0, p.stderr
    evs = events(p.stdout)
    assert {e["job"] for e in evs if e["event"] == "job_started"} == {"b (3)", "c"}
    assert "n=3 word=deploy" in [e.get("line") for e in evs]
    done = {e["job_id"]: e["result"] for e in evs if e["event"] == "workflow_job_finished"}
    assert done == {"b": "success", "c": "success"}


@pytest.mark.parametrize("content,message", [
    ({"zz": {"result": "success"}}, "no job 'zz'"),
    ({"a": {"result": "green"}}, "job 'a' needs a result"),
    ({"a": {"result": "success", "outputs": {"n": 1}}}, "outputs as an object of strings"),
    ([], "not a JSON object"),
])
def test_bad_needs_file_is_a_usage_error(repo, exec_in, tmp_path, content, message):
    repo.write("ci.yml", NEEDS_WORKFLOW)
    needs = tmp_path / "needs.json"
    needs.write_text(json.dumps(content))
    p = exec_in("--dry-run", "--json", "--needs", str(needs))
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_json_reports_each_workflow_jobs_end(repo, exec_in):
    """--json adds a workflow_job_finished line per workflow job: as `needs` sees it, and for a
    job that did not run, why."""
    repo.write("ci.yml", NEEDS_WORKFLOW)
    p = exec_in("--json")
    assert p.returncode == 0, p.stderr
    done = {e["job_id"]: e for e in events(p.stdout) if e["event"] == "workflow_job_finished"}
    assert done["a"]["result"] == "success" and done["a"]["outputs"] == {"list": "[7]", "word": "local"}
    assert "note" not in done["a"]
    assert done["c"]["result"] == "skipped" and done["c"]["note"] == "Skipped: the job's `if` is false"
    assert done["b"]["result"] == "success"
