"""The API contract as a test: a bounded schemathesis run with every check (response schemas,
status codes, headers, positive and negative data, auth, stateful links) against a real control
plane on the no-op backend, over HTTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

ALICE = "changwon-precision"
MAX_EXAMPLES = 30  # per operation and phase; with a fixed seed the run takes 10-20 s on 2 cores
# 413 is a documented answer to any body over its route's limit, valid or not (64 env values of 4 KiB are a valid
# spec and a 256 KiB body): schemathesis counts it as neither acceptance nor rejection unless told.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]

# What no JSON schema can say, answered 422 naming the field: a listing prefix holds no `..` part, leading `/`,
# backslash or control character; a template's data parameter (its params are typed per template, at run time)
# is testbed-data://NAME or a URI inside the tenant's own prefix.
[[operations]]
include-path-regex = '^/v1/(data|jobs|jobs/quote|jobs/\\{job_id\\}/outputs)$'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx"]
"""


def schemathesis(url: str, token: str, cwd, *extra: str) -> subprocess.CompletedProcess:
    """``st run`` over the served OpenAPI document; its report is the assertion message."""
    (cwd / "schemathesis.toml").write_text(CONFIG)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(cwd / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "-H",
            f"Authorization: Bearer {token}",
            *extra,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.integration  # starts a real process
def test_every_operation_keeps_its_openapi_contract(noop_plane, tmp_path):
    tenant = schemathesis(noop_plane.url, noop_plane.token(ALICE), tmp_path)
    assert tenant.returncode == 0, tenant.stdout[-6000:] + tenant.stderr[-2000:]
    # every operation the served document declares (the portal's pages are not in it) was tested
    spec = httpx.get(f"{noop_plane.url}/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert operations >= 30 and f"{operations} selected / {operations} total" in tenant.stdout
    # /metrics answers the operator token only: its 200 (text exposition) is checked with that token
    operator = schemathesis(noop_plane.url, noop_plane.token("operator"), tmp_path, "--include-path", "/metrics")
    assert operator.returncode == 0, operator.stdout[-6000:] + operator.stderr[-2000:]


def test_validation_errors_are_documented_as_the_error_body(noop_plane):
    spec = httpx.get(noop_plane.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 shape is never answered
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }, (method, path, status)
