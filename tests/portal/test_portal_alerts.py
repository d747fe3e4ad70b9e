"""The operator's overview lists the alerts a real Prometheus is firing (and says when it cannot reach it)."""

from __future__ import annotations

import shutil

import httpx
import pytest
import yaml

from tests.portal.pages import login
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make system-deps)"),
]


def test_alerts_firing_come_from_prometheus(noop_plane, tmp_path):
    from tests.metering.prometheus import PrometheusServer

    rules = tmp_path / "portal-test-rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "portal-test",
                        "rules": [
                            {
                                "alert": "PortalTestAlwaysFiring",
                                "expr": "vector(1)",
                                "labels": {"tenant": "changwon-precision"},
                                "annotations": {"summary": "a test alert"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    operator = login(noop_plane.url, noop_plane.token("operator"))
    portal = noop_plane.app.state.portal
    assert "Prometheus 주소가 설정되어 있지 않습니다" in operator.get("/portal/operator").text
    server = PrometheusServer(
        shutil.which("prometheus"), tmp_path, noop_plane.url, "gyeongnam", noop_plane.token("operator")
    )
    server.config["rule_files"].append(str(rules))
    with server:
        wait_until(
            lambda: any(
                a["state"] == "firing" for a in httpx.get(server.url + "/api/v1/alerts").json()["data"]["alerts"]
            ),
            30,
            "an alert to fire",
        )
        portal.prometheus_url = server.url
        page = operator.get("/portal/operator").text
        assert "PortalTestAlwaysFiring" in page and "a test alert" in page
    assert "Prometheus에 연결할 수 없습니다" in operator.get("/portal/operator").text  # stopped: unreachable
