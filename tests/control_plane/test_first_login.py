"""First login in a cluster: the control plane knows only the SHA-256 of the operator token the stack generated
(settings ``operator_token_sha256``); with that token the platform engineer issues each company's token against
the control plane's URL, with no local state (``testbed tenants token ID --rotate --url URL --token TOKEN``)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import httpx
import pytest

from operators.control_plane.app import create_app
from tests.serve import serve_in_thread
from operators.control_plane.db.store import Store
from embedded.cli import main as cli
from testbed.client import TestbedClient, TestbedError
from testbed.config import stack_file_for
from testbed.settings import ControlPlaneSettings, token_sha256

REGION, TENANT = "gyeongnam", "changwon-precision"


def cluster_settings(home: Path, operator_token: str) -> ControlPlaneSettings:
    """Settings as infra renders them for a cluster: no credentials folder, the operator token's hash only."""
    return ControlPlaneSettings(
        stack_file=stack_file_for(REGION),
        database_url=f"sqlite:///{home / 'cp.db'}",
        backend="noop",
        mlflow_tracking_uri="http://127.0.0.1:1",
        storage_path=str(home / "storage"),
        operator_token_sha256=token_sha256(operator_token),
    )


def stack_token() -> str:
    return secrets.token_urlsafe(32)  # what pulumi_random's 43-character password stands for


@pytest.fixture()
def no_local_state(tmp_path, monkeypatch) -> Path:
    """A platform engineer's machine: no local testbed, no TESTBED_URL/TESTBED_TOKEN."""
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("TESTBED_URL", raising=False)
    monkeypatch.delenv("TESTBED_TOKEN", raising=False)
    return tmp_path


def test_settings_refuse_anything_but_a_sha256():
    with pytest.raises(ValueError, match="operator_token_sha256"):
        ControlPlaneSettings(
            stack_file="x",
            database_url="sqlite://",
            mlflow_tracking_uri="m",
            storage_path="s",
            operator_token_sha256="tbt_a-clear-token",
        )


def test_the_stack_token_is_the_operator_and_issues_company_tokens(no_local_state, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    home, token = no_local_state, stack_token()
    app = create_app(cluster_settings(home, token))
    assert not (home / "credentials").exists()  # nothing issued into files in a cluster
    with serve_in_thread(app) as url:
        operator = TestbedClient(url, token)
        assert {t.id for t in operator.tenants().tenants} >= {TENANT}  # the operator's view: every tenant
        # The platform engineer's first steps, with no local state: issue the company's token ...
        assert cli(["tenants", "token", TENANT, "--rotate", "--url", url, "--token", token]) == 0
        company = capsys.readouterr().out.strip()
        assert company and company != token
        # ... which the company uses for its first job and its list.
        assert cli(["submit", "--url", url, "--token", company, "--", "python", "-c", "print(1)"]) == 0
        job_id = capsys.readouterr().out.split()[0]
        assert cli(["jobs", "list", "--url", url, "--token", company]) == 0
        assert job_id in capsys.readouterr().out
        # Rotating again: the previous company token stops working.
        assert cli(["tenants", "token", TENANT, "--rotate", "--url", url, "--token", token]) == 0
        assert capsys.readouterr().out.strip() != company
        with pytest.raises(TestbedError) as err:
            TestbedClient(url, company).list_jobs()
        assert err.value.status_code == 401
        # The operator token is the stack's: rotating it through the API would be undone at the next start.
        with pytest.raises(TestbedError) as err:
            operator.rotate_token("operator")
        assert err.value.status_code == 403 and "pulumi" in err.value.detail
        # Without --rotate there is nothing to read back: the control plane keeps hashes only.
        assert cli(["tenants", "token", TENANT, "--url", url]) == 1
        assert "--rotate" in capsys.readouterr().err
    assert token not in caplog.text and token_sha256(token) not in caplog.text


def test_a_new_stack_token_replaces_the_old_one_at_start(tmp_path):
    first, second = stack_token(), stack_token()
    for token in (first, first, second):  # a restart with the same token writes nothing new
        app = create_app(cluster_settings(tmp_path, token), sync=False)
        app.state.plane.shutdown()
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        assert store.find_token(token_sha256(first)) is None
        installed = store.find_token(token_sha256(second))
        assert installed is not None and (installed.subject, installed.role) == ("operator", "operator")
    finally:
        store.close()
    with serve_in_thread(create_app(cluster_settings(tmp_path, second))) as url:
        with pytest.raises(TestbedError) as err:
            TestbedClient(url, first).tenants()
        assert err.value.status_code == 401
        assert TestbedClient(url, second).rotate_token(TENANT).subject == TENANT


def test_the_monitoring_token_reads_metrics_and_nothing_else(no_local_state):
    """Prometheus's token (settings ``monitoring_token_sha256``): /metrics answers, every tenant's data does not."""
    home, operator_token, monitoring_token = no_local_state, stack_token(), stack_token()
    settings = cluster_settings(home, operator_token).model_copy(
        update={"monitoring_token_sha256": token_sha256(monitoring_token)}
    )
    with serve_in_thread(create_app(settings)) as url:
        company_token = TestbedClient(url, operator_token).rotate_token(TENANT).token
        TestbedClient(url, company_token).submit({"entrypoint": "true"})
        monitoring = TestbedClient(url, monitoring_token)
        scrape = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {monitoring_token}"})
        assert scrape.status_code == 200 and "testbed_" in scrape.text
        assert monitoring.list_jobs().jobs == []  # it sees no tenant's jobs
        assert {t.id for t in monitoring.tenants().tenants} == set()
        with pytest.raises(TestbedError) as err:
            monitoring.rotate_token(TENANT)
        assert err.value.status_code == 403
        with pytest.raises(TestbedError) as err:
            monitoring.submit({"entrypoint": "true"})
        assert err.value.status_code == 403
        with pytest.raises(TestbedError) as err:
            monitoring.rotate_token("monitoring")
        assert err.value.status_code == 403
