"""`pulumi preview` of a real stack through the Automation API (needs the Pulumi CLI and credentials)."""

from __future__ import annotations

import os
import shutil

import pytest

from testbed.config import load_region, repo_root


def _skip_reason(region: str) -> str | None:
    if shutil.which("pulumi") is None:
        return "the Pulumi CLI is not installed"
    provider = load_region(region, repo_root()).cluster.provider
    if provider == "existing" and not os.environ.get("KUBECONFIG"):
        return "no KUBECONFIG for the existing cluster"
    if provider == "eks" and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        return "no AWS credentials (AWS_ACCESS_KEY_ID or AWS_PROFILE)"
    if not (os.environ.get("PULUMI_ACCESS_TOKEN") or os.environ.get("PULUMI_BACKEND_URL")):
        return "no Pulumi backend (PULUMI_ACCESS_TOKEN or PULUMI_BACKEND_URL)"
    return None


@pytest.mark.cloud
@pytest.mark.parametrize("region", [os.environ.get("TESTBED_PREVIEW_REGION", "jeonnam")])
def test_pulumi_preview(region):
    reason = _skip_reason(region)
    if reason:
        pytest.skip(f"cloud preview skipped: {reason}")
    from pulumi import automation as auto

    stack = auto.create_or_select_stack(stack_name=region, work_dir=str(repo_root()))
    if load_region(region, repo_root()).cluster.provider == "existing":
        with open(os.environ["KUBECONFIG"], encoding="utf-8") as f:
            stack.set_config("kubeconfig", auto.ConfigValue(value=f.read(), secret=True))
    result = stack.preview(policy_packs=[str(repo_root() / "infra" / "policy")], on_output=print)
    assert result.change_summary
