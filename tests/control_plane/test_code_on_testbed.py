"""On the real local testbed: a company's code and data travel from its own folder (not the control plane's)
through the CLI, the job imports the uploaded package, reads its data and writes a checkpoint; another tenant
reaches none of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
TESTBED = [sys.executable, "-m", "embedded.cli"]
TRAIN = """\
import os, pathlib
from mypkg.greet import GREETING
data = pathlib.Path(os.environ["TESTBED_DATA_PATH"], "greeting.txt").read_text().strip()
out = pathlib.Path(os.environ["TESTBED_STORAGE_PATH"])
out.mkdir(parents=True, exist_ok=True)
(out / "ckpt.txt").write_text("epoch=1")
print(f"{GREETING} | data says: {data}")
"""


def cli(local_testbed, cwd: Path, tenant: str, *args: str) -> subprocess.CompletedProcess:
    env = {**local_testbed.env(), "TESTBED_TOKEN": local_testbed.tokens[tenant]}
    result = subprocess.run([*TESTBED, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_code_and_data_travel_from_the_companys_own_folder(local_testbed, tmp_path):
    laptop = tmp_path / "laptop"  # the company's machine: nothing here is the control plane's
    code = laptop / "mycode"
    (code / "mypkg").mkdir(parents=True)
    (code / "mypkg" / "__init__.py").write_text("")
    (code / "mypkg" / "greet.py").write_text("GREETING = 'hello from an uploaded package'\n")
    (code / "train.py").write_text(TRAIN)
    (code / ".git").mkdir()
    (code / ".git" / "big").write_bytes(b"\0" * 1000)  # left out of the package
    (laptop / "greeting.txt").write_text("sensor data of changwon\n")

    uploaded = cli(local_testbed, laptop, ALICE, "data", "upload", "greeting.txt", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["name"] == "greeting.txt"

    submitted = cli(
        local_testbed,
        laptop,
        ALICE,
        "submit",
        "--working-dir",
        "mycode",
        "--wait",
        "--json",
        "--",
        "python",
        "train.py",
    )
    job = json.loads(submitted.stdout)
    logs = local_testbed.client(ALICE).logs(job["id"]).logs
    assert submitted.returncode == 0 and job["status"] == "SUCCEEDED", logs + submitted.stderr
    assert "hello from an uploaded package | data says: sensor data of changwon" in logs

    again = cli(local_testbed, laptop, ALICE, "submit", "--working-dir", "mycode", "--", "python", "train.py")
    assert again.returncode == 0 and "already stored)" in again.stderr, again.stderr  # the same zip, not resent
    assert len(list((local_testbed.home / "storage" / ALICE / "packages").iterdir())) == 1

    outputs = cli(local_testbed, laptop, ALICE, "data", "ls", "--job", job["id"], "--json")
    assert [o["name"] for o in json.loads(outputs.stdout)["objects"]] == ["ckpt.txt"], outputs.stderr
    # Bob reaches none of it through the CLI: not the outputs, not the data
    for args, needle in (
        (("data", "ls", "--job", job["id"]), f"no job '{job['id']}'"),
        (("data", "get", "greeting.txt"), "no data 'greeting.txt'"),
        (("data", "rm", "greeting.txt"), "no data 'greeting.txt'"),
        (("data", "rm", "--job", job["id"]), f"no job '{job['id']}'"),
    ):
        refused = cli(local_testbed, laptop, BOB, *args)
        assert refused.returncode == 1 and "404 Not Found" in refused.stderr and needle in refused.stderr, (
            refused.stderr
        )
    assert json.loads(cli(local_testbed, laptop, BOB, "data", "ls", "--json").stdout)["objects"] == []
    assert not (laptop / "greeting.txt.part").exists()
    removed = cli(local_testbed, laptop, ALICE, "data", "rm", "--job", job["id"], "--json")
    assert json.loads(removed.stdout)["deleted"] == ["ckpt.txt"]
