"""kube-prometheus-stack, the testbed's alert rules and its Grafana dashboard."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra import stack as stack_config
from infra.addons.helm import namespace, release
from infra.k8s import child, custom_resource, meta
from infra.naming import MONITORING_NS, labels, service_url
from infra.storage import password
from testbed.kube import JOB_ID_LABEL, TENANT_LABEL
from testbed.versions import MONITORING_API
from testbed.config import StackConfig, repo_root

RULES_FILE = repo_root() / "operators" / "metering" / "rules.yaml"
DASHBOARD_FILE = repo_root() / "operators" / "metering" / "dashboard.json"
RELEASE = "kube-prometheus-stack"
FULLNAME = "kps"  # the chart's own objects: kps-prometheus, kps-alertmanager, kps-operator
# The grafana subchart (grafana-12.11.1) names its Service "<release>-grafana"; its values.yaml declares no
# fullnameOverride, so the stack keeps that default name (tests/infra/test_helm_values.py).
GRAFANA_SERVICE = f"{RELEASE}-grafana"
GRAFANA_SECRET = "grafana-admin"


def read_rules(path: Path = RULES_FILE) -> dict:
    """The metering rule file (a Prometheus rule file with ``groups:``) as a PrometheusRule spec."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
        raise pulumi.RunError(f"{path}: groups: a Prometheus rule file needs a 'groups:' list")
    return {"groups": document["groups"]}


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana (ClusterIP), plus the testbed's rules and dashboard."""

    def __init__(self, name: str, stack: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:Monitoring", name, None, opts)
        ns = namespace(MONITORING_NS, self, privileged=True)  # node-exporter needs host access
        admin = (
            stack_config.secret(stack.platform.grafana_admin_secret)
            if stack.platform.grafana_admin_secret
            else password(f"{name}-grafana", self).result
        )
        grafana_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=meta(GRAFANA_SECRET, ns.metadata.name, labels("grafana")),
            type="Opaque",
            string_data={"admin-user": "admin", "admin-password": admin},
            opts=child(self),
        )
        self.release = release(
            RELEASE,
            self,
            ns.metadata.name,
            {
                "fullnameOverride": FULLNAME,
                "prometheus": {
                    "prometheusSpec": {
                        # Pick up every ServiceMonitor and PrometheusRule, not only the chart's own.
                        "serviceMonitorSelectorNilUsesHelmValues": False,
                        "podMonitorSelectorNilUsesHelmValues": False,
                        "ruleSelectorNilUsesHelmValues": False,
                        "externalLabels": {"region": stack.region.id},
                        "retention": "30d",
                    }
                },
                # kube_pod_labels carries the job's pod labels, which the idle-GPU rules join DCGM utilisation on.
                "kube-state-metrics": {"metricLabelsAllowlist": [f"pods=[{JOB_ID_LABEL},{TENANT_LABEL}]"]},
                "grafana": {
                    "admin": {
                        "existingSecret": GRAFANA_SECRET,
                        "userKey": "admin-user",
                        "passwordKey": "admin-password",
                    },
                    "service": {"type": "ClusterIP"},
                    "sidecar": {
                        "dashboards": {
                            "enabled": True,
                            "label": "grafana_dashboard",
                            "labelValue": "1",
                            "searchNamespace": "ALL",
                        }
                    },
                },
            },
            depends_on=[grafana_secret],
        )
        self.rules = custom_resource(
            f"{name}-testbed-rules",
            self,
            MONITORING_API,
            "PrometheusRule",
            meta("testbed", ns.metadata.name, labels("testbed-rules")),
            read_rules(),
            crds_from=[self.release],
        )
        self.dashboard = k8s.core.v1.ConfigMap(
            f"{name}-testbed-dashboard",
            metadata=meta(
                "testbed-dashboard", ns.metadata.name, {**labels("testbed-dashboard"), "grafana_dashboard": "1"}
            ),
            data={"testbed.json": DASHBOARD_FILE.read_text(encoding="utf-8")},
            opts=child(self),
        )
        self.grafana_url = service_url(GRAFANA_SERVICE, MONITORING_NS, 80)
        self.prometheus_url = service_url(f"{FULLNAME}-prometheus", MONITORING_NS, 9090)
        self.register_outputs({"grafana_url": self.grafana_url, "prometheus_url": self.prometheus_url})
