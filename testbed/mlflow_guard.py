"""MLflow basic-auth's own authentication, plus two refusals for non-admins.

1. The user roster. MLflow 3.17 lets any workspace member call ``GET /api/2.0/mlflow/users/list``
   (and its ajax twin) and answers with every username on the server -- here every tenant id and
   the operator's -- for the UI's reviewer picker (``validate_can_list_users``).
2. Server-wide features the testbed does not offer tenants, which MLflow opens to any logged-in
   user: the Assistant (``/ajax-api/3.0/mlflow/assistant/*``: one server-wide config that any
   user may rewrite, and tools run by the server process for clients on the same host -- which,
   in local mode, every tenant's Ray job is) and demo data (``/ajax-api/3.0/mlflow/demo/*``).

Everything else is decided by MLflow itself. tests/mlflow/test_isolation_rest.py
(test_no_roster_of_other_tenants, test_server_wide_features_are_the_admins) shows each leak
without this module and its absence with it.

Plugged in through MLflow's own hook: ``authorization_function`` in the auth ini
(``mlflow.server.auth.authenticate_request`` calls it on every request, Flask and FastAPI routes
alike, and ``_before_request`` answers a returned Response as is). Self-contained on purpose --
it imports only mlflow and flask -- so cluster mode can mount this file from a ConfigMap into the
upstream MLflow image as module ``testbed_mlflow_guard``.
"""

from __future__ import annotations

from flask import Response, make_response, request
from mlflow.server.auth import authenticate_request_basic_auth, store
from mlflow.server.auth.routes import AJAX_LIST_USERS, LIST_USERS
from werkzeug.datastructures import Authorization

ROSTER_PATHS = (LIST_USERS, AJAX_LIST_USERS)
ADMIN_ONLY_PREFIXES = ("/ajax-api/3.0/mlflow/assistant", "/ajax-api/3.0/mlflow/demo/")


def admin_only(path: str) -> bool:
    return path.rstrip("/").endswith(ROSTER_PATHS) or any(prefix in path for prefix in ADMIN_ONLY_PREFIXES)


def authenticate() -> Authorization | Response:
    """``authenticate_request_basic_auth``, refusing the paths above to non-admins."""
    result = authenticate_request_basic_auth()
    if isinstance(result, Authorization) and admin_only(request.path):
        if not store.get_user(result.username).is_admin:
            response = make_response("Permission denied")
            response.status_code = 403
            return response
    return result
