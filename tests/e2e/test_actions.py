"""uses: steps in local mode: JavaScript actions on the real @actions/* packages, composite
actions, actions downloaded from a tarball server the test runs, the action cache, offline
mode, the checkout copy, and the job message fed to `harrier worker` directly."""
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import textwrap
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
NPM_DIR = os.path.join(HERE, "actions_npm")  # node_modules below it are ignored by git
CJS_PACKAGES = ["@actions/core@1.11.1", "@actions/exec@1.1.1", "@actions/io@1.1.3"]
ESM_PACKAGES = ["@actions/core@3.0.1"]


def npm_install(name, packages):
    prefix = os.path.join(NPM_DIR, name)
    modules = os.path.join(prefix, "node_modules")
    marker = os.path.join(modules, ".harrier-" + "-".join(p.replace("/", "_") for p in packages))
    if os.path.exists(marker):
        return modules
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.skip("node and npm are needed for JavaScript actions (apt-get install nodejs npm)")
    os.makedirs(prefix, exist_ok=True)
    p = subprocess.run(["npm", "install", "--prefix", prefix, "--no-save", "--no-package-lock",
                        "--no-audit", "--no-fund", *packages], capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        pytest.skip("npm could not install " + " ".join(packages) + ": " + p.stderr[-300:])
    open(marker, "w").close()
    return modules


@pytest.fixture(scope="session")
def cjs_modules():
    return npm_install("cjs", CJS_PACKAGES)


@pytest.fixture(scope="session")
def esm_modules():
    return npm_install("esm", ESM_PACKAGES)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "octo-repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin",
                    "https://github.com/octo-org/octo-repo.git"], check=True)

    class Repo:
        path = root
        work = tmp_path / "work"

        def write(self, rel, text):
            f = root / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(textwrap.dedent(text))
            return f

        def link_modules(self, rel, modules):
            os.symlink(modules, root / rel / "node_modules")

        def commit(self):
            subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
            subprocess.run(["git", "-C", str(root), "-c", "user.name=Mona", "-c",
                            "user.email=m@example.com", "commit", "-q", "--allow-empty", "-m",
                            "change"], check=True)
    return Repo()


class TarballServer:
    """Serves /{owner}/{repo}/{ref} from self.tarballs (bytes), counting requests."""

    def __init__(self):
        self.tarballs = {}
        self.hits = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                key = self.path.lstrip("/")
                with outer.lock:
                    outer.hits[key] = outer.hits.get(key, 0) + 1
                body = outer.tarballs.get(key)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{owner}}/{{repo}}/{{ref}}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, key, files, top="owner-repo-abc123", extra=None):
        """files: name → text (or (text, symlink target)); extra: raw tar entries to add."""
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w:gz") as tar:
            d = tarfile.TarInfo(top)
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            tar.addfile(d)
            for name, text in files.items():
                info = tarfile.TarInfo(f"{top}/{name}")
                if isinstance(text, os.PathLike):
                    info.type = tarfile.SYMTYPE
                    info.linkname = os.fspath(text)
                    tar.addfile(info)
                    continue
                raw = textwrap.dedent(text).encode()
                info.size = len(raw)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(raw))
            for info, raw in extra or []:
                tar.addfile(info, io.BytesIO(raw) if raw is not None else None)
        self.tarballs[key] = data.getvalue()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = TarballServer()
    yield s
    s.close()


@pytest.fixture
def exec_in(harrier, repo):
    def run(*args, timeout=180, commit=True):
        if commit:
            repo.commit()
        return harrier("exec", "--work", str(repo.work), *args, cwd=str(repo.path),
                       timeout=timeout, env={"NO_COLOR": "1"})
    return run


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def logs(evs):
    return [e["line"] for e in evs if e["event"] == "log"]


# ---- JavaScript actions ------------------------------------------------------------------

TOOLKIT_ACTION = {
    "action.yml": """
        name: toolkit
        inputs:
          who: {required: true}
          loud: {default: 'false'}
          lines: {default: ''}
          token: {default: '${{ github.token }}'}
        outputs:
          greeting: {description: the greeting}
        runs:
          using: node20
          main: main.js
          post: post.js
          post-if: always()
    """,
    "main.js": """
        const core = require('@actions/core');
        const exec = require('@actions/exec');
        const io = require('@actions/io');
        const fs = require('fs');
        const path = require('path');
        (async () => {
          const who = core.getInput('who', {required: true});
          const loud = core.getBooleanInput('loud');
          const lines = core.getMultilineInput('lines');
          console.log(`hello ${loud ? who.toUpperCase() : who} lines=${lines.join('|')}`);
          console.log(`token default matches: ${core.getInput('token') === process.env.EXPECTED_TOKEN}`);
          console.log(`action path ${process.env.GITHUB_ACTION_PATH === __dirname}`);
          core.setOutput('greeting', `hi ${who}`);
          core.exportVariable('FROM_ACTION', 'exported');
          const bin = path.join(process.env.RUNNER_TEMP, 'toolbin');
          await io.mkdirP(bin);
          fs.writeFileSync(path.join(bin, 'toolkit-tool'), '#!/bin/sh\\necho tool on path\\n', {mode: 0o755});
          core.addPath(bin);
          core.saveState('pid', 'main-saved-this');
          core.setSecret('hunter2-secret');
          console.log('the secret is hunter2-secret');
          core.startGroup('my group');
          console.log('inside the group');
          core.endGroup();
          core.warning('careful now', {file: 'src/a.js', startLine: 3});
          core.notice('fyi');
          await core.summary.addHeading('Toolkit summary').addRaw('all good').write();
          const code = await exec.exec('sh', ['-c', 'echo exec ran']);
          if (core.getInput('fail') === 'yes') core.setFailed('asked to fail');
        })();
    """,
    "post.js": """
        const core = require('@actions/core');
        console.log(`post sees state=${core.getState('pid')}`);
    """,
}


