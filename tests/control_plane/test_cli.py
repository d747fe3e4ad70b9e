"""CLI errors are one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTBED = [sys.executable, "-m", "testbed.cli"]
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TESTBED_")}
    full_env.update(env or {})
    return subprocess.run([*TESTBED, *args], capture_output=True, text=True, env=full_env, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("testbed: error: ") and needle in lines[0], lines[0]


def test_no_token(tmp_path):
    result = run("jobs", "list", env={"TESTBED_HOME": str(tmp_path), "TESTBED_URL": "http://127.0.0.1:9"})
    assert_one_line_error(result, "no token")


def test_no_address(tmp_path):
    result = run("jobs", "list", env={"TESTBED_HOME": str(tmp_path), "TESTBED_TOKEN": "x"})
    assert_one_line_error(result, "no control plane address")


def test_unreachable_control_plane(tmp_path):
    result = run("jobs", "list", env={"TESTBED_HOME": str(tmp_path), "TESTBED_URL": "http://127.0.0.1:9", "TESTBED_TOKEN": "x"})
    assert_one_line_error(result, "cannot reach the control plane at http://127.0.0.1:9")


def test_errors_from_the_server_are_one_line(noop_plane):
    env = {"TESTBED_URL": noop_plane.url, "TESTBED_TOKEN": noop_plane.token("changwon-precision")}
    assert_one_line_error(run("jobs", "show", "job-nope", env=env), "404 Not Found: no job 'job-nope'")
    assert_one_line_error(run("submit", "--cpus", "99", "--", "true", env=env), "can never fit")
    assert_one_line_error(run("submit", "--template", "smoke", "--param", "epochs=x", env=env), "param 'epochs': Input should be a valid integer")
    assert_one_line_error(run("jobs", "list", env={**env, "TESTBED_TOKEN": "bad"}), "401 Unauthorized: invalid token")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["submit"], "nothing to run"),
        (["submit", "--param", "a=1", "--", "true"], "--param only applies with --template"),
        (["submit", "--template", "smoke", "--param", "novalue"], "must look like KEY=VALUE"),
        (["submit", "--working-dir", "/does/not/exist", "--", "true"], "is not a folder"),
        (["submit", "--memory", "lots", "--", "true"], "--memory"),
    ],
)
def test_local_argument_errors(args, needle):
    assert_one_line_error(run(*args, env={"TESTBED_URL": "http://127.0.0.1:9", "TESTBED_TOKEN": "x"}), needle)


def test_submit_json_prints_the_job(noop_plane):
    env = {"TESTBED_URL": noop_plane.url, "TESTBED_TOKEN": noop_plane.token("changwon-precision")}
    result = run("submit", "--json", "--cpus", "2", "--", "echo", "hi there", env=env)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["id"].startswith("job-") and job["cpus"] == 2.0 and job["entrypoint"] == "echo 'hi there'"
    plain = run("submit", "--", "true", env=env)
    assert plain.stdout.strip().startswith("job-") and len(plain.stdout.split()) == 1


def test_templates_list_json():
    templates = json.loads(run("templates", "list", "--json").stdout)["templates"]
    assert {"name", "kind", "params"} <= set(templates[0])
    assert "smoke" in {t["name"] for t in templates}
