"""A template parameter that names data is typed: testbed-data://NAME or an object-store URI inside the tenant's
own prefix, never a path on the control plane's machine (real HTTP, no-op backend)."""

from __future__ import annotations

import pytest

from operators.control_plane.data_params import resolve_data_params
from operators.control_plane.errors import ServiceError
from operators.control_plane.tenant_storage import TenantStorage
from testbed.templates import get_template, list_templates as templates
from tests.control_plane.test_storage_api import ALICE, BOB, refused


def test_every_data_path_param_is_typed_data():
    data_params = [(t.name, p.name) for t in templates() for p in t.params if p.name.endswith("_path")]
    assert data_params and all(p.type == "data" for t in templates() for p in t.params if p.name.endswith("_path"))


@pytest.mark.parametrize(
    "value",
    [
        "{home}/storage/{alice}/data/secret.csv",
        "{home}/storage/{alice}/data",
        "/etc/passwd",
        "data/secret.csv",
        "../secret.csv",
        "file:///etc/passwd",
        "s3://bucket/tenants/{alice}/data/x.csv",
        "http://127.0.0.1:1/x",
        "testbed-data://../x",
        "testbed-data:///etc/passwd",
    ],
)
def test_a_data_param_that_is_not_the_tenants_data_is_a_422_naming_it(noop_plane, value):
    alice_data = noop_plane.home / "storage" / ALICE / "data"
    alice_data.mkdir(parents=True)
    (alice_data / "secret.csv").write_text("a,b\n1,2\n")
    value = value.format(home=noop_plane.home, alice=ALICE)
    bob = noop_plane.client(BOB)
    before = len(bob.list_jobs().jobs)
    detail = refused(
        lambda: bob.submit({"template": "predictive-maintenance", "params": {"data_path": value}}), 422, "invalid_spec"
    )
    assert detail.startswith("body.params.data_path: ")
    assert len(bob.list_jobs().jobs) == before  # nothing admitted


def test_synthetic_data_and_the_tenants_own_data_are_accepted(noop_plane):
    bob = noop_plane.client(BOB)
    assert bob.submit({"template": "predictive-maintenance", "params": {"data_path": ""}}).id
    folder = noop_plane.home / "storage" / BOB / "data" / "imgs" / "ok"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png")
    job = bob.submit({"template": "defect-inspection", "params": {"data_path": "testbed-data://imgs"}})
    assert f"--data_path={noop_plane.home / 'storage' / BOB / 'data' / 'imgs'}" in job.entrypoint.split()


def test_an_object_store_uri_must_be_inside_the_tenants_own_prefix():
    storage = TenantStorage("s3://bucket/tenants")
    template = get_template("predictive-maintenance")
    own = f"s3://bucket/tenants/{BOB}/data/sensors.csv"
    assert resolve_data_params(template, {"data_path": own}, BOB, storage) == {"data_path": own}
    for other in (
        f"s3://bucket/tenants/{ALICE}/data/x.csv",
        f"s3://bucket/tenants/{BOB}/../{ALICE}/data/x.csv",
        f"s3://bucket/tenants/{BOB}",
        "s3://other-bucket/x.csv",
        f"gs://bucket/tenants/{BOB}/x.csv",
    ):
        with pytest.raises(ServiceError) as err:
            resolve_data_params(template, {"data_path": other}, BOB, storage)
        assert err.value.status_code == 422 and "body.params.data_path" in err.value.message, other
