#!/usr/bin/python3
"""Conformance driver: actions/runner's StepsRunner cases (actions-runner/steps-runner.json).

Each case becomes a one-job workflow whose steps stand in for the runner's stub steps (they
exit with the result the case gives them: 0, 1, or cancel the job by interrupting their
worker), run by `harrier exec` through the whole path (planner, job message, worker). The
job result, which steps ran, the steps context and each step's env context are compared with
the case. Prints `actions-runner/steps-runner: N passed, N failed`."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def yaml_string(s):
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def step_yaml(i, step, out_dir):
    lines = [f"      - name: step{i}"]
    if step.get("id"):
        lines.append(f"        id: {step['id']}")
    lines.append(f"        if: {yaml_string(step['if'])}")
    lines.append(f"        continue-on-error: {str(step['continue-on-error']).lower()}")
    if step.get("env"):
        lines.append("        env:")
        for k, v in step["env"].items():
            lines.append(f"          {k}: {yaml_string(v)}")
    script = [f"cat > {out_dir}/env{i}.json <<'HARRIER_EOF'", "${{ toJSON(env) }}", "HARRIER_EOF"]
    for k, v in (step.get("sets_outputs") or {}).items():
        script.append(f"echo '{k}={v}' >> \"$GITHUB_OUTPUT\"")
    result = step["result_when_run"]
    if result == "failure":
        script.append("exit 1")
    elif result == "cancelled":
        # The job is cancelled while this step runs: its worker is interrupted, as by Ctrl-C.
        script.append("kill -INT $PPID; sleep 30")
    lines.append("        run: |")
    lines += ["          " + l for l in script]
    return "\n".join(lines)


def workflow(case, job_env, out_dir):
    text = ["on: push", "jobs:", "  job:", "    runs-on: self-hosted", "    env:"]
    text += [f"      {k}: {yaml_string(v)}" for k, v in job_env.items()]
    text.append("    steps:")
    text += [step_yaml(i, s, out_dir) for i, s in enumerate(case["steps"])]
    return "\n".join(text) + "\n"


def check(case, events, out_dir):
    problems = []
    expect = case["expect"]
    finished = {e["step"]: e for e in events if e["event"] == "step_finished"}
    job = [e for e in events if e["event"] == "job_finished"]
    if not job:
        return ["no job_finished event"]
    result = job[0]["result"]
    if "job_result" in expect and expect["job_result"] != result:
        problems.append(f"job result {result}, expected {expect['job_result']}")
    if "steps_ran" in expect:
        ran = [finished.get(i + 1, {}).get("outcome", "skipped") != "skipped"
               for i in range(len(case["steps"]))]
        if ran != expect["steps_ran"]:
            problems.append(f"steps ran {ran}, expected {expect['steps_ran']}")
    for step_id, want in (expect.get("steps_context") or {}).items():
        index = next(i for i, s in enumerate(case["steps"]) if s.get("id") == step_id)
        got = finished.get(index + 1, {})
        for key in ("outcome", "conclusion"):
            if key in want and got.get(key) != want[key]:
                problems.append(f"steps.{step_id}.{key} {got.get(key)}, expected {want[key]}")
    for index, want in (expect.get("env_context_of_step") or {}).items():
        path = os.path.join(out_dir, f"env{index}.json")
        env = json.load(open(path)) if os.path.exists(path) else None
        if env is None:
            problems.append(f"step {index} did not run")
            continue
        for k, v in want.items():
            if env.get(k) != v:
                problems.append(f"step {index} env.{k} = {env.get(k)!r}, expected {v!r}")
        for k in (expect.get("env_context_of_step_lacks") or {}).get(index, []):
            if k in env:
                problems.append(f"step {index} env has {k}, which must not leak into it")
    return problems


def main():
    corpus = os.environ.get("HARRIER_CONFORMANCE_DIR") or os.path.join(ROOT, "..", "shared",
                                                                       "conformance")
    path = os.path.join(corpus, "actions-runner", "steps-runner.json")
    harrier = os.environ.get("HARRIER_BIN") or os.path.join(ROOT, "build", "harrier")
    if not os.path.exists(path):
        print(f"actions-runner/steps-runner: 0 passed, 0 failed, 0 skipped (corpus absent: {path})")
        return 0
    data = json.load(open(path))
    passed = failed = 0
    for case in data["cases"]:
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = os.path.join(tmp, "out")
            os.mkdir(out_dir)
            wf = os.path.join(tmp, "case.yml")
            open(wf, "w").write(workflow(case, data["job_env"], out_dir))
            p = subprocess.run([harrier, "exec", "-W", wf, "--json", "--sandbox", "none",
                                "--work", os.path.join(tmp, "work")], cwd=tmp,
                               capture_output=True, text=True, timeout=120)
            events = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
            problems = check(case, events, out_dir)
            if p.returncode == 2:
                problems.append("invalid workflow: " + p.stderr.strip())
        if problems:
            failed += 1
            print(f"FAIL {case['id']}: " + "; ".join(problems))
        else:
            passed += 1
    print(f"actions-runner/steps-runner: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
