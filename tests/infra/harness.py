"""Run the region program under Pulumi mocks (shared by tests/infra and the benchmarks).

Built on Pulumi's public unit-test API: ``pulumi.runtime.Mocks`` answers resource registrations
and provider calls, ``pulumi.runtime.set_mocks`` installs them, ``pulumi.runtime.set_all_config``
passes the stack file's config and ``@pulumi.runtime.test`` runs the program and waits for every
output. Each run is a fresh runtime (``pulumi.runtime.reset_options`` forgets the previous run's
root stack and settings; ``set_mocks`` then creates a new root stack), so nothing leaks into the
next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
import yaml

from testbed.config import REGIONS, stack_file_for
from tests.stack_files import REAL_STACK_DIR

PROJECT = "regional-ai-testbed"
FAKE_KUBECONFIG = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "mock",
        "clusters": [{"name": "mock", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "mock"}}],
        "users": [{"name": "mock", "user": {"token": "mock-token"}}],
    }
)


@dataclass
class Registered:
    """One resource the program registered: its type token, logical name and inputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    provider: str = ""  # the provider reference (urn::id) a custom resource uses

    @property
    def urn(self) -> str:
        return f"urn:pulumi:mock::{PROJECT}::{self.type}::{self.name}"

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


@dataclass
class StackRun:
    """The result of one mocked program run."""

    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    warnings: list[str]
    seconds: float

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def objects(self, type_token: str) -> dict[str, dict[str, Any]]:
        """Inputs of the objects of a type keyed by metadata.name (``namespace/name`` when namespaced)."""
        result = {}
        for r in self.of_type(type_token):
            meta = r.inputs.get("metadata") or {}
            key = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", r.name)
            result[key] = r.inputs
        return result

    def kubernetes_objects(self) -> list[Registered]:
        """Every Kubernetes object (built-in or custom), excluding Helm releases and providers."""
        return [r for r in self.resources if r.type.startswith("kubernetes:") and "apiVersion" in r.inputs]

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


# Pulumi's wire signature of a secret value. MockResourceArgs.inputs still hold secrets as these
# envelopes and the SDK has no public call to unwrap them (its own constant is private), so the
# harness names it once here.
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secrets(value: Any) -> Any:
    """Replace secret envelopes in mocked inputs by their plain values (as a provider sees them)."""
    if isinstance(value, dict):
        if SECRET_SIG in value.values() and "value" in value:
            return unwrap_secrets(value["value"])
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


class TestbedMocks(pulumi.runtime.Mocks):
    """Plausible provider outputs: ids, ARNs, endpoints, generated passwords, cluster IPs."""

    def __init__(self) -> None:
        self.registered: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = unwrap_secrets(dict(args.inputs))
        outputs = dict(inputs)
        name, typ = args.name, args.typ
        if typ.startswith("aws:"):
            outputs.setdefault("arn", f"arn:aws:mock:ap-northeast-2:123456789012:{typ.rsplit(':', 1)[-1]}/{name}")
        if typ == "aws:eks/cluster:Cluster":
            outputs.update(
                endpoint=f"https://{name}.gr7.ap-northeast-2.eks.amazonaws.com",
                certificateAuthority={"data": "bW9jay1jYQ=="},
                status="ACTIVE",
            )
        elif typ == "aws:iam/role:Role":
            outputs.setdefault("name", name)
        elif typ == "aws:s3/bucket:Bucket":
            outputs["bucket"] = f"{inputs.get('bucketPrefix', name)}mock0001"
        elif typ == "aws:rds/instance:Instance":
            outputs.update(address=f"{name}.mock.ap-northeast-2.rds.amazonaws.com", port=5432)
        elif typ == "aws:rds/subnetGroup:SubnetGroup":
            outputs.setdefault("name", name)
        elif typ == "aws:ecr/repository:Repository":
            outputs.update(
                registryId="123456789012",
                repositoryUrl=f"123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/{inputs.get('name', name)}",
            )
        elif typ == "docker-build:index:Image":  # a pushed build: its digest follows its inputs
            outputs["digest"] = (
                "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
            )
            outputs["ref"] = f"{(inputs.get('tags') or [name])[0]}@{outputs['digest']}"
        elif typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"mock-password-{name}"
        elif typ == "kubernetes:core/v1:Service":
            spec = dict(outputs.get("spec") or {})
            spec.setdefault("clusterIP", "10.100.0.10")
            outputs["spec"] = spec
        self.registered.append(Registered(typ, name, inputs, bool(args.custom), outputs, args.provider or ""))
        return f"{name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = [f"ap-northeast-2{c}" for c in "abcd"]
            return {"names": zones, "zoneIds": [f"apne2-az{i}" for i in range(1, 5)], "id": "ap-northeast-2"}, []
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": "mock-ecr-token",
                "authorizationToken": "QVdTOm1vY2stZWNyLXRva2Vu",
                "proxyEndpoint": "https://123456789012.dkr.ecr.ap-northeast-2.amazonaws.com",
                "expiresAt": "2026-12-01T00:00:00Z",
                "id": "123456789012",
            }, []
        return {}, []


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def stack_config(document: dict[str, Any]) -> dict[str, str]:
    """A stack file's ``config:`` as Pulumi passes it to programs (JSON strings, namespaced keys)."""
    config = {}
    for key, value in (document.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        config[full] = value if isinstance(value, str) else json.dumps(value)
    return config


def load_stack_document(region: str) -> dict[str, Any]:
    return yaml.safe_load(stack_file_for(region, REAL_STACK_DIR).read_text(encoding="utf-8"))


def run_program(
    stack: str, config: dict[str, str], secrets: dict[str, str] | None = None, program: Callable[[], None] | None = None
) -> StackRun:
    """Run ``program`` (default: the region program) once under fresh mocks and return what it built."""
    from infra.program import main

    secrets = {(k if ":" in k else f"{PROJECT}:{k}"): v for k, v in (secrets or {}).items()}
    mocks, collect = TestbedMocks(), _Collect()
    logger = logging.getLogger(f"testbed.infra.mock.{stack}")
    logger.handlers[:] = [collect]
    logger.propagate = False
    resolved: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    async def resolve_stack_outputs() -> None:
        # The one non-public read: the exports sit on the root Stack resource (``Stack.outputs``).
        # Pulumi's MockMonitor drops RegisterResourceOutputs, and the root stack set_mocks creates
        # registers its (then empty) outputs before the program runs, so the monitor never sees them.
        exports = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        for key, value in exports.items():
            output = pulumi.Output.from_input(value)
            resolved[key] = await output.future()
            if await output.is_secret():
                secret_outputs.add(key)

    @pulumi.runtime.test
    def run() -> pulumi.Output[None]:
        (program or main)()
        return pulumi.Output.from_input(resolve_stack_outputs())

    pulumi.runtime.reset_options(project=PROJECT, stack=stack)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger)
    pulumi.runtime.set_all_config({**config, **secrets}, secret_keys=list(secrets))
    started = time.perf_counter()
    try:
        run()
    finally:
        pulumi.runtime.reset_options()
        pulumi.runtime.set_all_config({}, secret_keys=[])
    return StackRun(stack, mocks.registered, resolved, secret_outputs, collect.messages, time.perf_counter() - started)


