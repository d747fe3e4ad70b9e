"""The program office's read-only token in a cluster: a secret stack output; only its hash reaches the control
plane, which also learns where Prometheus is (idle GPUs); the monitoring values join DCGM to jobs."""

from __future__ import annotations

import json

from infra.naming import CONTROL_PLANE, PLATFORM_NS
from testbed.kube import JOB_ID_LABEL, TENANT_LABEL
from testbed.settings import ControlPlaneSettings, token_sha256


def test_program_office_token_is_a_secret_output_and_only_its_hash_reaches_the_control_plane(runs):
    for region, run in runs.items():
        token = run.outputs["program_office_token"]
        assert "program_office_token" in run.secret_outputs, region
        [generated] = [
            r
            for r in run.of_type("random:index/randomPassword:RandomPassword")
            if r.name.endswith("-program-office-token")
        ]
        assert generated.inputs["length"] >= 43 and generated.inputs["special"] is False
        assert token == generated.outputs["result"] != run.outputs["operator_token"]
        text = run.objects("kubernetes:core/v1:Secret")[f"{PLATFORM_NS}/{CONTROL_PLANE}-settings"]["stringData"][
            "settings.json"
        ]
        settings = ControlPlaneSettings.model_validate(json.loads(text))
        assert settings.program_office_token_sha256 == token_sha256(token)
        assert token not in text
        everything_else = json.dumps([r.inputs for r in run.resources if r is not generated])
        assert token not in everything_else, f"{region}: the clear program-office token is in some resource's inputs"
        assert settings.prometheus_url and settings.prometheus_url.startswith("http://kps-prometheus."), (
            settings.prometheus_url
        )


def test_monitoring_joins_dcgm_utilisation_to_job_pods(runs):
    for region, run in runs.items():
        releases = {r.inputs.get("name") or r.name: r for r in run.of_type("kubernetes:helm.sh/v3:Release")}
        kps = next(r for name, r in releases.items() if "kube-prometheus-stack" in name)
        allow = kps.inputs["values"]["kube-state-metrics"]["metricLabelsAllowlist"]
        assert allow == [f"pods=[{JOB_ID_LABEL},{TENANT_LABEL}]"], region
        gpu = next(r for name, r in releases.items() if "gpu-operator" in name)
        assert gpu.inputs["values"]["dcgmExporter"]["serviceMonitor"]["honorLabels"] is True
