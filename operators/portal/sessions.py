"""Portal sessions: server-side, keyed by a random id in an HttpOnly, SameSite=Strict cookie.

A session holds the token the user logged in with (only in this process's memory: the cookie
carries a random id, never the token), its CSRF token and its language. A session ends after
``IDLE_SECONDS`` without a request or ``MAX_SECONDS`` after login, at logout, and when its token
stops resolving (a rotation). Sessions live in the replica that created them: behind several
replicas, route a browser to one replica (sticky sessions) or it logs in again.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "tb_portal"
IDLE_SECONDS = 30 * 60
MAX_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    """One browser's login."""

    token: str
    subject: str
    role: str
    lang: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=lambda: time.monotonic())
    seen: float = field(default_factory=lambda: time.monotonic())

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class SessionStore:
    """Session id -> session, with idle and absolute expiry."""

    def __init__(self, idle: float = IDLE_SECONDS, maximum: float = MAX_SECONDS):
        self.idle = idle
        self.maximum = maximum
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, session: Session) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._expire(time.monotonic())
                if len(self._sessions) >= MAX_SESSIONS:  # still full: drop the oldest
                    del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].seen)]
            self._sessions[sid] = session
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.seen > self.idle or now - session.created > self.maximum:
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid in [k for k, s in self._sessions.items() if now - s.seen > self.idle or now - s.created > self.maximum]:
            del self._sessions[sid]
