"""``MlflowLogin.active()``: MLflow in this process acts as the login inside, even after an earlier
``mlflow.set_tracking_uri`` (which MLflow prefers to the environment), and as before outside."""

from __future__ import annotations

import os

import mlflow

from testbed.api import MlflowLogin

LOGIN = MlflowLogin(tracking_uri="http://127.0.0.1:5001", username="alice", password="p" * 20, workspace="alice")


def test_active_wins_over_a_pinned_tracking_uri_and_puts_it_back():
    mlflow.set_tracking_uri("http://127.0.0.1:5999")  # a server of an earlier login, say, now gone
    with LOGIN.active():
        assert mlflow.get_tracking_uri() == "http://127.0.0.1:5001"
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:5999"
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ


def test_active_leaves_an_unpinned_process_unpinned(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5002")
    with LOGIN.active():
        assert mlflow.get_tracking_uri() == "http://127.0.0.1:5001"
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:5002"  # the environment decides again
