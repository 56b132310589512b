"""Shared fixtures for the end-to-end tests: they run the real binary named by HARRIER_BIN
(tests/run sets it; the default is build/harrier)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "helpers"))
import sanitize_watch  # noqa: E402

sanitize_watch.install()


@pytest.fixture(scope="session")
def harrier_bin():
    path = os.environ.get("HARRIER_BIN", os.path.join(ROOT, "build", "harrier"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built; run 'make' first")
    return path


@pytest.fixture
def harrier(harrier_bin):
    """Runs harrier with arguments; returns the CompletedProcess (text mode)."""
    def run(*args, env=None, cwd=None, timeout=60, input=None):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run([harrier_bin, *args], env=full_env, cwd=cwd, input=input,
                              capture_output=True, text=True, timeout=timeout)
    return run
