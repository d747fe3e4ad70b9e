"""``python -m operators.control_plane`` sets Python's garbage collector for a server before it serves: what its start
built frozen out of the collector's passes, collections less often (docs/operators/scale.md, "The garbage
collector")."""

from __future__ import annotations

import gc
from typing import Any

from operators.control_plane import __main__ as served
from tests.replicas import noop_settings, stack_with_tenants


def test_the_served_control_plane_collects_less_often_over_what_was_made_since_its_start(tmp_path, monkeypatch):
    stack, _ = stack_with_tenants(tmp_path, 1, {})
    settings_file = tmp_path / "settings.json"
    noop_settings(tmp_path, stack, f"sqlite:///{tmp_path / 'cp.db'}").write(settings_file)
    seen: dict[str, Any] = {}

    def serve(app: Any, **_options: Any) -> None:  # what uvicorn would serve, and the collector as it starts to
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()
        app.state.plane.shutdown()

    monkeypatch.setattr(served.uvicorn, "run", serve)
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0  # this test process froze nothing before
    try:
        assert served.main(["--settings", str(settings_file)]) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    young, middle, old = seen["threshold"]
    assert young >= 10 * threshold[0], "a young collection as often as Python's default"
    assert young * middle * old >= 20 * threshold[0] * threshold[1] * threshold[2], (
        "full collections as often as before"
    )
    # everything built before serving (modules, the app, SQLAlchemy's metadata: hundreds of thousands of objects)
    assert seen["frozen"] > 100_000
