"""operators/metering/rules.yaml: valid, and its recording rules and alerts behave (promtool)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[1] / "operators" / "metering" / "rules.yaml"


def _promtool(promtool: str, *args: str, cwd: Path = HERE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_file_is_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", "rules_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_severity() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "rules_test.yaml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alerts) <= tested, f"alerts without a firing test: {set(alerts) - tested}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"], name
    expressions = " ".join(r["expr"] for r in alerts.values())
    assert "predict_linear" in " ".join(r["expr"] for g in groups for r in g["rules"])
    for threshold in (">= 0.5", ">= 0.8", ">= 1"):
        assert threshold in expressions
    assert "up{" in expressions
