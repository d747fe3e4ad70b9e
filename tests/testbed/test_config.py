"""Stack files: the five regions load; a bad file names the file, the key path and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.config import REGIONS, ConfigError, load_region, load_stack_file, stack_file_for
from tests.stack_files import REAL_STACK_DIR

from testbed.quantities import parse_memory


@pytest.mark.parametrize("region", REGIONS)
def test_every_region_loads_with_sample_tenants(region):
    stack = load_region(region, REAL_STACK_DIR)
    assert stack.region.id == region
    assert len(stack.tenants) >= 4
    assert all(t.sample and "(sample)" in t.name for t in stack.tenants)
    assert all(stack.pool_for(t).gpu_model for t in stack.tenants)


def write(tmp_path: Path, edit, region: str = "jeju") -> Path:
    document = yaml.safe_load(stack_file_for(region, REAL_STACK_DIR).read_text())
    edit(document["config"])
    path = tmp_path / f"Pulumi.{region}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("edit", "path", "reason"),
    [
        (
            lambda c: c["testbed:tenants"][1]["grant"].update(gpu_hours=-5),
            "config.testbed:tenants[1].grant.gpu_hours",
            "greater than 0 (got -5)",
        ),
        (
            lambda c: c["testbed:tenants"][0]["grant"].update(end="2026-01-01"),
            "config.testbed:tenants[0].grant",
            "is not after its start",
        ),
        (
            lambda c: c["testbed:tenants"][2]["quota"].update(memory="lots"),
            "config.testbed:tenants[2].quota.memory",
            "memory must be a quantity",
        ),
        (lambda c: c["testbed:tenants"][0].pop("quota"), "config.testbed:tenants[0].quota", "is required but missing"),
        (
            lambda c: c["testbed:tenants"][0].update(colour="red"),
            "config.testbed:tenants[0].colour",
            "is not a known key",
        ),
        (
            lambda c: c["testbed:tenants"][1].update(id=c["testbed:tenants"][0]["id"]),
            "config.testbed:tenants",
            "duplicate tenant id",
        ),
        (
            lambda c: c["testbed:tenants"][3].update(gpu_pool="h100-pool"),
            "config.testbed:tenants",
            "[3].gpu_pool 'h100-pool'",
        ),
        (lambda c: c["testbed:nodePools"][0].update(min_size=9), "config.testbed:nodePools[0]", "min_size 9 is larger"),
        (lambda c: c["testbed:cluster"].update(provider="gke"), "config.testbed:cluster.provider", "'gke'"),
        (lambda c: c.update({"testbed:tenantz": []}), "config.testbed:tenantz", "is not a known key"),
        (lambda c: c["testbed:region"].update(id="daegu"), "config.testbed:region.id", "the file is for stack 'jeju'"),
    ],
)
def test_errors_name_file_key_path_and_reason(tmp_path, edit, path, reason):
    bad = write(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_stack_file(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}: {path}"), message
    assert reason in message, message


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"Pulumi.nowhere.yaml: \(file\): no such file"):
        load_stack_file(tmp_path / "Pulumi.nowhere.yaml")
    broken = tmp_path / "Pulumi.jeju.yaml"
    broken.write_text("config:\n  testbed:region: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+: is not valid YAML"):
        load_stack_file(broken)
    broken.write_text("just text\n")
    with pytest.raises(ConfigError, match="needs a 'config:' mapping"):
        load_stack_file(broken)


@pytest.mark.parametrize(
    ("text", "value"), [("64Gi", 64 * 2**30), ("512Mi", 512 * 2**20), ("2G", 2 * 10**9), (1024, 1024)]
)
def test_memory_quantities(text, value):
    assert parse_memory(text) == value


@pytest.mark.integration  # starts a real process
def test_cli_validate_reports_every_problem_and_exits_nonzero(tmp_path):
    good = str(stack_file_for("gyeongnam", REAL_STACK_DIR))
    bad = write(
        tmp_path,
        lambda c: (
            c["testbed:tenants"][0]["quota"].update(cpus=0),
            c["testbed:tenants"][1]["grant"].update(gpu_hours="many"),
        ),
    )
    result = subprocess.run(
        [sys.executable, "-m", "embedded.cli", "config", "validate", good, str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{good}: ok (region gyeongnam" in result.stdout
    assert (
        f"{bad}: config.testbed:tenants[0].quota.cpus: Input should be greater than or equal to 1 (got 0)"
        in result.stderr
    )
    assert f"{bad}: config.testbed:tenants[1].grant.gpu_hours:" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "embedded.cli", "config", "validate", "--json", good],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and '"valid": true' in ok.stdout