def write_action(repo, rel, files, modules=None):
    for name, text in files.items():
        repo.write(f"{rel}/{name}", text)
    if modules:
        repo.link_modules(rel, modules)


def test_javascript_action_with_the_toolkit(repo, exec_in, cjs_modules):
    write_action(repo, ".github/actions/toolkit", TOOLKIT_ACTION, cjs_modules)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            outputs:
              greeting: ${{ steps.t.outputs.greeting }}
            steps:
              - uses: actions/checkout@v4
              - id: t
                uses: ./.github/actions/toolkit
                env:
                  EXPECTED_TOKEN: ${{ github.token }}
                with:
                  who: mona
                  loud: true
                  lines: |
                    one
                    two
              - run: |
                  echo "output=${{ steps.t.outputs.greeting }} env=$FROM_ACTION"
                  toolkit-tool
                  echo "action ctx=${{ github.action }}"
    """)
    p = exec_in("--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "hello MONA lines=one|two" in out
    assert "token default matches: true" in out
    assert "action path true" in out
    assert "output=hi mona env=exported" in out
    assert "tool on path" in out
    assert "the secret is ***" in out and "hunter2-secret" not in out
    assert "inside the group" in out and "exec ran" in out
    assert "careful now" in out and "src/a.js" in out
    assert "Toolkit summary" in out
    assert "post sees state=main-saved-this" in out
    # Post steps come after the job's last main step.
    assert out.index("action ctx=") < out.index("post sees state=")


def test_set_failed_fails_the_step_and_post_still_runs(repo, exec_in, cjs_modules):
    write_action(repo, ".github/actions/toolkit", TOOLKIT_ACTION, cjs_modules)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - id: t
                uses: ./.github/actions/toolkit
                with: {who: x, fail: 'yes'}
              - run: echo should not run
              - if: failure()
                run: echo "outcome=${{ steps.t.outcome }}"
    """)
    p = exec_in("--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "asked to fail" in p.stdout
    assert "Unexpected input(s) 'fail'" in p.stdout
    assert "should not run" not in p.stdout.replace("Run echo should not run", "")
    assert "outcome=failure" in p.stdout
    assert "post sees state=main-saved-this" in p.stdout


def test_esm_action_on_the_latest_toolkit(repo, exec_in, esm_modules):
    write_action(repo, ".github/actions/esm", {
        "action.yml": """
            name: esm
            inputs: {who: {default: world}}
            runs: {using: node24, main: index.mjs}
        """,
        "index.mjs": """
            import * as core from '@actions/core';
            core.info(`esm hello ${core.getInput('who')}`);
            core.setOutput('kind', 'esm');
        """,
    }, esm_modules)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - id: e
                uses: ./.github/actions/esm
              - run: echo "kind=${{ steps.e.outputs.kind }}"
    """)
    p = exec_in("--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "esm hello world" in p.stdout and "kind=esm" in p.stdout
    # node on this machine is not node24: run anyway, with one warning saying so.
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if not node.startswith("v24."):
        assert f"declares 'using: node24'; running it with node {node}" in p.stdout


def test_local_action_without_checkout_names_the_missing_file(repo, exec_in):
    repo.write(".github/actions/x/action.yml", "runs: {using: node20, main: i.js}\n")
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: ./.github/actions/x
    """)
    p = exec_in()
    assert p.returncode == 1
    assert "Can't find 'action.yml', 'action.yaml' or 'Dockerfile'" in p.stdout
    assert "Did you forget to run actions/checkout" in p.stdout


# ---- composite actions -------------------------------------------------------------------

