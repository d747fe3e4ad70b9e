"""Validate custom objects against the vendored CustomResourceDefinitions (tests/upstream/), as an API server would.

For an object ``{"apiVersion": "<group>/<version>", "kind": ..., "metadata": ..., "spec": ...}`` the catalog
finds the CRD of that group and kind and reports, each problem naming its path:

- the version: defined by the CRD, served, the storage version, not deprecated;
- the scope: a namespaced kind needs ``metadata.namespace``, a cluster-scoped one must not have it;
- ``metadata``: only ObjectMeta fields, a DNS-1123 name, well-formed label keys and values, string annotations;
- the version's ``openAPIV3Schema`` (jsonschema, Draft 4 semantics as in OpenAPI v3), with the Kubernetes
  extensions: ``x-kubernetes-int-or-string`` (an integer or a string), ``nullable`` (null allowed),
  ``x-kubernetes-preserve-unknown-fields`` (unknown fields kept), ``x-kubernetes-embedded-resource``
  (``apiVersion``, ``kind`` and ``metadata`` allowed), ``x-kubernetes-list-type: map|set`` (unique keys/items);
- pruning: any field the structural schema does not name, outside ``x-kubernetes-preserve-unknown-fields``,
  is an error ("an API server would prune it"), since it silently disappears on ``kubectl apply``.

Not evaluated: CEL rules (``x-kubernetes-validations``) and string ``format`` checks. :meth:`CrdCatalog.cel_rules`
lists the CEL rules that apply to an object's fields so tests can check their meaning explicitly.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from jsonschema import Draft4Validator

UPSTREAM = Path(__file__).resolve().parents[1] / "upstream"
# Chart key of testbed/versions.py -> its folder under tests/upstream/ ({v}: the chart version without a leading "v").
CHART_FOLDERS = {
    "kueue": "kueue-v{v}",
    "kuberay-operator": "kuberay-v{v}",
    "kube-prometheus-stack": "kube-prometheus-stack-{v}",
    "gpu-operator": "gpu-operator-v{v}",
    "cluster-autoscaler": "cluster-autoscaler-{v}",
}


def chart_folder(key: str, version: str) -> Path:
    """The vendored folder of chart ``key`` at ``version`` (CRDs and/or the chart's values.yaml)."""
    return UPSTREAM / CHART_FOLDERS[key].format(v=version.removeprefix("v"))


OBJECT_META_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CrdValidationError(AssertionError):
    """An object an API server would reject or silently change; ``problems`` name each path."""

    def __init__(self, what: str, problems: list[str]):
        super().__init__(f"{what}:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Crd:
    group: str
    kind: str
    scope: str  # Namespaced | Cluster
    versions: dict[str, dict]  # name -> the CRD's version entry (served, storage, deprecated, schema)
    source: Path

    @property
    def storage_version(self) -> str:
        return next(name for name, v in self.versions.items() if v.get("storage"))

    def schema(self, version: str) -> dict:
        return self.versions[version]["schema"]["openAPIV3Schema"]


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def to_json_schema(node: Any) -> Any:
    """A Kubernetes structural schema as a plain JSON schema (Draft 4) with the extensions spelled out."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "description", "default", "example"):
            continue
        else:
            out[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("allOf", []).append({"anyOf": [{"type": "integer"}, {"type": "string"}]})
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def metadata_problems(meta: Any, path: str, scope: str | None) -> list[str]:
    """ObjectMeta as the API server reads it (name, namespace by scope, labels, annotations, no unknown field)."""
    if not isinstance(meta, dict):
        return [f"{path}: must be an object"]
    problems = [
        f"{path}.{k}: unknown ObjectMeta field, an API server would prune it"
        for k in meta
        if k not in OBJECT_META_FIELDS
    ]
    name = meta.get("name")
    if scope is not None:  # a top-level object (embedded templates need no name)
        if not isinstance(name, str) or not name:
            problems.append(f"{path}.name: required")
        if scope == "Namespaced" and not meta.get("namespace"):
            problems.append(f"{path}.namespace: required for a namespaced kind")
        if scope == "Cluster" and meta.get("namespace"):
            problems.append(f"{path}.namespace: must be empty for a cluster-scoped kind")
    if isinstance(name, str) and name and (len(name) > 253 or not DNS_SUBDOMAIN.match(name)):
        problems.append(f"{path}.name: {name!r} is not a DNS-1123 subdomain")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = str(key).rpartition("/")
        if (
            (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)))
            or len(label) > 63
            or not LABEL_NAME.match(label)
        ):
            problems.append(f"{path}.labels: key {key!r} is not a valid label key")
        if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
            problems.append(f"{path}.labels.{key}: value {value!r} is not a valid label value")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            problems.append(f"{path}.annotations.{key}: must be a string")
    return problems


def pruned_fields(value: Any, schema: dict, path: list[Any]) -> Iterator[str]:
    """Fields an API server would drop: not in the structural schema and not under preserve-unknown-fields."""
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        for key, child in value.items():
            where = [*path, key]
            if props is not None and key in props:
                yield from pruned_fields(child, props[key], where)
            elif embedded and key in ("apiVersion", "kind"):
                continue
            elif embedded and key == "metadata":
                yield from metadata_problems(child, _path(where), None)
            elif isinstance(extra, dict):
                yield from pruned_fields(child, extra, where)
            elif extra is True or preserve:
                continue
            else:
                yield f"{_path(where)}: unknown field, an API server would prune it"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from pruned_fields(item, schema["items"], [*path, index])


def list_type_problems(value: Any, schema: dict, path: list[Any]) -> Iterator[str]:
    """``x-kubernetes-list-type``: ``map`` lists have unique map keys, ``set`` lists unique items."""
    if isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        if kind == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            for dup in sorted({k for k in seen if seen.count(k) > 1}, key=str):
                yield f"{_path(path)}: duplicate entries for map keys {dict(zip(keys, dup))}"
        elif kind == "set":
            reprs = [repr(item) for item in value]
            for dup in sorted({r for r in reprs if reprs.count(r) > 1}):
                yield f"{_path(path)}: duplicate set item {dup}"
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                yield from list_type_problems(item, schema["items"], [*path, index])
    elif isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for key, child in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub:
                yield from list_type_problems(child, sub, [*path, key])


@dataclass(frozen=True)
class CelRule:
    """A CEL rule (``x-kubernetes-validations``) on a node the object has, with that node's value."""

    path: str
    rule: str
    message: str
    value: Any = field(compare=False, hash=False)

    @property
    def transition(self) -> bool:
        """A transition rule (it compares with ``oldSelf``): an API server checks it on updates only."""
        return "oldSelf" in self.rule


def cel_rules_for(value: Any, schema: dict, path: list[Any]) -> Iterator[CelRule]:
    """Every CEL rule on a node the object has (not evaluated here)."""
    for rule in schema.get("x-kubernetes-validations") or []:
        yield CelRule(_path(path), rule.get("rule", ""), rule.get("message", ""), value)
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for key, child in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub:
                yield from cel_rules_for(child, sub, [*path, key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from cel_rules_for(item, schema["items"], [*path, index])


def crd_of(document: Any, source: Path) -> Crd | None:
    """The :class:`Crd` of a CustomResourceDefinition document (None for any other document)."""
    if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
        return None
    spec = document["spec"]
    return Crd(spec["group"], spec["names"]["kind"], spec["scope"], {v["name"]: v for v in spec["versions"]}, source)


class CrdCatalog:
    """The CRDs of some folders, found by API group and kind."""

    def __init__(self, crds: Iterable[Crd]):
        self.crds = {(c.group, c.kind): c for c in crds}
        self._validators: dict[tuple[str, str, str], Draft4Validator] = {}

    @classmethod
    def from_documents(cls, documents: Iterable[Any], source: Path = Path("<memory>")) -> "CrdCatalog":
        return cls(crd for crd in map(lambda d: crd_of(d, source), documents) if crd is not None)

    @classmethod
    def load(cls, *folders: Path) -> "CrdCatalog":
        """The CRDs in ``folders`` (default: every folder of tests/upstream/)."""
        crds = []
        for folder in folders or sorted(p for p in UPSTREAM.iterdir() if p.is_dir()):
            for path in sorted(Path(folder).glob("*.yaml")):
                text = path.read_text(encoding="utf-8")
                if "kind: CustomResourceDefinition" not in text:
                    continue  # e.g. a chart's values.yaml
                crds += [crd for crd in (crd_of(d, path) for d in yaml.load_all(text, Loader=_Loader)) if crd]
        return cls(crds)

    def crd_for(self, api_version: str, kind: str) -> Crd | None:
        group = api_version.rpartition("/")[0]
        return self.crds.get((group, kind))

    def _validator(self, crd: Crd, version: str) -> Draft4Validator:
        key = (crd.group, crd.kind, version)
        if key not in self._validators:
            schema = to_json_schema(crd.schema(version))
            schema.get("properties", {}).pop("metadata", None)  # ObjectMeta is checked on its own
            self._validators[key] = Draft4Validator(schema)
        return self._validators[key]

    def problems(self, obj: dict) -> list[str]:
        """Everything an API server would reject, warn about or prune in ``obj`` (empty when valid)."""
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        group, _, version = api_version.rpartition("/")
        if not group or not version:
            return [f"apiVersion: {api_version!r} is not '<group>/<version>'"]
        crd = self.crd_for(api_version, kind)
        if crd is None:
            return [
                f"kind: no CustomResourceDefinition for {kind} in group {group} "
                f"(known: {sorted(k for g, k in self.crds if g == group) or 'none'})"
            ]
        problems: list[str] = []
        entry = crd.versions.get(version)
        if entry is None:
            return [f"apiVersion: {crd.kind} has no version {version} (defines {sorted(crd.versions)})"]
        if not entry.get("served"):
            problems.append(f"apiVersion: {api_version} is not served")
        if not entry.get("storage"):
            problems.append(f"apiVersion: {api_version} is not the storage version ({group}/{crd.storage_version})")
        if entry.get("deprecated"):
            problems.append(
                f"apiVersion: {api_version} is deprecated: {entry.get('deprecationWarning') or ''}".rstrip()
            )
        problems += metadata_problems(obj.get("metadata"), "metadata", crd.scope)
        schema = crd.schema(version)
        body = {k: v for k, v in obj.items() if k != "metadata"}
        for error in sorted(self._validator(crd, version).iter_errors(body), key=lambda e: list(map(str, e.path))):
            problems.append(f"{_path(error.absolute_path)}: {error.message}")
        props = schema.get("properties") or {}
        for key, value in body.items():
            if key in ("apiVersion", "kind"):
                continue
            if key not in props and schema.get("x-kubernetes-preserve-unknown-fields") is not True:
                problems.append(f"{key}: unknown field, an API server would prune it")
            elif key in props:
                problems += list(pruned_fields(value, props[key], [key]))
                problems += list(list_type_problems(value, props[key], [key]))
        return problems

    def validate(self, obj: dict) -> None:
        """Raise :class:`CrdValidationError` naming every problem of ``obj``."""
        problems = self.problems(obj)
        if problems:
            meta = obj.get("metadata") or {}
            name = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
            raise CrdValidationError(f"{obj.get('apiVersion')} {obj.get('kind')} {name}", problems)

    def cel_rules(self, obj: dict) -> list[CelRule]:
        """The CEL rules on the fields ``obj`` sets; this validator does not evaluate them."""
        crd = self.crd_for(str(obj.get("apiVersion")), str(obj.get("kind")))
        version = str(obj.get("apiVersion")).rpartition("/")[2]
        if crd is None or version not in crd.versions:
            return []
        body = {k: v for k, v in obj.items() if k != "metadata"}
        return list(cel_rules_for(body, crd.schema(version), []))


@lru_cache(maxsize=1)
def upstream_catalog() -> CrdCatalog:
    """Every CRD vendored under tests/upstream/ (loaded once per process)."""
    return CrdCatalog.load()
