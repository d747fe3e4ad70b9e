"""A lease in the database: which replica runs the reconciler (status sync, queued dispatch).

A thread of each replica renews it (or tries to take it) every ``renew_every`` seconds, whatever
the reconciler is doing; it lapses ``ttl`` seconds after the last renewal, so when the holder dies
another replica takes it over within about ``ttl + renew_every``.
Taking and renewing are one atomic statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the
row is ours or has expired). A holder that cannot renew stops acting a ``renew_every`` before its
lease can lapse, so two holders never act at once while clocks agree to within that margin.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from sqlalchemy import case, delete, literal

from testbed.clock import SYSTEM_CLOCK, Clock

from operators.control_plane.db.models import LeaseRow
from operators.control_plane.db.engine import dialect_insert
from operators.control_plane.db.store import Store

log = logging.getLogger("testbed.control_plane")

RECONCILER = "reconciler"


def replica_id() -> str:
    """This process among the replicas: host (the pod's name in a cluster), pid, a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    """One process's view of a named lease: whether it holds it, renewed when due."""

    def __init__(
        self,
        store: Store,
        name: str,
        ttl: float,
        renew_every: float,
        holder: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        if not 0 < renew_every < ttl:
            raise ValueError(f"lease {name!r}: renew_every ({renew_every}) must be below ttl ({ttl})")
        self.store = store
        self.name = name
        self.ttl = ttl
        self.renew_every = renew_every
        self.holder = holder or replica_id()
        self.clock = clock
        self.acquired_at: float | None = None  # this process's clock, when it last took the lease
        self._valid_until = 0.0  # act only before this (clock.monotonic())
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def holding(self) -> bool:
        """Whether this process holds the lease (as of its last renewal; no database call)."""
        return self.clock.monotonic() < self._valid_until

    def start(self) -> None:
        """Renew (or try to take) the lease now and then every ``renew_every`` seconds, in a thread.

        On SQLite (one process) the lease is taken at once: one left by a crashed run is this process's.
        """
        if self._thread is None:
            self.renew(take=self.store.inline_writes)
            self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.renew_every):
            self.renew()

    def renew(self, take: bool = False) -> bool:
        """One try: renew the lease if ours, take it if free or lapsed (or ``take``); whether we hold it."""
        now = self.clock.monotonic()
        try:
            if self._claim(take):
                if self._valid_until <= now:
                    self.acquired_at = self.clock.time()
                    log.info("%s: took lease %r", self.holder, self.name)
                self._valid_until = now + self.ttl - self.renew_every
            elif self._valid_until > now:
                log.warning("%s: lost lease %r", self.holder, self.name)
                self._valid_until = 0.0
        except Exception as exc:  # the database is unreachable: act until our lease could lapse
            log.warning("%s: cannot renew lease %r: %s", self.holder, self.name, exc)
        return self.holding

    def _claim(self, take: bool) -> bool:
        now = self.clock.time()
        table = LeaseRow.__table__
        with self.store.write_session() as s:
            insert = dialect_insert(s, table).values(
                name=self.name, holder=self.holder, expires_at=now + self.ttl, acquired_at=now
            )
            mine = table.c.holder == insert.excluded.holder
            statement = insert.on_conflict_do_update(
                index_elements=[table.c.name],
                set_={
                    "holder": insert.excluded.holder,
                    "expires_at": insert.excluded.expires_at,
                    "acquired_at": case((mine, table.c.acquired_at), else_=insert.excluded.acquired_at),
                },
                where=mine | (table.c.expires_at < now) | literal(take),
            ).returning(table.c.holder)
            return s.execute(statement).first() is not None

    def release(self) -> None:
        """Stop renewing and give the lease up (a clean shutdown): another replica takes it at its next try."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._valid_until <= self.clock.monotonic():
            return
        self._valid_until = 0.0
        try:
            with self.store.write_session() as s:
                s.execute(delete(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder))
        except Exception as exc:  # it lapses by itself
            log.warning("%s: cannot release lease %r: %s", self.holder, self.name, exc)
