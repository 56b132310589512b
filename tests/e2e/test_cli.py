"""The command line: subcommands, help, and exit codes that supervisors and users rely on."""
import pytest

COMMANDS = ["config", "remove", "run", "exec", "worker", "version", "help"]


def test_help_lists_every_command(harrier):
    p = harrier("help")
    assert p.returncode == 0
    for c in COMMANDS:
        assert f"\n  {c} " in p.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(harrier, command):
    p = harrier(command, "--help")
    assert p.returncode == 0
    assert p.stdout.startswith(f"Usage: harrier {command}")


def test_version(harrier):
    p = harrier("version")
    assert p.returncode == 0
    assert p.stdout.startswith("harrier ")


def test_no_command_is_usage_error(harrier):
    p = harrier()
    assert p.returncode == 2
    assert "Usage: harrier COMMAND" in p.stderr


def test_unknown_command_says_what_to_do_in_one_line(harrier):
    p = harrier("frobnicate")
    assert p.returncode == 2
    assert p.stderr == "harrier: unknown command 'frobnicate' (see 'harrier help')\n"


def test_exec_bad_usage_exits_2(harrier):
    p = harrier("exec", "--no-such-flag")
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1
    assert "unknown option '--no-such-flag'" in p.stderr


@pytest.mark.parametrize("command", ["config", "remove", "run"])
def test_runner_commands_bad_usage_is_not_retryable(harrier, command):
    # The official runner's supervisors restart on 2 ("retryable"): bad usage must be 1.
    p = harrier(command, "--no-such-flag")
    assert p.returncode == 1
    assert "unknown option" in p.stderr


def test_missing_option_value(harrier):
    p = harrier("exec", "-W")
    assert p.returncode == 2
    assert "needs a value" in p.stderr


def test_config_remove_is_the_official_spelling_of_remove(harrier):
    p = harrier("config", "remove", "--help")
    assert p.returncode == 0
    assert p.stdout.startswith("Usage: harrier remove")


def test_flags_from_env_must_be_booleans(harrier):
    p = harrier("config", "--url", "https://github.com/o/r", env={"ACTIONS_RUNNER_INPUT_EPHEMERAL": "maybe"})
    assert p.returncode == 1
    assert "ACTIONS_RUNNER_INPUT_ephemeral must be true or false" in p.stderr


def test_run_refuses_slots_it_cannot_serve(harrier, tmp_path):
    # No registration here: say so, never start listening for nothing.
    p = harrier("run", "--slots", "2", cwd=str(tmp_path))
    assert p.returncode == 1
    assert "not configured" in p.stderr and "harrier config" in p.stderr
    p = harrier("run", "--slots", "0", cwd=str(tmp_path))
    assert p.returncode == 1 and "--slots takes a number from 1 to 64" in p.stderr
