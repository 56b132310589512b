"""ACTIONS_RUNNER_ACTION_ARCHIVE_CACHE, as the official runner reads it (its runner images set it
to a folder of actions/action-versions): an action whose `<dir>/<owner>_<repo>/<resolved
sha>.tar.gz` is there is extracted from it instead of downloaded; a miss downloads as usual."""
import gzip
import io
import json
import shutil
import tarfile

import pytest

from test_runner_actions import JS_ACTION, run_job, runner, tarball_requests, uses_step  # noqa: F401,I100
from fakehub_fixtures import fakehub_factory  # noqa: F401,E402 (its folder is on sys.path now)

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="JavaScript actions need node")


def tarball(top, files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def test_a_seeded_archive_is_used_instead_of_the_download(runner, tmp_path):
    r = runner
    served = r.admin.add_action("octo/greet", "v1", JS_ACTION)
    other = r.admin.add_action("octo/other", "v3", JS_ACTION)
    cache = tmp_path / "archives"
    seeded = dict(JS_ACTION, **{"main.js": "console.log('greet from the archive cache');\n"})
    (cache / "octo_greet").mkdir(parents=True)
    (cache / "octo_greet" / f"{served['sha']}.tar.gz").write_bytes(tarball("octo-greet-seeded", seeded))
    (r.path / ".env").write_text(f"ACTIONS_RUNNER_ACTION_ARCHIVE_CACHE={cache}\n")
    r.start()
    steps = [uses_step("octo/greet@v1", "seeded"), uses_step("octo/other@v3", "downloaded", {"who": "miss"})]
    job, logs = run_job(r, steps)
    assert job["result"] == "succeeded", job
    text = json.dumps(logs)
    assert "greet from the archive cache" in text                 # the archive's content ran
    assert "js says hello miss" in text                           # a miss was downloaded
    fetched = [x["path"] for x in tarball_requests(r.admin)]
    assert len(fetched) == 1 and other["sha"] in fetched[0], fetched
    assert "archive cache" in text
