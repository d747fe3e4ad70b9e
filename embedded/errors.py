"""What the local testbed raises: one line naming the step and, where there is one, its log."""

from __future__ import annotations


class LocalTestbedError(RuntimeError):
    """A local testbed step failed; the message says which and where its log is."""


class ComponentExited(LocalTestbedError):
    """A component's process ended before it became healthy (retried once on fresh ports)."""
