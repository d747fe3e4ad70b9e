"""Template parameters that name data: typed, never a path on the control plane's machine.

A ``data`` parameter accepts only ``testbed-data://NAME`` (the tenant's own uploaded file or folder, resolved here
at admission to its location; 404 when the tenant has none) or an object-store URI inside the tenant's own
prefix of the storage root (``s3://bucket/tenants/<tenant>/...``, only where the root is such a URL), or ``""``
where the template's default is its synthetic data. Anything else (a host path, another tenant's prefix, a
``..`` part, another scheme) is a 422 naming the parameter.
"""

from __future__ import annotations

from operators.control_plane.errors import ServiceError
from testbed.errors import ErrorCode
from operators.control_plane.tenant_storage import TenantStorage
from testbed.storage import DATA, DATA_SCHEME, data_ref_name, prefix_problem, tenant_path, valid_name
from testbed.templates import Template

OBJECT_STORE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "az://")


def resolve_data_params(template: Template, params: dict, tenant: str, storage: TenantStorage) -> dict:
    """The ``data`` params of ``params`` checked and located (the others untouched); ServiceError otherwise."""
    located = {}
    for param in template.params:
        if param.type != "data" or param.name not in params:
            continue
        value = params[param.name]
        if value == "" and param.default == "":
            continue
        located[param.name] = _locate(f"body.params.{param.name}", str(value), tenant, storage)
    return located


def _locate(field: str, value: str, tenant: str, storage: TenantStorage) -> str:
    name = data_ref_name(value)
    if name is not None:
        if not valid_name(name):
            raise ServiceError(
                ErrorCode.INVALID_SPEC,
                f"{field}: {value[:120]!r} does not name data: {DATA_SCHEME}NAME takes a relative name of your data",
            )
        if not (storage.data_exists(tenant, name) or storage.has_folder(tenant, DATA, name)):
            raise ServiceError(
                ErrorCode.NOT_FOUND,
                f"{field}: no data {name[:80]!r} in tenant {tenant!r}'s storage "
                "(`testbed data ls` lists it; `testbed data upload` adds)",
            )
        return storage.location(tenant, DATA, name)
    own = tenant_path(storage.root, tenant) + "/"
    if (
        storage.root.startswith(OBJECT_STORE_SCHEMES)
        and value.startswith(own)
        and not prefix_problem(value[len(own) :])
        and value[len(own) :]
    ):
        return value
    where = f" or an object-store URI under {own}" if storage.root.startswith(OBJECT_STORE_SCHEMES) else ""
    raise ServiceError(
        ErrorCode.INVALID_SPEC,
        f"{field}: {value[:120]!r} is not {DATA_SCHEME}NAME{where}; no request "
        "names a path on the control plane's machine or outside your storage",
    )
