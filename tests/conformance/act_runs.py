#!/usr/bin/python3
"""Conformance driver: nektos/act's workflow runs (nektos-act/workflow-runs.json) that run on
the host or only plan (modes `host` and `dryrun`), through `harrier exec` as a user runs it.

A case passes when the run fails exactly when act's test expects it to, and when the extra
facts a case names hold (expect_output_not_contains: a secret never shown). Cases that need
Docker, the network, or files the corpus left out (its `requires` block), and cases meant for
a Windows host, are skipped with their reason: they need something outside harrier's local
host mode. A case whose only remote action is actions/checkout runs with --offline: harrier
copies the working tree in its place. Prints `nektos-act/workflow-runs: N passed, N failed, N skipped`."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


USES = re.compile(r"^\s*(?:-\s*)?uses:\s*['\"]?([^'\"\s#]+)", re.M)


def remote_uses(corpus, case):
    """The remote actions (owner/repo@ref) the case's workflow and the local actions it can
    reach name."""
    base = os.path.join(corpus, "nektos-act", case["workdir"])
    path = os.path.join(base, case["workflow_path"])
    files = [path] if os.path.isfile(path) else [os.path.join(path, f) for f in os.listdir(path)]
    seen, found = set(), set()
    while files:
        f = files.pop()
        if f in seen or not os.path.isfile(f):
            continue
        seen.add(f)
        for uses in USES.findall(open(f, errors="replace").read()):
            if uses.startswith("./"):
                for name in ("action.yml", "action.yaml"):
                    files.append(os.path.join(base, uses[2:], name))
            elif not uses.startswith("docker://"):
                found.add(uses)
    return found


def only_checkout(corpus, case):
    """A case whose only remote action is actions/checkout runs offline: harrier copies the
    working tree in its place, as act's local mode does (`--offline`, README)."""
    uses = remote_uses(corpus, case)
    return bool(uses) and all(u.lower().startswith("actions/checkout@") for u in uses)


def skip_reason(case, corpus=None):
    req = case.get("requires", {})
    if case["mode"] not in ("host", "dryrun"):
        return f"mode {case['mode']}: jobs run in Docker containers"
    if req.get("docker"):
        return "needs Docker: " + ", ".join(req.get("docker_reasons", []))
    if req.get("network") and not (corpus and only_checkout(corpus, case)):
        return "needs the network: " + ", ".join(req.get("network_reasons", []))
    if req.get("omitted_non_data_files"):
        return "needs files the corpus left out: " + ", ".join(req["omitted_non_data_files"])
    if case.get("host_os") == "windows":
        return "meant for a Windows host"
    return None


def act_marker_reason(workdir, case):
    """act marks its own runs with env.ACT; GitHub sets no such value and harrier does not
    fake one, so a case that branches on it tests act itself."""
    path = os.path.join(workdir, case["workflow_path"])
    files = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else [path]
    for f in files:
        if f.endswith((".yml", ".yaml")) and "env.ACT" in open(f, errors="replace").read():
            return "asserts act's own marker env.ACT"
    return None


def make_act_checkout(workdir):
    """act's tests run in act's own repository, pushed by nektos/act: the checkout says so."""
    git = ["git", "-C", workdir, "-c", "user.name=nektos/act", "-c", "user.email=act@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "master", workdir], check=True)
    subprocess.run(git + ["remote", "add", "origin", "https://github.com/nektos/act.git"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "act test data"], check=True)


def write_dotenv(path, values):
    with open(path, "w") as f:
        for k, v in values.items():
            f.write(f"{k}={json.dumps(v)}\n")


def run_case(case, corpus, harrier):
    """Returns a list of problems (empty: passed)."""
    with tempfile.TemporaryDirectory() as tmp:
        # The corpus is read-only in CI: run in a copy of the case's working directory.
        workdir = os.path.join(tmp, "repo")
        shutil.copytree(os.path.join(corpus, "nektos-act", case["workdir"]), workdir,
                        symlinks=True)
        make_act_checkout(workdir)
        args = [harrier, "exec", "-W", case["workflow_path"], "--event", case["event"],
                "--work", os.path.join(tmp, "work"), "--sandbox", "none"]
        if case["mode"] == "dryrun":
            args.append("--dry-run")
        if case.get("requires", {}).get("network"):
            args.append("--offline")
        if case.get("secrets"):
            secrets = os.path.join(tmp, "secrets.env")
            write_dotenv(secrets, case["secrets"])
            args += ["--secret-file", secrets]
        if case.get("secrets_file"):
            args += ["--secret-file", os.path.join(workdir, case["secrets_file"])]
        if case.get("env_file"):
            args += ["--var-file", os.path.join(workdir, case["env_file"])]
        if case.get("event_path"):
            args += ["--eventpath", os.path.join(workdir, case["event_path"])]
        for k, v in (case.get("inputs") or {}).items():
            args += ["--input", f"{k}={v}"]
        for k, values in (case.get("matrix_filter") or {}).items():
            for v in values if isinstance(values, list) else [values]:
                args += ["--matrix", f"{k}:{v}"]
        p = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, NO_COLOR="1"))
    problems = []
    failed = p.returncode != 0
    if failed != bool(case["expect"].get("error")):
        problems.append(f"exit {p.returncode}, expected the run to "
                        f"{'fail' if case['expect'].get('error') else 'succeed'}: "
                        + (p.stderr.strip() or p.stdout.strip()[-600:]))
    for text in case.get("expect_output_not_contains") or []:
        if text in p.stdout or text in p.stderr:
            problems.append(f"the output shows {text!r}")
    return problems


