"""Where the local testbed is: its state folder, and the control plane URL ``testbed up`` recorded there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast


def testbed_home() -> Path:
    """The local state folder: ``$TESTBED_HOME`` or ``~/.testbed``."""
    return Path(os.environ.get("TESTBED_HOME") or Path.home() / ".testbed").expanduser().absolute()


def local_control_plane_url(home: Path | None = None) -> str | None:
    """The control plane URL recorded by ``testbed up`` in the state folder, if any."""
    state = (home or testbed_home()) / "state.json"
    try:
        url = json.loads(state.read_text()).get("client_url")
    except (OSError, ValueError):
        return None
    return cast("str | None", url)
