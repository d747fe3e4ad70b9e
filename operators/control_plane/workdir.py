"""A job's ``working_dir``: a folder under its tenant's code folder, never any other path of this machine.

Until jobs carry an uploaded code package, ``working_dir`` names a folder in
``<storage_path>/<tenant>/code/``, relative to it (the spec's schema allows plain segments only:
no absolute path, no ``..``; anything else is a 422 naming the field). The folder is resolved with
every symlink followed, at admission and again at dispatch: a folder, or a link anywhere in it,
that leads outside the tenant's code folder is refused (403), since the backend packages the
folder from the control plane's disk; a folder that is not there is a 404. Where storage is not a
local folder (``s3://...``) no ``working_dir`` is taken (403).
"""

from __future__ import annotations

import os
from pathlib import Path

from operators.control_plane.errors import ServiceError

CODE_FOLDER = "code"
MAX_FILES = 10_000  # entries a working_dir may hold (each one is checked for links that leave it)


def tenant_code_dir(storage_path: str, tenant: str) -> Path | None:
    """``<storage_path>/<tenant>/code``, or None where storage is not a local folder."""
    if "://" in storage_path:
        return None
    return Path(storage_path) / tenant / CODE_FOLDER


def resolve_working_dir(value: str, storage_path: str, tenant: str) -> str:
    """The real path of a job's ``working_dir``; 422 naming the field for anything outside the tenant's code."""
    root = tenant_code_dir(storage_path, tenant)
    if root is None:
        raise _refused(403, "this control plane takes no working_dir (job storage is not a local folder)")
    if "\x00" in value or os.path.isabs(value) or ".." in Path(value).parts:
        raise _refused(422, f"{value[:80]!r} must be a folder name relative to the tenant's code folder")
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / value)
    where = f"the tenant's code folder ({root})"
    if not _inside(real, real_root):
        raise _refused(403, f"{value!r} leads outside {where}")
    if not os.path.isdir(real):
        raise _refused(404, f"no folder {value!r} in {where}")
    _check_tree(real, real_root, value)
    return real


def _check_tree(folder: str, real_root: str, value: str) -> None:
    """No link inside the folder leads out of the tenant's code folder; not too many files."""
    seen = 0
    for parent, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            seen += 1
            if seen > MAX_FILES:
                raise _refused(403, f"{value!r} holds more than {MAX_FILES} files")
            path = os.path.join(parent, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), real_root):
                raise _refused(403, f"{value!r} holds a link that leads outside the tenant's code folder: "
                               f"{os.path.relpath(path, folder)}")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


_CODES = {403: "forbidden", 404: "not_found", 422: "invalid_spec"}


def _refused(status: int, reason: str) -> ServiceError:
    return ServiceError(status, _CODES[status], f"body.working_dir: {reason}")
