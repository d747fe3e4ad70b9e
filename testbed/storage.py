"""Each tenant's storage: one layout under the region's storage root, and the API's storage answers.

    <root>/<tenant>/packages/<sha256>.zip   code packages the client uploaded (content-addressed)
    <root>/<tenant>/data/<name>             data the tenant uploaded (``testbed data upload``)
    <root>/<tenant>/jobs/<job id>/          a job's checkpoints and outputs (``TESTBED_STORAGE_PATH``)
    <root>/<tenant>/uploads/                uploads in flight (never listed)

``<root>`` is ``$TESTBED_HOME/storage`` locally and ``s3://<bucket>/tenants`` in a cluster, where a tenant's
jobs reach ``<root>/<tenant>/*`` and nothing else. :func:`tenant_path` is the one function that builds
these paths: the control plane, the backends and the Pulumi program (IAM policies) all use it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

Area = Literal["packages", "data", "jobs", "uploads"]
PACKAGES: Area = "packages"
DATA: Area = "data"
JOBS: Area = "jobs"
UPLOADS: Area = "uploads"

# A package reference as jobs carry it: 'sha256:' and the zip's SHA-256 in lowercase hex.
PACKAGE_REF = r"^sha256:[0-9a-f]{64}$"
# A data name: relative, '/'-separated parts of 1-255 letters, digits, '.', '_', '-', none starting with '.'
# (so no '..', no hidden files), at most MAX_NAME_CHARS in all.
DATA_NAME = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,254})*$"
MAX_NAME_CHARS = 512
# A file a job wrote (its outputs): '/'-separated parts, any characters but '/', '\' and NUL, none '.' or '..'.
_OUTPUT_PART = r"(?:[^./\\\x00][^/\\\x00]*|\.[^./\\\x00][^/\\\x00]*|\.\.[^/\\\x00]+)"
OUTPUT_NAME = rf"^{_OUTPUT_PART}(?:/{_OUTPUT_PART})*$"
# A template parameter that names the tenant's own data: testbed-data://NAME (resolved at admission).
DATA_SCHEME = "testbed-data://"
# A file every package the client builds holds at its root: Ray strips a lone top-level folder from remote
# zips (s3://) but not from its own (gcs://); a root-level file makes both unpack the package the same way.
PACKAGE_MARKER = ".testbed-package"


def tenant_path(root: str, tenant: str, area: Area | None = None, name: str = "") -> str:
    """``<root>/<tenant>[/<area>[/<name>]]``: the one place the per-tenant layout is spelled."""
    parts = [root.rstrip("/"), tenant, *([area] if area else []), *([name.strip("/")] if name else [])]
    return "/".join(parts)


def package_ref(sha256: str) -> str:
    return f"sha256:{sha256}"


def package_sha256(ref: str) -> str:
    """The hex digest of a ``sha256:...`` reference; ValueError for anything else."""
    if not re.match(PACKAGE_REF, ref):
        raise ValueError(f"{ref[:80]!r} is not a package reference ('sha256:' and 64 lowercase hex digits)")
    return ref.removeprefix("sha256:")


def package_file(sha256: str) -> str:
    return f"{sha256}.zip"


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_CHARS and re.fullmatch(DATA_NAME, name) is not None


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a valid relative data name; else ValueError naming ``what`` and the value."""
    if not valid_name(name):
        raise ValueError(
            f"{what} {name[:80]!r} must be a relative name of at most {MAX_NAME_CHARS} characters: "
            "'/'-separated parts of 1-255 letters, digits, '.', '_' or '-', none starting with '.'"
        )
    return name


def prefix_problem(value: str) -> str | None:
    """Why ``value`` cannot be a listing prefix or cursor (None: it can): a relative name, optionally ending in
    ``/`` or a partial last part; never a leading ``/``, ``..`` or ``.`` part, empty part, backslash or control
    character."""
    if value.startswith("/"):
        return "starts with '/'"
    if "\\" in value:
        return "holds a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a control character"
    parts = value.split("/")
    if any(part in (".", "..") for part in parts):
        return "holds a '.' or '..' part"
    if "" in parts[:-1]:
        return "holds an empty part ('//')"
    return None


def data_ref_name(value: object) -> str | None:
    """NAME of a ``testbed-data://NAME`` value (a file, or a folder: ``NAME`` or ``NAME/``), None for any other
    value; a folder's trailing '/' is dropped."""
    if isinstance(value, str) and value.startswith(DATA_SCHEME):
        return value[len(DATA_SCHEME) :].rstrip("/") or value[len(DATA_SCHEME) :]
    return None


class FolderTransfer(BaseModel):
    """What a folder upload or download did (``testbed data upload DIR`` / ``get NAME/ DEST``)."""

    folder: str = Field(description="the folder's name in your data (files are NAME/<relative path>)")
    transferred: list[StoredObject] = Field(description="files sent (or fetched) this time")
    skipped: list[StoredObject] = Field(
        default_factory=list, description="files already stored with the same size and SHA-256 (resuming)"
    )
    bytes: int = Field(description="bytes sent (or fetched) this time")


# -- API answers ---------------------------------------------------------------------------------
class StoredPackage(BaseModel):
    """A code package in the tenant's storage; jobs name it by ``ref`` (``code_package``)."""

    ref: str = Field(description="'sha256:<hex>': what a job spec's code_package names")
    sha256: str
    size: int = Field(description="bytes of the zip")
    created: bool = Field(default=False, description="true when this upload stored it; false: it was already there")


class StoredObject(BaseModel):
    """A file in the tenant's storage (its data, or a job's outputs)."""

    name: str = Field(description="relative to the listed folder (data/ or the job's folder)")
    size: int = Field(description="bytes")
    modified_at: str | None = Field(default=None, description="RFC 3339 UTC, where the store tells")
    sha256: str | None = Field(
        default=None,
        description="the file's SHA-256 (hex): on upload, and in data listings "
        "asked with ?sha256=true (a folder upload skips what matches)",
    )


class ObjectList(BaseModel):
    """One page of files, by name; ``next_cursor`` fetches the next page (None: this is the last)."""

    objects: list[StoredObject]
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page")


class DeletedObjects(BaseModel):
    """What a delete removed."""

    deleted: list[str] = Field(description="names removed")
    bytes: int = Field(description="bytes freed")
