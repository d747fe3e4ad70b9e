"""A wrong stack value stops the program with the key path and the reason, without a traceback."""

from __future__ import annotations

import pulumi
import pytest

from tests.infra.harness import config_error, load_stack_document, run_program, run_region, stack_config


def test_bad_quota_names_key_path_and_reason():
    message = config_error("gyeongnam", lambda c: c["testbed:tenants"][1]["quota"].update(gpus=-2))
    assert "Pulumi.gyeongnam.yaml: config.testbed:tenants[1].quota.gpus:" in message
    assert "greater than or equal to 0" in message


def test_unknown_pool_and_bad_provider():
    message = config_error("daegu", lambda c: c["testbed:cluster"].update(provider="gke-autopilot"))
    assert "config.testbed:cluster.provider:" in message and "gke-autopilot" in message
    message = config_error("ulsan", lambda c: c["testbed:tenants"][0].update(gpu_pool="h100-pool"))
    assert "Pulumi.ulsan.yaml: config" in message and "h100-pool" in message


def test_bad_taint_syntax():
    message = config_error("jeju", lambda c: c["testbed:nodePools"][0].update(taints=["nvidia.com/gpu"]))
    assert "config.testbed:nodePools[0].taints:" in message


def test_missing_kubeconfig_secret_is_named():
    document = load_stack_document("jeonnam")
    with pytest.raises(pulumi.RunError) as info:
        run_program("jeonnam", stack_config(document))  # no secret set
    assert "config.regional-ai-testbed:kubeconfig: is required but missing" in str(info.value)


def test_a_failed_run_does_not_leak_into_the_next():
    config_error("jeju", lambda c: c["testbed:region"].update(id="busan"))
    assert run_region("jeju").outputs["region"] == "jeju"