def write_composites(repo):
    repo.write(".github/actions/inner/action.yml", """
        name: inner
        inputs:
          value: {required: true}
        outputs:
          doubled: {value: "${{ steps.d.outputs.v }}"}
        runs:
          using: composite
          steps:
            - id: d
              shell: bash
              run: echo "v=${{ inputs.value }}${{ inputs.value }}" >> "$GITHUB_OUTPUT"
            - shell: bash
              run: echo "inner sees INNER_ENV=$INNER_ENV path=$GITHUB_ACTION_PATH"
              env: {INNER_ENV: set-inside}
    """)
    repo.write(".github/actions/middle/action.yml", """
        name: middle
        inputs:
          value: {default: ab}
          fail: {default: 'no'}
        outputs:
          result: {value: "${{ steps.in.outputs.doubled }}-${{ steps.last.outputs.x }}"}
        runs:
          using: composite
          steps:
            - id: in
              uses: ./.github/actions/inner
              with: {value: "${{ inputs.value }}"}
            - id: soft
              shell: bash
              continue-on-error: true
              run: exit 3
            - id: last
              shell: bash
              working-directory: sub
              run: echo "x=$(basename "$PWD")-${{ steps.soft.outcome }}-${{ steps.soft.conclusion }}" >> "$GITHUB_OUTPUT"
            - if: inputs.fail == 'yes'
              shell: bash
              run: echo "middle fails"; exit 1
            - shell: bash
              run: echo "after the failure"
            - if: failure()
              shell: bash
              run: echo "middle failure handler"
    """)
    repo.write(".github/actions/outer/action.yml", """
        name: outer
        inputs:
          fail: {default: 'no'}
        outputs:
          all: {value: "${{ steps.m.outputs.result }}"}
        runs:
          using: composite
          steps:
            - id: m
              uses: ./.github/actions/middle
              with: {value: xy, fail: "${{ inputs.fail }}"}
    """)
    repo.write("sub/.keep", "")


