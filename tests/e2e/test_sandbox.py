"""The sandbox's promises, checked through build/helpers/sandbox_run (a small program that
runs one command through the sandbox API), as root and as an unprivileged user.

A step must not read the runner's credentials (even after umount, mount --move or
/proc/<pid>/root), see or signal the caller, outlive a cancel or its job, or reach a host
port from strict; it gets its exit code and signal right and meets its memory limit."""
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HARRIER_BUILD", os.path.join(ROOT, "build"))
TEST_USER = "harrier-test"
SANITIZER = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")
RESULT = re.compile(r"sandbox_run: level (\w+) exit (-?\d+) signal (\d+) canceled (\d) limits (\d)"
                    r"(?: left (\d+) after (\d+))?")
LEVELS = ["none", "process", "strict"]
SANDBOXED = ["process", "strict"]


def ensure_test_user():
    """Creates the unprivileged test user when missing (idempotent)."""
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        TEST_USER], check=False, capture_output=True)
        return pwd.getpwnam(TEST_USER)


class Runner:
    """Runs sandbox_run as one user; workdirs it makes belong to that user."""

    def __init__(self, name, binary, uid, gid):
        self.name, self.binary, self.uid, self.gid = name, binary, uid, gid
        self.root = uid == 0
        self.dirs = []

    def workdir(self):
        d = tempfile.mkdtemp(prefix="harrier-sandbox-")
        os.chmod(d, 0o755)
        if os.geteuid() == 0:
            os.chown(d, self.uid, self.gid)
        self.dirs.append(d)
        return d

    def write(self, path, text, mode=0o644):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(os.path.dirname(path), self.uid, self.gid)
            os.chown(path, self.uid, self.gid)

    def userns_missing(self):
        """Why this user cannot create user namespaces on this kernel, or None."""
        if not hasattr(self, "_userns"):
            p = self.raw(["unshare", "-U", "-r", "true"])
            self._userns = None if p.returncode == 0 else p.stderr.strip()
        return self._userns

    def run(self, *args, script=None, timeout=60, env=None):
        if "--level" in args and args[args.index("--level") + 1] != "none" and self.userns_missing():
            pytest.skip(f"user namespaces are unavailable to {self.name} here: {self.userns_missing()}")
        cmd = [self.binary, *args, "--"]
        cmd += ["/bin/sh", "-c", script] if script is not None else []
        return self.raw(cmd, timeout=timeout, env=env)

    def raw(self, cmd, timeout=60, env=None):
        kwargs = {}
        if os.geteuid() == 0 and self.uid != 0:
            kwargs = dict(user=self.uid, group=self.gid, extra_groups=[])
        full_env = dict(os.environ, **(env or {}))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                           cwd="/", **kwargs)
        assert not SANITIZER.search(p.stderr), p.stderr
        m = RESULT.search(p.stderr)
        p.result = None
        if m:
            p.result = dict(level=m.group(1), exit=int(m.group(2)), signal=int(m.group(3)),
                            canceled=m.group(4) == "1", limits=m.group(5) == "1",
                            left=int(m.group(6)) if m.group(6) else None,
                            after=int(m.group(7)) if m.group(7) else None)
        return p

    def cleanup(self):
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def binaries():
    """sandbox_run copied to a world-readable folder (root's home is not)."""
    src = os.path.join(BUILD, "helpers", "sandbox_run")
    if not os.access(src, os.X_OK):
        pytest.fail(f"{src} is not built; run 'make test-binaries'")
    folder = tempfile.mkdtemp(prefix="harrier-sandbox-bin-")
    os.chmod(folder, 0o755)
    dst = os.path.join(folder, "sandbox_run")
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755)
    yield dst
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["root", "unprivileged"])
def runner(request, binaries):
    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("the root half of this test needs root")
        r = Runner("root", binaries, 0, 0)
    elif os.geteuid() == 0:
        u = ensure_test_user()
        r = Runner("unprivileged", binaries, u.pw_uid, u.pw_gid)
    else:
        r = Runner("unprivileged", binaries, os.geteuid(), os.getegid())
    yield r
    r.cleanup()


