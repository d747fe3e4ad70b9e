"""Fake Kubernetes APIs for the kuberay backend's tests: they store objects and answer as an API server does
(404 unknown, 409 duplicate, uid and creationTimestamp on create, label selectors, paged lists), and record
every call so tests can count them."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

_CLOCK = itertools.count()


def _now() -> str:
    """Strictly increasing creation timestamps (RFC 3339, as the API server writes them)."""
    stamp = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=next(_CLOCK))
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(labels: dict[str, str], selector: str | None) -> bool:
    """Equality (``k=v``) and existence (``k``) terms, comma-separated (what the backend sends)."""
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


class FakeCustomObjects:
    """RayJobs (``objects``) and Kueue Workloads (``workloads``), keyed by (namespace, name)."""

    def __init__(self, fail: int | None = None):
        self.objects: dict[tuple[str, str], dict] = {}
        self.workloads: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple] = []
        self.fail = fail

    def _check(self, call: tuple) -> None:
        self.calls.append(call)
        if self.fail:
            raise ApiException(status=self.fail, reason="Forbidden" if self.fail == 403 else "Error")

    def _store(self, plural: str) -> dict[tuple[str, str], dict]:
        return self.workloads if plural == "workloads" else self.objects

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self._check(("create", group, version, namespace, plural, body["metadata"]["name"]))
        key = (namespace, body["metadata"]["name"])
        store = self._store(plural)
        if key in store:
            raise ApiException(status=409, reason="AlreadyExists")
        store[key] = json.loads(json.dumps(body))
        store[key]["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
        return store[key]

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(("get", group, version, namespace, plural, name))
        if (namespace, name) not in self._store(plural):
            raise ApiException(status=404, reason="Not Found")
        return self._store(plural)[(namespace, name)]

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self._check(("patch", group, version, namespace, plural, name))
        obj = self.get_namespaced_custom_object(group, version, namespace, plural, name)
        annotations = obj["metadata"].setdefault("annotations", {})
        for key, value in body["metadata"]["annotations"].items():  # merge patch: None removes
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return obj

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, propagation_policy=None):
        self._check(("delete", group, version, namespace, plural, name, propagation_policy))
        if self._store(plural).pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")

    def list_namespaced_custom_object(
        self, group, version, namespace, plural, label_selector=None, limit=None, _continue=None
    ):
        self._check(("list", group, version, namespace, plural))
        found = [
            o
            for (ns, _), o in sorted(self._store(plural).items())
            if ns == namespace and matches(o["metadata"].get("labels") or {}, label_selector)
        ]
        start = int(_continue or 0)
        end = start + limit if limit else len(found)
        return {"items": found[start:end], "metadata": {"continue": str(end) if end < len(found) else ""}}


class FakeCore:
    """Pods by label selector and their logs."""

    def __init__(self, pods: dict[str, str] | None = None):
        self.logs = {f"pod-{i}": text for i, text in enumerate((pods or {}).values())}
        self.names = {selector: f"pod-{i}" for i, selector in enumerate(pods or {})}  # label selector -> pod
        self.calls: list[tuple] = []

    def create_namespaced_secret(self, namespace, body):
        self.calls.append(("create_secret", namespace, body["metadata"]["name"]))
        secrets = self.__dict__.setdefault("secrets", {})
        if (namespace, body["metadata"]["name"]) in secrets:
            raise ApiException(status=409, reason="AlreadyExists")
        secrets[(namespace, body["metadata"]["name"])] = json.loads(json.dumps(body))
        return body

    def replace_namespaced_secret(self, name, namespace, body):
        self.calls.append(("replace_secret", namespace, name))
        self.__dict__.setdefault("secrets", {})[(namespace, name)] = json.loads(json.dumps(body))
        return body

    def list_namespaced_pod(self, namespace, label_selector):
        self.calls.append(("list", namespace, label_selector))
        if label_selector not in self.names:
            return k8s.V1PodList(items=[])
        pod = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=self.names[label_selector], namespace=namespace),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="ray-job-submitter")]),
        )
        return k8s.V1PodList(items=[pod])

    def read_namespaced_pod_log(self, name, namespace, container=None):
        self.calls.append(("log", namespace, name, container))
        if name not in self.logs:
            raise ApiException(status=404, reason="Not Found")
        return self.logs[name]
