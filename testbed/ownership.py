"""Who owns what the platform creates where jobs work.

Run as root, the local testbed runs tenants' jobs under an unprivileged user of their own (``embedded.jobs_user``)
that owns the folders jobs work in: the tenants' storage, Ray's folder, the jobs' folder with their MLflow logins.
What the platform (root) creates in such a folder is handed to the folder's owner, so the jobs reach it; the
platform's own files (tokens, MLflow's admin secret, its databases) stay root's, out of the jobs' reach.
"""

from __future__ import annotations

import os


def heir(folder: os.stat_result) -> tuple[int, int] | None:
    """(uid, gid) that what this process creates in a folder with this ``stat`` must be handed to, or None: only
    a process running as root hands anything over, and only in a folder that belongs to another user."""
    if os.geteuid() != 0 or folder.st_uid == 0:
        return None
    return folder.st_uid, folder.st_gid