def marker():
    """A unique sleep argument, to find a test's processes in /proc."""
    return f"1000.{uuid.uuid4().int % 10**9:09d}"


def processes_with(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and "sandbox_run" not in cmd:
            found.append((int(pid), cmd))
    return found


def kill_all_with(text):
    for pid, _ in processes_with(text):
        try:
            os.kill(pid, 9)
        except OSError:
            pass


# ---- credentials ----

ESCAPES = r"""
cat "$CREDS" "$OTHER/secret" 2>&1
echo "VISIBLE:$(cat "$VISIBLE")"
umount "$CREDS" 2>&1; umount -l "$CREDS" 2>&1; umount "$OTHER" 2>&1
mkdir -p "$WORK/moved" 2>/dev/null; mount --move "$CREDS" "$WORK/moved/x" 2>&1
mount --move "$OTHER" "$WORK/moved" 2>&1
cat "$CREDS" "$OTHER/secret" "$WORK/moved/secret" 2>&1
for p in /proc/[0-9]*; do cat "$p/root$CREDS" "$p/root$OTHER/secret" 2>&1; done
cat "/proc/self/root$CREDS" 2>&1
unshare -rm sh -c 'umount "$CREDS"; umount "$OTHER"; cat "$CREDS" "$OTHER/secret"' 2>&1
unshare -Urm --propagation private sh -c 'umount -l "$CREDS"; cat "$CREDS"' 2>&1
echo DONE
"""


def credentials_setup(runner):
    work = runner.workdir()
    secret = "SECRET-" + uuid.uuid4().hex
    creds = os.path.join(work, "runner", ".credentials")
    other = os.path.join(work, "_work", "other-job")
    runner.write(creds, secret + "\n", 0o600)
    runner.write(os.path.join(other, "secret"), secret + "\n", 0o600)
    runner.write(os.path.join(work, "runner", "visible"), "yes\n")
    env = {"CREDS": creds, "OTHER": other, "WORK": work,
           "VISIBLE": os.path.join(work, "runner", "visible")}
    return work, secret, creds, other, env


@pytest.mark.parametrize("level", SANDBOXED)
def test_step_cannot_read_hidden_credentials_even_after_umount_or_move(runner, level):
    work, secret, creds, other, env = credentials_setup(runner)
    p = runner.run("--level", level, "--hide", creds, "--hide", other, "--writable", work,
                   script=ESCAPES, env=env)
    out = p.stdout + p.stderr
    assert "DONE" in p.stdout, out
    assert "VISIBLE:yes" in p.stdout, out  # the step runs and reads what is not hidden
    assert secret not in out, out


def test_credentials_are_readable_without_a_sandbox(runner):
    """The same script at level none reads them: the check above can fail."""
    work, secret, creds, other, env = credentials_setup(runner)
    p = runner.run("--level", "none", "--hide", creds, script=ESCAPES, env=env)
    assert secret in p.stdout


# ---- the caller's processes ----

SEE_CALLER = r"""
kill -0 "$CALLER" 2>/dev/null && echo SIGNALLED
test -e "/proc/$CALLER" && echo SEEN
echo "PROCS:$(ls /proc | grep -c '^[0-9]')"
"""


@pytest.mark.parametrize("level", SANDBOXED)
def test_step_cannot_see_or_signal_the_caller(runner, level):
    p = runner.run("--level", level, script=SEE_CALLER, env={"CALLER": str(os.getpid())})
    assert "SIGNALLED" not in p.stdout and "SEEN" not in p.stdout, p.stdout
    procs = int(re.search(r"PROCS:(\d+)", p.stdout).group(1))
    assert procs <= 10, p.stdout  # the reaper, the shell and its few children


def test_caller_is_visible_without_a_sandbox(runner):
    p = runner.run("--level", "none", script=SEE_CALLER, env={"CALLER": str(os.getpid())})
    assert "SEEN" in p.stdout


# ---- exit codes and signals ----

@pytest.mark.parametrize("level", LEVELS)
def test_exit_code_and_signal(runner, level):
    p = runner.run("--level", level, script="exit 42")
    assert p.returncode == 42 and p.result["exit"] == 42 and p.result["signal"] == 0, p.stderr
    p = runner.run("--level", level, script="kill -TERM $$")
    assert p.result["signal"] == 15 and p.returncode == 128 + 15, p.stderr
    p = runner.run("--level", level, script="kill -SEGV $$")
    assert p.result["signal"] == 11, p.stderr
    p = runner.run("--level", level, "--steps", "3", script="echo step")
    assert p.stdout.count("step") == 3 and p.returncode == 0


@pytest.mark.parametrize("level", LEVELS)
def test_missing_program_is_an_error_that_says_so(runner, level):
    p = subprocess.run([runner.binary, "--level", level, "--", "/nonexistent/program"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125
    assert "cannot start /nonexistent/program" in p.stderr
    assert "No such file or directory" in p.stderr


# ---- cancel and job end ----

def tree_script(mark):
    return f"""
trap 'echo got-INT' INT
sleep {mark} &
setsid sleep {mark} &
setsid sh -c 'sleep {mark} & echo daemonized' &
(trap '' INT TERM; sleep {mark}) &
wait; echo after-wait; wait
"""


@pytest.mark.parametrize("level", LEVELS)
def test_cancel_leaves_no_process_behind(runner, level):
    mark = marker()
    try:
        p = runner.run("--level", level, "--cancel-after", "500", "--interrupt-ms", "300",
                       "--terminate-ms", "300", "--marker", mark, script=tree_script(mark))
        r = p.result
        assert r and r["canceled"], p.stderr
        assert r["left"] == 0, p.stderr  # after the cancel, before the job ends
        assert r["after"] == 0, p.stderr
        assert processes_with(mark) == []
    finally:
        kill_all_with(mark)


def test_cancel_escalates_sigint_sigterm_sigkill(runner):
    script = """
trap 'echo got-INT' INT
trap 'echo got-TERM' TERM
while :; do sleep 0.05; done
"""
    start = time.monotonic()
    p = runner.run("--level", "process", "--cancel-after", "300", "--interrupt-ms", "600",
                   "--terminate-ms", "600", script=script)
    elapsed = time.monotonic() - start
    assert p.stdout.index("got-INT") < p.stdout.index("got-TERM"), p.stdout
    assert p.result["signal"] == 9 and p.result["canceled"], p.stderr
    assert 1.4 <= elapsed < 10, elapsed


def test_cancel_uses_the_official_runners_timings(runner):
    """SIGINT, 7.5 s, SIGTERM, 2.5 s, SIGKILL, by default."""
    if runner.name != "root":
        pytest.skip("the timing is the same code for both users; checked once, as root")
    script = "trap 'echo INT' INT; trap 'echo TERM' TERM; while :; do sleep 0.1; done"
    start = time.monotonic()
    p = runner.run("--level", "process", "--cancel-after", "100", script=script)
    elapsed = time.monotonic() - start
    assert p.result["signal"] == 9
    assert 10.0 <= elapsed < 14, elapsed


@pytest.mark.parametrize("level", SANDBOXED)
def test_background_processes_outlive_their_step_but_not_the_job(runner, level):
    mark = marker()
    try:
        p = runner.run("--level", level, "--marker", mark,
                       script=f"setsid sleep {mark} & sleep {mark} & "
                              # both must have started before the step ends (a loaded machine)
                              f"until [ $(pgrep -fc 'sleep {mark}') -ge 2 ]; do sleep 0.05; done; "
                              "echo started")
        assert p.result["exit"] == 0, p.stderr
        assert p.result["left"] == 2, p.stderr  # as GitHub: a step's background jobs go on
        assert p.result["after"] == 0, p.stderr  # but ending the job ends them
        assert processes_with(mark) == []
    finally:
        kill_all_with(mark)


# ---- strict ----

@pytest.fixture
def host_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


CONNECT = 'python3 -c "import socket; socket.create_connection((\'127.0.0.1\', $PORT), 2); print(\'CONNECTED\')"'


def test_strict_step_cannot_reach_a_host_port_a_process_step_reaches(runner, host_port):
    env = {"PORT": str(host_port)}
    p = runner.run("--level", "process", script=CONNECT, env=env)
    assert "CONNECTED" in p.stdout, p.stderr
    p = runner.run("--level", "strict", script=CONNECT, env=env)
    assert "CONNECTED" not in p.stdout and p.returncode != 0
    p = runner.run("--level", "strict", "--network", script=CONNECT, env=env)
    assert "CONNECTED" in p.stdout, p.stderr


def test_strict_has_a_read_only_root_private_tmp_and_minimal_dev(runner):
    work = runner.workdir()
    host_tmp = tempfile.NamedTemporaryFile(prefix="harrier-host-", dir="/tmp", delete=False)
    host_tmp.close()
    os.chmod(host_tmp.name, 0o644)
    script = f"""
touch /usr/harrier-x 2>/dev/null && echo ROOT-WRITABLE
test -e {host_tmp.name} && echo HOST-TMP-SEEN
echo t > /tmp/mine && echo TMP-OK
echo s > /dev/shm/mine && echo SHM-OK
echo w > {work}/file && echo WORK-OK
echo n > /dev/null && echo NULL-OK
head -c 4 /dev/urandom | wc -c
ls /dev | tr '\\n' ' '; echo
ls /dev | grep -qE '^(vd|sd|nvme|loop|zram)' && echo BLOCK-DEVICES
python3 -c "import pty, os; m, s = pty.openpty(); print('PTY-OK')"
echo lo:$(cat /sys/class/net/lo/operstate 2>/dev/null)
"""
    try:
        p = runner.run("--level", "strict", "--writable", work, script=script)
    finally:
        os.unlink(host_tmp.name)
    out = p.stdout
    for want in ("TMP-OK", "SHM-OK", "WORK-OK", "NULL-OK", "PTY-OK"):
        assert want in out, out + p.stderr
    for unwanted in ("ROOT-WRITABLE", "HOST-TMP-SEEN", "BLOCK-DEVICES"):
        assert unwanted not in out, out
    with open(os.path.join(work, "file")) as f:
        assert f.read() == "w\n"


def test_process_level_keeps_the_host_filesystem_writable(runner):
    work = runner.workdir()
    p = runner.run("--level", "process", script=f"echo w > {work}/f && echo OK; id -u")
    assert "OK" in p.stdout
    assert p.stdout.split()[-1] == str(runner.uid)  # root maps to root, others to themselves


def test_root_maps_to_root_with_every_id(runner):
    if runner.name != "root":
        pytest.skip("only root can map every id")
    p = runner.run("--level", "process", script="setpriv --reuid 42 --regid 42 --clear-groups id -u")
    assert p.stdout.strip() == "42", p.stderr  # apt drops to _apt this way


# ---- limits ----

def cgroup_v2_has(controller):
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if " - cgroup2 " in line:
            mount = fields[4]
            own = [l.split("::", 1)[1].strip() for l in open("/proc/self/cgroup")
                   if l.startswith("0::")]
            path = os.path.join(mount, own[0].lstrip("/")) if own else mount
            try:
                return controller in open(os.path.join(path, "cgroup.controllers")).read().split()
            except OSError:
                return False
    return False


def cgroup_v1_has(controller):
    return any(" - cgroup " in l and controller in l.split()[-1].split(",")
               for l in open("/proc/self/mountinfo"))


EAT = 'exec python3 -c "b = b\'x\' * ($MB << 20); print(\'SURVIVED\')"'


def memory_limit_check(runner):
    limit = str(64 << 20)
    p = runner.run("--level", "process", "--memory", limit, script=EAT, env={"MB": "300"})
    assert p.result["limits"], p.stderr
    assert "SURVIVED" not in p.stdout and p.result["signal"] == 9, p.stderr
    p = runner.run("--level", "process", "--memory", limit, script=EAT, env={"MB": "8"})
    assert "SURVIVED" in p.stdout, p.stderr  # under the limit it runs


def test_memory_limit_kills_a_step_that_exceeds_it_cgroup_v1(runner):
    if cgroup_v2_has("memory"):
        pytest.skip("cgroup v2 has the memory controller here: the v2 test covers it")
    if not cgroup_v1_has("memory"):
        pytest.skip("no cgroup v1 memory controller on this machine")
    if runner.name != "root":
        p = runner.run("--level", "process", "--memory", str(64 << 20), script="true")
        assert not p.result["limits"]
        assert p.stderr.count("no memory, pids or cpu limits can be had") == 1, p.stderr
        return
    memory_limit_check(runner)


def test_memory_limit_kills_a_step_that_exceeds_it_cgroup_v2(runner):
    if not cgroup_v2_has("memory"):
        pytest.skip("cgroup v2 here has no memory controller (only hugetlb): "
                    "the v2 path is untested on this machine")
    memory_limit_check(runner)


def test_pids_limit(runner):
    if runner.name != "root" and not cgroup_v2_has("pids"):
        pytest.skip("pids limits here are cgroup v1, for root only")
    script = """exec python3 -c '
import os, time
started = 0
for i in range(40):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    started += 1
print("started:%d" % started)
'"""
    p = runner.run("--level", "process", "--pids", "10", script=script)
    assert p.result["limits"], p.stderr
    started = int(re.search(r"started:(\d+)", p.stdout).group(1))
    assert 1 <= started < 10, p.stdout


# ---- levels ----

def test_missing_kernel_feature_falls_back_only_when_allowed(runner):
    """Inside a user namespace (unshare -r) whose own max_user_namespaces is 0, the sandbox
    cannot create user namespaces. The limit is per namespace: the host's is untouched."""
    def run(*flags):
        inner = (f"echo 0 > /proc/sys/user/max_user_namespaces && "
                 f"exec {runner.binary} --level process {' '.join(flags)} -- id -u")
        return runner.raw(["unshare", "-r", "/bin/sh", "-c", inner])
    p = run("--fallback")
    assert p.stderr.count("level process needs user namespaces") == 1, p.stderr
    assert "using none" in p.stderr
    assert "level none exit 0" in p.stderr and p.returncode == 0
    p = run()
    assert "cannot create the process sandbox: needs user namespaces" in p.stderr, p.stderr
    assert p.returncode == 125


def test_cpu_limit_is_set_on_the_steps_cgroup(runner):
    """cpu.max (v2) or cpu.cfs_quota_us (v1) of the cgroup the step runs in."""
    if runner.name != "root" and not cgroup_v2_has("cpu"):
        pytest.skip("cpu limits here are cgroup v1, for root only")
    script = r"""
v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
v1=$(sed -n 's/^[0-9]*:\([a-z,]*,\)\{0,1\}cpu\(,[a-z,]*\)\{0,1\}:\(.*\)/\3/p' /proc/self/cgroup)
for f in /sys/fs/cgroup/unified$v2/cpu.max /sys/fs/cgroup$v2/cpu.max /sys/fs/cgroup/cpu$v1/cpu.cfs_quota_us; do
  test -r "$f" && echo "$f=$(cat "$f")"
done
"""
    p = runner.run("--level", "process", "--cpu", "25", script=script)
    assert p.result["limits"], p.stderr
    assert re.search(r"cpu.cfs_quota_us=25000$|cpu.max=25000 100000$", p.stdout, re.M), p.stdout
    p = runner.run("--level", "process", script=script)
    assert not re.search(r"=25000", p.stdout), p.stdout  # without the limit, none is set
