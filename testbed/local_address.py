"""Where the local testbed is: its state folder, and the control plane URL ``testbed up`` recorded there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast


ROOT_TESTBED_HOME = Path("/var/lib/testbed")


def default_testbed_home() -> Path:
    """``~/.testbed``; as root ``/var/lib/testbed``: jobs then run as a user of their own, which must pass
    through the folders above the state folder, and root's home is closed to other users."""
    return ROOT_TESTBED_HOME if os.geteuid() == 0 else Path.home() / ".testbed"


def testbed_home() -> Path:
    """The local state folder: ``$TESTBED_HOME`` or :func:`default_testbed_home`."""
    return Path(os.environ.get("TESTBED_HOME") or default_testbed_home()).expanduser().absolute()


def local_control_plane_url(home: Path | None = None) -> str | None:
    """The control plane URL recorded by ``testbed up`` in the state folder, if any."""
    state = (home or testbed_home()) / "state.json"
    try:
        url = json.loads(state.read_text()).get("client_url")
    except (OSError, ValueError):
        return None
    return cast("str | None", url)