def run_region(region: str, document: dict[str, Any] | None = None) -> StackRun:
    """Run a region's stack from its ``Pulumi.<region>.yaml`` (or a given document)."""
    document = document if document is not None else load_stack_document(region)
    secrets = {}
    cluster = (document.get("config") or {}).get("testbed:cluster") or {}
    if cluster.get("provider") == "existing" and cluster.get("kubeconfig_secret"):
        secrets[cluster["kubeconfig_secret"]] = FAKE_KUBECONFIG
    return run_program(region, stack_config(document), secrets)


def all_regions() -> tuple[str, ...]:
    return REGIONS


def generated_tenants_document(region: str, count: int) -> dict[str, Any]:
    """A region's stack file with ``count`` generated (fictional) tenants spread over its pools."""
    document = load_stack_document(region)
    config = document["config"]
    pools = [p["name"] for p in config["testbed:nodePools"]]
    config["testbed:tenants"] = [
        {
            "id": f"sample-company-{i:03d}",
            "name": f"Sample Company {i:03d} (sample)",
            "industry": "manufacturing",
            "sample": True,
            "gpu_pool": pools[i % len(pools)],
            "grant": {"gpu_hours": 100, "start": "2026-03-01", "end": "2027-02-28"},
            "quota": {"cpus": 4, "gpus": 1, "memory": "16Gi", "max_running_jobs": 2},
        }
        for i in range(count)
    ]
    return document


def stack_path(region: str) -> Path:
    return stack_file_for(region, REAL_STACK_DIR)


def policy_violations(resources: list[Registered]) -> list[tuple[str, str]]:
    """Run the policy pack's validations over mocked resources; returns (policy, message) pairs.

    The args objects are built the way the Pulumi engine fills them: inputs as ``props``.
    """
    from pulumi_policy import (
        PolicyCustomTimeouts,
        PolicyResource,
        PolicyResourceOptions,
        ResourceValidationArgs,
        StackValidationArgs,
    )

    from infra.policy.policies import RESOURCE_CHECKS, STACK_CHECKS

    violations: list[tuple[str, str]] = []
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])

    def reporter(policy: str):
        return lambda message, urn=None: violations.append((policy, message))

    for r in resources:
        args = ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, options, None)
        for check in RESOURCE_CHECKS:
            check(args, reporter(check.__name__))
    stack_args = StackValidationArgs(
        [PolicyResource(r.type, r.inputs, r.urn, r.name, options, None, None, [], {}) for r in resources]
    )
    for check in STACK_CHECKS:
        check(stack_args, reporter(check.__name__))
    return violations


def schema_version(kubernetes_version: str) -> str:
    """The kubernetes-validate schema version nearest to a stack's Kubernetes version ('1.33' -> '1.33.0')."""
    from kubernetes_validate.utils import all_versions
    from packaging.version import Version

    available = sorted(set(all_versions()), key=Version)
    wanted = Version(kubernetes_version)
    not_newer = [v for v in available if Version(v) <= Version(f"{wanted.major}.{wanted.minor}.999")]
    return not_newer[-1] if not_newer else available[0]


BUILTIN_API_GROUPS = (
    "core/",
    "apps/",
    "batch/",
    "rbac.authorization.k8s.io/",
    "networking.k8s.io/",
    "policy/",
    "autoscaling/",
    "storage.k8s.io/",
    "scheduling.k8s.io/",
)


def is_builtin(resource: Registered) -> bool:
    """A built-in Kubernetes kind (validated against the official schema) rather than a CRD."""
    return resource.type.startswith("kubernetes:") and resource.type.split(":", 2)[1].startswith(BUILTIN_API_GROUPS)


def config_error(region: str, edit: Callable[[dict[str, Any]], Any]) -> str:
    """The error a region's program stops with after ``edit`` changed its stack file's ``config``."""
    import pytest

    document = load_stack_document(region)
    edit(document["config"])
    with pytest.raises(pulumi.RunError) as info:
        run_region(region, document)
    return str(info.value)
