"""MLflow basic-auth's own authentication, plus one refusal: non-admins cannot list all users.

MLflow 3.17 lets any workspace member call ``GET /api/2.0/mlflow/users/list`` (and its ajax twin)
and answers with every username on the server -- here every tenant id and the operator's -- for
the UI's reviewer picker (``validate_can_list_users``). Everything else is filtered by MLflow
itself (tests/mlflow/test_isolation_rest.py::test_no_roster_of_other_tenants shows the leak
without this module and its absence with it).

Plugged in through MLflow's own hook: ``authorization_function`` in the auth ini
(``mlflow.server.auth.authenticate_request`` calls it on every request, Flask and FastAPI routes
alike, and ``_before_request`` answers a returned Response as is). Self-contained on purpose --
it imports only mlflow and flask -- so cluster mode can mount this file from a ConfigMap into the
upstream MLflow image as module ``testbed_mlflow_guard``.
"""

from __future__ import annotations

from flask import Response, make_response, request
from werkzeug.datastructures import Authorization

from mlflow.server.auth import authenticate_request_basic_auth, store
from mlflow.server.auth.routes import AJAX_LIST_USERS, LIST_USERS

ROSTER_PATHS = frozenset({LIST_USERS, AJAX_LIST_USERS})


def authenticate() -> Authorization | Response:
    """``authenticate_request_basic_auth``, refusing the user roster to non-admins."""
    result = authenticate_request_basic_auth()
    if isinstance(result, Authorization) and request.path.rstrip("/").endswith(tuple(ROSTER_PATHS)):
        if not store.get_user(result.username).is_admin:
            response = make_response("Permission denied")
            response.status_code = 403
            return response
    return result