# Where act and GitHub disagree, GitHub wins (the corpus README says so): these cases expect
# GitHub's outcome, with the reason.
GITHUB_DIFFERS = {
    "TestPlanner/invalid-job-name/valid-2.yml":
        ("error", "GitHub's workflow schema refuses job ids starting with '__' (reserved "
                  "for generated ids); act accepts them"),
}


def list_stages(stdout):
    """`harrier exec --list` → stages of job ids, in stage order."""
    stages = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            stages.setdefault(int(parts[0]), []).append(parts[1])
    return [sorted(stages[k]) for k in sorted(stages)]


def plan_skip_reason(plan):
    if not os.path.exists(os.path.join(plan["_corpus_workdir"], plan["workflow_path"])):
        return ("act's planner plans nothing for a missing path; harrier refuses it "
                "(exit 2), as its CLI promises")
    if plan.get("kind") == "load" and plan.get("no_workflow_recurse") is False and \
            os.path.isdir(os.path.join(plan["_corpus_workdir"], plan["workflow_path"], "workflows")):
        return "act reads workflow folders recursively; GitHub and harrier read one level"
    return None


def run_plan(plan, harrier):
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = os.path.join(tmp, "repo")
        shutil.copytree(plan["_corpus_workdir"], workdir, symlinks=True)
        make_act_checkout(workdir)
        steps = plan.get("steps") or [{"expect": plan["expect"]}]
        for step in steps:
            if step.get("plan_all"):
                continue  # act's "every event at once" has no GitHub counterpart
            args = [harrier, "exec", "-W", plan["workflow_path"], "--list"]
            if step.get("plan_event"):
                args += ["--event", step["plan_event"]]
            p = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=60)
            want = dict(step["expect"])
            if plan["id"] in GITHUB_DIFFERS:
                want["error"] = GITHUB_DIFFERS[plan["id"]][0] == "error"
            if (p.returncode != 0) != bool(want.get("error")):
                problems.append(f"exit {p.returncode}: {p.stderr.strip()[-300:]}")
                continue
            stages = want.get("stages")
            if stages is not None:
                got = list_stages(p.stdout)
                expected = [] if stages == 0 else [sorted(s) for s in stages]
                if got != expected:
                    problems.append(f"stages {got}, expected {expected}")
    return problems


def main():
    corpus = os.environ.get("HARRIER_CONFORMANCE_DIR") or os.path.join(ROOT, "..", "shared",
                                                                       "conformance")
    harrier = os.environ.get("HARRIER_BIN") or os.path.join(ROOT, "build", "harrier")
    path = os.path.join(corpus, "nektos-act", "workflow-runs.json")
    if not os.path.exists(path):
        print(f"nektos-act/workflow-runs: 0 passed, 0 failed, 0 skipped (corpus absent: {path})")
        return 0
    data = json.load(open(path))
    passed = failed = skipped = 0
    reasons = {}
    for case in data["runs"]:
        reason = skip_reason(case, corpus) or act_marker_reason(
            os.path.join(corpus, "nektos-act", case["workdir"]), case)
        if reason:
            skipped += 1
            reasons.setdefault(reason.split(":")[0], []).append(case["id"])
            continue
        problems = run_case(case, corpus, harrier)
        if problems:
            failed += 1
            print(f"FAIL {case['id']}: " + "; ".join(problems))
        else:
            passed += 1
    for plan in data.get("plans", []):
        plan["_corpus_workdir"] = os.path.join(corpus, "nektos-act", plan["workdir"])
        reason = plan_skip_reason(plan)
        if reason:
            skipped += 1
            reasons.setdefault(reason, []).append(plan["id"])
            continue
        problems = run_plan(plan, harrier)
        if problems:
            failed += 1
            print(f"FAIL plan {plan['id']}: " + "; ".join(problems))
        else:
            passed += 1
    for reason, ids in sorted(reasons.items()):
        print(f"skipped ({reason}): {len(ids)} cases")
    print(f"nektos-act/workflow-runs: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
