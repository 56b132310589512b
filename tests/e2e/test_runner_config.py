"""harrier config / remove against fakehub (PROTOCOL.md §2): the three files written as the
official runner writes them, the registration fakehub recorded, errors a user meets, and
remove unregistering. fakehub is an independent implementation of the service side."""
import base64
import json
import os
import stat
import time
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakehub"))

import fakehub as fh  # noqa: E402
from fakehub_fixtures import fakehub_factory  # noqa: E402,F401


def strip_bom(data):
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def read_json(path):
    with open(path, "rb") as f:
        return json.loads(strip_bom(f.read()))


@pytest.fixture
def hub(fakehub_factory):
    return fakehub_factory(poll_hold=1.0)


def test_config_writes_three_files_and_registers(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    p = harrier("config", "--url", hub.url + "/octo-org/octo-repo", "--token", admin.registration_token(),
                "--name", "cfg-1", "--labels", "gpu,big", "--disableupdate", "--unattended", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in (".runner", ".credentials", ".credentials_rsaparams"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    runner = read_json(tmp_path / ".runner")
    creds = read_json(tmp_path / ".credentials")
    key = read_json(tmp_path / ".credentials_rsaparams")
    agents = admin.agents()
    agents = agents.get("value", agents) if isinstance(agents, dict) else agents
    agent = next(a for a in agents if a["name"] == "cfg-1")
    assert runner["agentId"] == agent["id"] and runner["agentName"] == "cfg-1"
    assert runner["serverUrl"].startswith(hub.url + "/t/")
    assert runner["gitHubUrl"] == hub.url + "/octo-org/octo-repo"
    assert runner["disableUpdate"] is True and "ephemeral" not in runner
    assert runner["isHostedServer"] is False                       # GHES-style host (§2.8)
    assert creds["scheme"] == "OAuth" and creds["data"]["clientId"]
    assert creds["data"]["requireFipsCryptography"] == "True"      # fakehub sends the property
    # the public key fakehub registered is the one in .credentials_rsaparams
    modulus = base64.b64decode(key["modulus"])
    assert len(modulus) == 256 and len(base64.b64decode(key["d"])) == 256
    assert len(base64.b64decode(key["p"])) == 128 and key["exponent"] == "AQAB"
    labels = {(l["name"], l["type"]) for l in agent["labels"]}
    assert {("self-hosted", "system"), ("Linux", "system"), ("gpu", "user"), ("big", "user")} <= labels
    # the OAuth connection test of §2.6 step 5 ran: a token was issued with a JWT assertion
    oauth = [r for r in admin.requests(route="oauth") if r["status"] == 200]
    assert oauth, "config did not test its new credential"
    assert not [r for r in admin.refusals() if not r.get("challenge")]


def test_config_bad_token_says_so(hub, harrier, tmp_path):
    p = harrier("config", "--url", hub.url + "/octo-org/octo-repo", "--token", "WRONGTOKEN", "--unattended",
                cwd=tmp_path)
    assert p.returncode == 1
    assert "token was refused" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / ".runner")


def test_config_name_taken_needs_replace(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    url = hub.url + "/octo-org/octo-repo"
    assert harrier("config", "--url", url, "--token", admin.registration_token(), "--name", "same",
                   cwd=a).returncode == 0
    p = harrier("config", "--url", url, "--token", admin.registration_token(), "--name", "same", cwd=b)
    assert p.returncode == 1 and "same name" in p.stderr
    p = harrier("config", "--url", url, "--token", admin.registration_token(), "--name", "same", "--replace",
                cwd=b)
    assert p.returncode == 0, p.stderr
    assert read_json(a / ".runner")["agentId"] == read_json(b / ".runner")["agentId"]
    puts = [r for r in admin.requests(route="agents") if r["method"] == "PUT" and r["status"] == 200]
    assert len(puts) == 1


def test_config_from_environment_inputs(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    p = harrier("config", env={"ACTIONS_RUNNER_INPUT_URL": hub.url + "/octo-org/octo-repo",
                               "ACTIONS_RUNNER_INPUT_TOKEN": admin.registration_token(),
                               "ACTIONS_RUNNER_INPUT_NAME": "from-env",
                               "ACTIONS_RUNNER_INPUT_EPHEMERAL": "true"}, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    runner = read_json(tmp_path / ".runner")
    assert runner["agentName"] == "from-env" and runner["ephemeral"] is True


def test_remove_unregisters(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    url = hub.url + "/octo-org/octo-repo"
    assert harrier("config", "--url", url, "--token", admin.registration_token(), "--name", "gone",
                   cwd=tmp_path).returncode == 0
    p = harrier("remove", "--token", admin.registration_token(kind="remove"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in (".runner", ".credentials", ".credentials_rsaparams"):
        assert not os.path.exists(tmp_path / name)
    deletes = [r for r in admin.requests(route="agents") if r["method"] == "DELETE"]
    assert deletes and deletes[-1]["status"] in (200, 204)
    agents = admin.agents()
    agents = agents.get("value", agents) if isinstance(agents, dict) else agents
    assert not [a for a in agents if a["name"] == "gone" and not a.get("deleted")]


def test_remove_with_a_bad_token_keeps_the_files(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    assert harrier("config", "--url", hub.url + "/o/r", "--token", admin.registration_token(),
                   cwd=tmp_path).returncode == 0
    p = harrier("remove", "--token", "NOPE", cwd=tmp_path)
    assert p.returncode == 1 and "removal token was refused" in p.stderr
    assert os.path.exists(tmp_path / ".runner")


def test_config_and_remove_with_a_pat(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    p = harrier("config", "--url", hub.url + "/octo-org/octo-repo", "--pat", hub.pat, "--name", "by-pat",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert read_json(tmp_path / ".runner")["agentName"] == "by-pat"
    pats = [r for r in admin.requests(route="pat") if r["status"] in (200, 201)]
    assert [r["path"] for r in pats] == ["/api/v3/repos/octo-org/octo-repo/actions/runners/registration-token"]
    p = harrier("remove", "--pat", hub.pat, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(tmp_path / ".runner")
    p = harrier("config", "--url", hub.url + "/octo-org/octo-repo", "--pat", "ghp_wrong", cwd=tmp_path)
    assert p.returncode == 1 and "personal access token was refused" in p.stderr


# --- prompts: values given neither as flags nor as ACTIONS_RUNNER_INPUT_* are asked for, as the
# official config.sh asks them (CommandSettings/PromptManager), in its order.

def agent_named(admin, name):
    agents = admin.agents()
    agents = agents.get("value", agents) if isinstance(agents, dict) else agents
    return next((a for a in agents if a["name"] == name), None)


def test_config_asks_for_missing_values_on_stdin(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    token = admin.registration_token()
    # URL, token, runner group (Enter: the default), name, labels, work folder
    answers = f"{hub.url}/octo-org/octo-repo\n{token}\n\nasked-name\nfrom-prompt\nwork-here\n"
    p = harrier("config", cwd=tmp_path, input=answers)
    assert p.returncode == 0, p.stderr
    for question in ("What is the URL of your repository?", "What is your runner register token?",
                     "Enter the name of the runner group to add this runner to: [press Enter for",
                     "Enter the name of runner: [press Enter for",
                     "Enter any additional labels (ex. label-1,label-2): [press Enter to skip]",
                     "Enter name of work folder: [press Enter for _work]"):
        assert question in p.stdout, (question, p.stdout)
    assert token not in p.stdout
    agent = agent_named(admin, "asked-name")
    assert agent is not None
    assert ("from-prompt", "user") in {(l["name"], l["type"]) for l in agent["labels"]}
    assert read_json(tmp_path / ".runner")["workFolder"] == "work-here"


def test_config_prompt_takes_defaults_at_end_of_input(hub, harrier, tmp_path):
    """Flags given, stdin empty: every question with a default takes it, as the official runner
    does when its console read returns nothing."""
    admin = fh.FakeHubClient(hub.url)
    p = harrier("config", "--url", hub.url + "/octo-org/octo-repo", "--token", admin.registration_token(),
                cwd=tmp_path, input="")
    assert p.returncode == 0, p.stderr
    runner = read_json(tmp_path / ".runner")
    assert runner["agentName"] == os.uname().nodename and runner["workFolder"] == "_work"


def test_config_prompt_rejects_a_bad_url_and_asks_again(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    answers = f"not-a-url\n{hub.url}/octo-org/octo-repo\n"
    p = harrier("config", "--token", admin.registration_token(), "--name", "again", cwd=tmp_path,
                input=answers)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("What is the URL of your repository?") == 2
    assert "Entered value is invalid" in p.stdout


def test_config_unattended_never_asks(hub, harrier, tmp_path):
    p = harrier("config", "--token", "X", "--unattended", cwd=tmp_path, input="http://x/o/r\n")
    assert p.returncode == 1
    assert "Invalid configuration provided for url" in p.stderr and "--url" in p.stderr
    assert "What is the URL" not in p.stdout
    assert not (tmp_path / ".runner").exists()


def test_config_asks_to_replace_a_taken_name(hub, harrier, tmp_path):
    admin = fh.FakeHubClient(hub.url)
    url = hub.url + "/octo-org/octo-repo"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert harrier("config", "--url", url, "--token", admin.registration_token(), "--name", "taken",
                   "--unattended", cwd=tmp_path / "a").returncode == 0
    first = agent_named(admin, "taken")["id"]
    p = harrier("config", "--url", url, "--token", admin.registration_token(), "--name", "taken",
                "--labels", "", "--work", "_work", cwd=tmp_path / "b", input="\nY\n")
    assert p.returncode == 0, p.stderr
    assert "Would you like to replace the existing runner? (Y/N) [press Enter for N]" in p.stdout
    assert read_json(tmp_path / "b" / ".runner")["agentId"] == first      # the same runner, replaced


def test_config_token_is_not_echoed_on_a_terminal(hub, harrier_bin, tmp_path):
    """On a terminal the registration token is read with echo off (it is a secret)."""
    import pty
    import select
    import subprocess
    admin = fh.FakeHubClient(hub.url)
    token = admin.registration_token()
    master, slave = pty.openpty()
    proc = subprocess.Popen([harrier_bin, "config", "--url", hub.url + "/octo-org/octo-repo", "--name", "tty",
                             "--labels", "", "--work", "_work"],
                            cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def read_until(text, timeout=30):
        nonlocal seen
        end = time.time() + timeout
        while text not in seen and time.time() < end:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert text in seen, seen

    read_until(b"What is your runner register token?")
    os.write(master, token.encode() + b"\n")
    read_until(b"runner group")
    os.write(master, b"\n")
    assert proc.wait(timeout=60) == 0
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                break
            seen += os.read(master, 4096)
    except OSError:
        pass
    os.close(master)
    assert token.encode() not in seen, seen
    assert agent_named(admin, "tty") is not None