def test_composite_actions_three_levels_deep(repo, exec_in):
    write_composites(repo)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            outputs: {all: "${{ steps.o.outputs.all }}"}
            steps:
              - uses: actions/checkout@v4
              - id: o
                uses: ./.github/actions/outer
              - run: echo "outer says ${{ steps.o.outputs.all }}"
    """)
    p = exec_in("--json", "--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = logs(events(p.stdout))
    assert "outer says xyxy-sub-failure-success" in lines
    assert any(l.startswith("inner sees INNER_ENV=set-inside path=")
               and l.endswith("/.github/actions/inner") for l in lines)
    assert "after the failure" in lines and "middle failure handler" not in lines
    finished = [e for e in events(p.stdout) if e["event"] == "job_finished"]
    assert finished[0]["outputs"] == {"all": "xyxy-sub-failure-success"}
    # A local action inside a composite counts as having a post step (ActionManager cannot
    # read it in advance): the outer composite gets a post step, which runs middle's (it holds
    # a local action too) and nothing of inner's (read by then: no post step).
    posts = [(name, lines) for name, stage, _, lines in step_table(events(p.stdout))
             if stage == "post"]
    assert posts == [("Post Run ./.github/actions/outer", ["Post job cleanup."] * 2)], posts


def test_composite_failure_skips_the_rest_and_fails_the_job(repo, exec_in):
    write_composites(repo)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - id: o
                uses: ./.github/actions/outer
                with: {fail: 'yes'}
              - if: always()
                run: echo "outcome=${{ steps.o.outcome }}"
    """)
    p = exec_in("--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "middle fails" in p.stdout
    assert "after the failure" not in p.stdout
    assert "middle failure handler" in p.stdout
    assert "outcome=failure" in p.stdout


def test_composite_steps_read_the_composites_status_not_the_jobs(repo, exec_in):
    """As the official SuccessFunction/FailureFunction: success() and failure() in a composite's
    steps read github.action_status, the composite's own result so far: an always() composite
    after a failed step of the job runs its steps."""
    repo.write(".github/actions/report/action.yml", """
        name: report
        runs:
          using: composite
          steps:
            - shell: bash
              run: echo "report runs after the job failed"
            - if: failure()
              shell: bash
              run: echo "report failure branch"
            - shell: bash
              run: exit 5
            - if: failure()
              shell: bash
              run: echo "report sees its own failure"
    """)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - run: exit 1
              - if: always()
                uses: ./.github/actions/report
    """)
    p = exec_in("--json", "--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 1, p.stdout + p.stderr
    lines = logs(events(p.stdout))
    assert "report runs after the job failed" in lines
    assert "report failure branch" not in lines
    assert "report sees its own failure" in lines


# ---- downloaded actions --------------------------------------------------------------------

REMOTE_ACTION = {
    "action.yml": """
        name: remote
        inputs: {tag: {default: none}}
        runs:
          using: node20
          pre: pre.js
          main: main.js
          post: post.js
    """,
    "pre.js": """
        const fs = require('fs');
        fs.appendFileSync(process.env.GITHUB_STATE, `order=pre-${process.env.INPUT_TAG}\\n`);
        console.log(`pre ${process.env.INPUT_TAG} runtime=${'ACTIONS_RUNTIME_URL' in process.env}`);
    """,
    "main.js": """
        const fs = require('fs');
        console.log(`main ${process.env.INPUT_TAG} state=${process.env.STATE_order} repo=${process.env.GITHUB_ACTION_REPOSITORY} ref=${process.env.GITHUB_ACTION_REF}`);
        fs.appendFileSync(process.env.GITHUB_STATE, `order=${process.env.STATE_order}+main\\n`);
    """,
    "post.js": """
        console.log(`post ${process.env.INPUT_TAG} state=${process.env.STATE_order}`);
    """,
}


def remote_workflow(repo, jobs=1):
    body = "".join(f"""
          job{i}:
            runs-on: self-hosted
            steps:
              - uses: octo/remote@v1
                with: {{tag: a{i}}}
              - uses: octo/remote@v1
                with: {{tag: b{i}}}
              - run: echo "script step ${{{{ github.action }}}} runtime=${{ACTIONS_RUNTIME_URL:+set}}"
    """ for i in range(jobs))
    repo.write(".github/workflows/ci.yml", "on: push\njobs:" + textwrap.dedent(body).replace(
        "\n", "\n  "))


def test_remote_action_pre_main_post_and_the_cache(repo, exec_in, server):
    server.add("octo/remote/v1", REMOTE_ACTION)
    remote_workflow(repo)
    p = exec_in("--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "Download action repository 'octo/remote@v1'" in out
    order = [l.split("| ", 1)[1] for l in out.splitlines() if "| pre " in l or "| main " in l
             or "| post " in l]
    assert order == [
        "pre a0 runtime=true", "pre b0 runtime=true",
        "main a0 state=pre-a0 repo=octo/remote ref=v1",
        "main b0 state=pre-b0 repo=octo/remote ref=v1",
        "post b0 state=pre-b0+main", "post a0 state=pre-a0+main"]
    # The runtime endpoints are for node actions only.
    script = [l for l in out.splitlines() if "| script step " in l]
    assert script and script[0].endswith("| script step __run runtime=")
    assert server.hits == {"octo/remote/v1": 1}
    # The second run takes it from the cache, and so does an offline run.
    assert exec_in("--actions-url", server.url).returncode == 0
    assert exec_in("--offline", "--actions-url", server.url).returncode == 0
    assert server.hits == {"octo/remote/v1": 1}


def test_concurrent_jobs_fetch_one_action(repo, exec_in, server, tmp_path):
    server.add("octo/remote/v1", REMOTE_ACTION)
    remote_workflow(repo, jobs=4)
    p = exec_in("--jobs", "4", "--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    for i in range(4):
        assert f"post a{i} state=pre-a{i}+main" in p.stdout
    cache = repo.work / "_actions" / "octo" / "remote"
    assert sorted(os.listdir(cache)) == ["v1"]  # no temporary folder left behind
    assert sorted(os.listdir(cache / "v1")) == sorted(REMOTE_ACTION)


def test_offline_names_the_missing_action(repo, exec_in, server):
    remote_workflow(repo)
    p = exec_in("--offline", "--actions-url", server.url)
    assert p.returncode == 1
    assert "octo/remote@v1 is not in the action cache" in p.stdout
    assert "--offline" in p.stdout
    assert server.hits == {}


def test_corrupt_and_escaping_tarballs_are_refused(repo, exec_in, server, tmp_path):
    server.tarballs["octo/remote/v1"] = b"\x1f\x8b\x08\x00 this is not a tarball"
    remote_workflow(repo)
    p = exec_in("--actions-url", server.url)
    assert p.returncode == 1
    assert "octo/remote@v1" in p.stdout and "archive" in p.stdout
    assert not (repo.work / "_actions" / "octo" / "remote" / "v1").exists()

    evil = tarfile.TarInfo("top/../../../escaped.txt")
    evil.size = 4
    server.add("octo/remote/v1", REMOTE_ACTION, top="top", extra=[(evil, b"evil")])
    p = exec_in("--actions-url", server.url)
    assert p.returncode == 1
    assert "points outside the action" in p.stdout
    assert not list(tmp_path.rglob("escaped.txt"))

    link = tarfile.TarInfo("top/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../../etc"
    server.add("octo/remote/v1", REMOTE_ACTION, top="top", extra=[(link, None)])
    p = exec_in("--actions-url", server.url)
    assert p.returncode == 1
    assert "points outside the action" in p.stdout
    assert not (repo.work / "_actions" / "octo" / "remote" / "v1").exists()


def test_checkout_copy_can_be_turned_off(repo, exec_in, server):
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - run: cat hello.txt
    """)
    repo.write("hello.txt", "from the tree\n")
    p = exec_in("--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Copying the working tree" in p.stdout and "| from the tree" in p.stdout
    p = exec_in("--actions-url", server.url, "--no-checkout-copy")
    assert p.returncode == 1
    assert "actions/checkout@v4" in p.stdout and "404" in p.stdout


def test_container_actions_say_what_is_missing(repo, exec_in, server):
    server.add("octo/docker/v1", {"action.yml": """
        name: d
        runs: {using: docker, image: Dockerfile}
    """})
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: docker://alpine:3
              - if: always()
                uses: octo/docker@v1
              - if: always()
                run: echo still here
    """)
    p = exec_in("--actions-url", server.url)
    assert p.returncode == 1
    assert "'docker://alpine:3' is a container action: harrier cannot run container" in p.stdout
    assert "octo/docker is a Docker container action (runs.using: docker)" in p.stdout
    assert "still here" in p.stdout


def test_worker_runs_the_planners_message_the_same(repo, exec_in, harrier, server, tmp_path,
                                                    cjs_modules):
    server.add("octo/remote/v1", REMOTE_ACTION)
    write_action(repo, ".github/actions/toolkit", TOOLKIT_ACTION, cjs_modules)
    write_composites(repo)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          j:
            runs-on: self-hosted
            outputs:
              all: ${{ steps.o.outputs.all }}
              greeting: ${{ steps.t.outputs.greeting }}
            steps:
              - uses: actions/checkout@v4
              - uses: octo/remote@v1
                with: {tag: r}
              - id: t
                uses: ./.github/actions/toolkit
                with: {who: w}
              - id: o
                uses: ./.github/actions/outer
    """)
    messages = tmp_path / "messages"
    p = exec_in("--json", "--messages-dir", str(messages), "--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    first = events(p.stdout)
    want = {"all": "xyxy-sub-failure-success", "greeting": "hi w"}
    assert [e for e in first if e["event"] == "job_finished"][0]["outputs"] == want
    w = harrier("worker", "--message", str(messages / "j-0.json"), "--work",
                str(tmp_path / "w"), "--actions-cache", str(tmp_path / "cache"),
                "--checkout", str(repo.path), "--actions-url", server.url, timeout=120)
    assert w.returncode == 0, w.stdout + w.stderr
    again = events(w.stdout)
    assert [e for e in again if e["event"] == "job_finished"][0]["outputs"] == want
    steps = lambda evs: [e["name"] for e in evs if e["event"] == "step_started"]
    assert steps(again) == steps(first)
    interesting = lambda evs: [l for l in logs(evs) if l.startswith(("pre ", "main ", "post "))]
    assert interesting(again) == interesting(first)
    assert "post sees state=main-saved-this" in logs(again)


def test_a_missing_node_is_named(repo, exec_in):
    write_action(repo, ".github/actions/plain", {
        "action.yml": "runs: {using: node20, main: index.js}\n",
        "index.js": "console.log('never')\n",
    })
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - uses: ./.github/actions/plain
    """)
    p = exec_in("--node", "/nonexistent/node", "--actions-url",
                "http://127.0.0.1:9/{owner}/{repo}/{ref}")
    assert p.returncode == 1
    assert "is a JavaScript action and no node was found" in p.stdout
    assert "--node PATH" in p.stdout


# ---- timeout-minutes of a composite step; pre steps of actions inside composites ----------

def test_composite_timeout_bounds_its_inner_steps(repo, exec_in):
    repo.write(".github/actions/inner/action.yml", """
        name: inner
        runs:
          using: composite
          steps:
            - shell: bash
              run: echo "inner started"; sleep 60; echo "inner not reached"
    """)
    repo.write(".github/actions/outer/action.yml", """
        name: outer
        runs:
          using: composite
          steps:
            - shell: bash
              run: echo "outer first"
            - uses: ./.github/actions/inner
            - shell: bash
              run: echo "outer after inner"
            - if: always()
              shell: bash
              run: sleep 30; echo "cleanup not reached"
            - if: failure()
              uses: ./.github/actions/inner
    """)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - id: o
                uses: ./.github/actions/outer
                timeout-minutes: 0.05
              - if: always()
                run: echo "later always step outcome=${{ steps.o.outcome }}"
    """)
    p = exec_in("--json", "--actions-url", "http://127.0.0.1:9/{owner}/{repo}/{ref}", timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    evs = events(p.stdout)
    lines = logs(evs)
    assert "outer first" in lines and "inner started" in lines
    assert "inner not reached" not in lines and "outer after inner" not in lines
    # The running inner step is cancelled as the official composite handler says it. The
    # steps after it that still may run (always(), failure()) start, as on GitHub where each
    # inner step has the composite's deadline, and are cancelled at once, each saying so; a
    # composite among them too, step by step.
    assert "\x1b[36;1msleep 30; echo \"cleanup not reached\"\x1b[0m" in lines
    assert "cleanup not reached" not in lines
    assert lines.count("##[error]The action has timed out.") == 3
    # ...and the composite step fails with the usual timeout message.
    assert "##[error]The action 'Run ./.github/actions/outer' has timed out after 0.05 minutes." in lines
    assert "later always step outcome=failure" in lines
    started = {e["step"]: e for e in evs if e["event"] == "step_started"}
    finished = {e["step"]: e for e in evs if e["event"] == "step_finished"}
    outer = [n for n, e in started.items() if e["name"] == "Run ./.github/actions/outer"][0]
    assert finished[outer]["conclusion"] == "failure"
    # 3 s, not the 60 s sleep.
    t0, t1 = started[outer]["time"], finished[outer]["time"]
    secs = lambda t: int(t[11:13]) * 3600 + int(t[14:16]) * 60 + float(t[17:23])
    assert 2.5 <= secs(t1) - secs(t0) < 15


PRE_ACTION = {
    "action.yml": """
        name: with-pre
        inputs: {tag: {default: none}}
        runs:
          using: node20
          pre: pre.js
          main: main.js
          post: post.js
    """,
    "pre.js": """
        const fs = require('fs');
        fs.appendFileSync(process.env.GITHUB_STATE, `from=pre-${process.env.INPUT_TAG}\\n`);
        console.log(`nested pre ${process.env.INPUT_TAG}`);
    """,
    "main.js": """
        console.log(`nested main ${process.env.INPUT_TAG} state=${process.env.STATE_from || 'none'}`);
    """,
    "post.js": """
        console.log(`nested post ${process.env.INPUT_TAG} state=${process.env.STATE_from || 'none'}`);
    """,
}


def test_pre_steps_of_actions_inside_composites(repo, exec_in, server):
    """As ActionManager: a repository composite whose actions have pre steps gets a pre step
    of its own ("Pre <name>", at the job's start) that runs theirs, each under its pre-if,
    at any depth; the state they save reaches their main and post steps. A local composite is
    read only when it starts: its actions' pre steps do not run, and the runner says so."""
    server.add("octo/with-pre/v1", PRE_ACTION)
    # pre-if sees the job's contexts (no step has run yet, the action's inputs are not there).
    server.add("octo/pre-off/v1", dict(PRE_ACTION, **{"action.yml": PRE_ACTION["action.yml"].replace(
        "pre: pre.js", "pre: pre.js\n          pre-if: runner.os == 'Windows'")}))
    server.add("octo/wrapper/v1", {"action.yml": """
        name: wrapper
        inputs: {tag: {default: w}}
        runs:
          using: composite
          steps:
            - uses: octo/with-pre@v1
              with: {tag: "${{ inputs.tag }}"}
            - uses: octo/pre-off@v1
              with: {tag: skipped-pre}
    """})
    server.add("octo/deep/v1", {"action.yml": """
        name: deep
        runs:
          using: composite
          steps:
            - uses: octo/wrapper@v1
              with: {tag: deep}
    """})
    repo.write(".github/actions/local/action.yml", """
        name: local
        runs:
          using: composite
          steps:
            - uses: octo/with-pre@v1
              with: {tag: local}
    """)
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: actions/checkout@v4
              - uses: octo/wrapper@v1
                with: {tag: top}
              - uses: octo/deep@v1
              - uses: ./.github/actions/local
    """)
    p = exec_in("--json", "--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    evs = events(p.stdout)
    names = {e["step"]: e["name"] for e in evs if e["event"] == "step_started"}
    stages = {e["step"]: e["stage"] for e in evs if e["event"] == "step_started"}
    by_step = {}
    for e in evs:
        if e["event"] == "log":
            by_step.setdefault(e["step"], []).append(e["line"])
    pre_steps = [n for n in sorted(names) if stages[n] == "pre"]
    assert [names[n] for n in pre_steps] == ["Pre Run octo/wrapper@v1", "Pre Run octo/deep@v1"]
    assert "nested pre top" in by_step[pre_steps[0]]
    assert "nested pre deep" in by_step[pre_steps[1]]
    all_lines = logs(evs)
    assert not any("nested pre skipped-pre" in l for l in all_lines)   # its pre-if is false
    assert not any(l.startswith("nested pre local") for l in all_lines)
    # State saved by the pre steps reaches main (and post), per use of the action.
    for want in ["nested main top state=pre-top", "nested main deep state=pre-deep",
                 "nested main skipped-pre state=none", "nested main local state=none",
                 "nested post top state=pre-top", "nested post deep state=pre-deep"]:
        assert want in all_lines, (want, all_lines)
    assert "##[warning]`pre` execution is not supported for local action from " \
           "'./.github/actions/local'" in all_lines
    # Pre steps come before every main step, posts after.
    first_main = min(n for n in names if stages[n] == "main")
    assert all(n < first_main for n in pre_steps)


def test_composite_nesting_stops_at_the_official_depth(repo, exec_in, server):
    """Composite actions inside composite actions, each downloaded at set-up: nine levels
    below the job's step are allowed, a tenth fails the job before any step runs
    (Constants.CompositeActionsMaxDepth)."""
    def chain(length):
        for i in range(length):
            last = i == length - 1
            step = ('- {shell: bash, run: echo "bottom of the chain"}' if last
                    else f"- uses: octo/c{i + 1}-{length}@v1")
            server.add(f"octo/c{i}-{length}/v1", {
                "action.yml": f"name: c{i}\nruns:\n  using: composite\n  steps:\n    {step}\n"})
        repo.write(".github/workflows/ci.yml", f"""
            on: push
            jobs:
              build:
                runs-on: self-hosted
                steps:
                  - run: echo first step
                  - uses: octo/c0-{length}@v1
        """)
        return exec_in("--actions-url", server.url)
    p = chain(10)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "bottom of the chain" in p.stdout
    p = chain(11)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Composite action depth exceeded max depth 9" in p.stdout
    assert "| first step" not in p.stdout


# ---- post steps of actions inside composites ----------------------------------------------

POST_ACTION = {
    "action.yml": """
        name: with-post
        inputs:
          tag: {default: none}
          fail-post: {default: 'no'}
        runs:
          using: node20
          main: main.js
          post: post.js
    """,
    "main.js": """
        const fs = require('fs');
        fs.appendFileSync(process.env.GITHUB_STATE, `saved=main-${process.env.INPUT_TAG}\\n`);
        console.log(`main ${process.env.INPUT_TAG}`);
    """,
    "post.js": """
        const e = process.env;
        console.log(`post ${e.INPUT_TAG} state=${e.STATE_saved} ` +
                    `action=${e.GITHUB_ACTION_REPOSITORY}@${e.GITHUB_ACTION_REF} env=${e.FROM_STEP}`);
        if (e['INPUT_FAIL-POST'] === 'yes') { console.log(`post ${e.INPUT_TAG} fails`); process.exit(4); }
    """,
}


def serve_post_composites(server):
    """octo/outer@v1 (a composite) holds a JavaScript action with a post step and octo/inner@v1,
    a composite holding three more: one whose main step is skipped, one whose post-if is false,
    one whose post step fails when asked."""
    server.add("octo/with-post/v1", POST_ACTION)
    server.add("octo/post-if/v1", dict(POST_ACTION, **{"action.yml": POST_ACTION["action.yml"].replace(
        "post: post.js", "post: post.js\n          post-if: failure()")}))
    server.add("octo/inner/v1", {"action.yml": """
        name: inner
        inputs:
          tag: {default: x}
          fail-post: {default: 'no'}
        runs:
          using: composite
          steps:
            - uses: octo/with-post@v1
              with: {tag: "${{ inputs.tag }}-a"}
            - if: false
              uses: octo/with-post@v1
              with: {tag: "${{ inputs.tag }}-not-run"}
            - uses: octo/post-if@v1
              with: {tag: "${{ inputs.tag }}-post-if"}
            - id: b
              uses: octo/with-post@v1
              with: {tag: "${{ inputs.tag }}-b", fail-post: "${{ inputs.fail-post }}"}
              env: {FROM_STEP: inner-b}
    """})
    server.add("octo/outer/v1", {"action.yml": """
        name: outer
        inputs:
          fail-post: {default: 'no'}
        runs:
          using: composite
          steps:
            - uses: octo/with-post@v1
              with: {tag: outer-first}
            - uses: octo/inner@v1
              with: {tag: deep, fail-post: "${{ inputs.fail-post }}"}
            - shell: bash
              run: echo "outer main done"
    """})


def post_workflow(repo, fail_post="no"):
    repo.write(".github/workflows/ci.yml", f"""
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: octo/with-post@v1
                with: {{tag: job-first}}
              - id: o
                uses: octo/outer@v1
                with: {{fail-post: '{fail_post}'}}
              - uses: octo/with-post@v1
                with: {{tag: job-last}}
    """)


def step_table(evs):
    """[(name, stage, conclusion, [log lines])] in the order the steps ran."""
    started = [e for e in evs if e["event"] == "step_started"]
    finished = {e["step"]: e for e in evs if e["event"] == "step_finished"}
    lines = {}
    for e in evs:
        if e["event"] == "log":
            lines.setdefault(e["step"], []).append(e["line"])
    return [(e["name"], e["stage"], finished[e["step"]]["conclusion"], lines.get(e["step"], []))
            for e in started]


def test_post_steps_inside_composites_run_in_the_composites_post_step(repo, exec_in, server):
    """As CompositeActionHandler: the actions with a post step inside a composite, at any depth,
    run in ONE post step of the job's composite step ("Post Run octo/outer@v1"), placed among
    the job's post steps by when the composite started (last registered first); inside it,
    last registered first too, only those whose main step ran, each under its post-if, with the
    state its main step saved, its inputs and its action's repository and ref."""
    serve_post_composites(server)
    post_workflow(repo)
    p = exec_in("--json", "--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    table = step_table(events(p.stdout))
    posts = [(name, conclusion) for name, stage, conclusion, _ in table if stage == "post"]
    assert posts == [("Post Run octo/with-post@v1", "success"),
                     ("Post Run octo/outer@v1", "success"),
                     ("Post Run octo/with-post@v1", "success")], table
    # Post steps come after every main step.
    stages = [stage for _, stage, _, _ in table]
    assert stages == ["main"] * 3 + ["post"] * 3
    job_last, outer, job_first = [lines for _, stage, _, lines in table if stage == "post"]
    assert "post job-last state=main-job-last action=octo/with-post@v1 env=undefined" in job_last
    assert "post job-first state=main-job-first action=octo/with-post@v1 env=undefined" in job_first
    said = [l for l in outer if l.startswith("post ") or l == "Post job cleanup."]
    assert said == [
        "Post job cleanup.",  # the outer composite
        "Post job cleanup.",  # octo/inner, inside it
        "Post job cleanup.",
        "post deep-b state=main-deep-b action=octo/with-post@v1 env=inner-b",
        "Post job cleanup.",
        "post deep-a state=main-deep-a action=octo/with-post@v1 env=undefined",
        "Post job cleanup.",
        "post outer-first state=main-outer-first action=octo/with-post@v1 env=undefined",
    ], outer
    # Not for the action whose main step was skipped; not for the one whose post-if is false.
    all_lines = logs(events(p.stdout))
    assert "main deep-post-if" in all_lines
    assert not any("not-run" in l for l in all_lines)
    assert not any(l.startswith("post deep-post-if") for l in all_lines)


def test_a_failing_post_step_inside_a_composite_fails_its_post_step(repo, exec_in, server):
    """A failed inner post step fails the composite's post step (and the job); the composite's
    other post steps still run, their success() reading the job's status, not the composite's."""
    serve_post_composites(server)
    post_workflow(repo, fail_post="yes")
    p = exec_in("--json", "--actions-url", server.url)
    assert p.returncode == 1, p.stdout + p.stderr
    table = step_table(events(p.stdout))
    posts = [(name, conclusion) for name, stage, conclusion, _ in table if stage == "post"]
    assert posts == [("Post Run octo/with-post@v1", "success"),
                     ("Post Run octo/outer@v1", "failure"),
                     ("Post Run octo/with-post@v1", "success")], table
    outer = [lines for name, _, _, lines in table if name == "Post Run octo/outer@v1"][0]
    ran = [l for l in outer if l.startswith("post ")]
    assert ran == ["post deep-b state=main-deep-b action=octo/with-post@v1 env=inner-b",
                   "post deep-b fails",
                   "post deep-a state=main-deep-a action=octo/with-post@v1 env=undefined",
                   "post outer-first state=main-outer-first action=octo/with-post@v1 env=undefined"]
    assert "##[error]Process completed with exit code 4." in outer
    # The job's status was success while the composite's post step ran: post-if failure()
    # stayed false.
    assert not any(l.startswith("post deep-post-if") for l in logs(events(p.stdout)))


def test_a_pre_step_registers_the_post_step(repo, exec_in, server):
    """As ActionRunner: an action's post step is registered when its pre step runs (when it has
    one), not only by its main step: a step whose main is skipped by its if: still gets its post
    step, and its place among the job's post steps is where its pre step put it."""
    server.add("octo/with-pre/v1", PRE_ACTION)
    server.add("octo/with-post/v1", POST_ACTION)
    server.add("octo/wrapper/v1", {"action.yml": """
        name: wrapper
        inputs: {tag: {default: w}}
        runs:
          using: composite
          steps:
            - uses: octo/with-pre@v1
              with: {tag: "${{ inputs.tag }}"}
    """})
    repo.write(".github/workflows/ci.yml", """
        on: push
        jobs:
          build:
            runs-on: self-hosted
            steps:
              - uses: octo/with-post@v1
                with: {tag: plain}
              - if: false
                uses: octo/with-pre@v1
                with: {tag: skipped-main}
              - if: false
                uses: octo/wrapper@v1
                with: {tag: skipped-composite}
    """)
    p = exec_in("--json", "--actions-url", server.url)
    assert p.returncode == 0, p.stdout + p.stderr
    table = step_table(events(p.stdout))
    assert [(name, stage, conclusion) for name, stage, conclusion, _ in table] == [
        ("Pre Run octo/with-pre@v1", "pre", "success"),
        ("Pre Run octo/wrapper@v1", "pre", "success"),
        ("Run octo/with-post@v1", "main", "success"),
        ("Run octo/with-pre@v1", "main", "skipped"),
        ("Run octo/wrapper@v1", "main", "skipped"),
        ("Post Run octo/with-post@v1", "post", "success"),
        ("Post Run octo/wrapper@v1", "post", "success"),
        ("Post Run octo/with-pre@v1", "post", "success"),
    ], table
    posts = [lines for _, stage, _, lines in table if stage == "post"]
    assert "nested post skipped-composite state=pre-skipped-composite" in posts[1]
    assert "nested post skipped-main state=pre-skipped-main" in posts[2]
