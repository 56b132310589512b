"""Under `make asan` (HARRIER_SANITIZE=1): a sanitizer report in the output a test captured from
a process it started (harrier, a worker behind a listener, behind `harrier exec`) is echoed to
the real stderr, where tests/run finds it and fails the run, even when the test passed.
Installed by the e2e and fakehub conftests; does nothing otherwise."""
import os
import re
import subprocess
import sys

REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")


def _echo(text):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text and REPORT.search(text):
        sys.__stderr__.write("\n--- sanitizer report in a process's captured output ---\n")
        sys.__stderr__.write(text[-8000:] + "\n")
        sys.__stderr__.flush()


def install():
    if not os.environ.get("HARRIER_SANITIZE") or getattr(subprocess.Popen, "_harrier_watch", False):
        return
    original = subprocess.Popen.communicate

    def communicate(self, *args, **kwargs):
        out, err = original(self, *args, **kwargs)
        _echo(out)
        _echo(err)
        return out, err

    subprocess.Popen.communicate = communicate
    subprocess.Popen._harrier_watch = True
