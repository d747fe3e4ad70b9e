"""The portal's languages: Korean (default) and English, from gettext catalogues, plus won, KST and dates.

The catalogues are ``locale/<lang>/LC_MESSAGES/messages.po`` (msgids are English). They are read
with Babel when the portal starts (no compile step: a fresh clone works as it is). A msgid missing
from a catalogue renders as the msgid and is recorded in :attr:`Catalogues.missing`, so a test can
fail on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.pofile import read_po

try:  # the money contract's time zone (branch h17); the same zone until it lands
    from testbed.money import KST
except ImportError:  # pragma: no cover - before h17 is merged
    from zoneinfo import ZoneInfo

    KST = ZoneInfo("Asia/Seoul")

LANGUAGES = ("ko", "en")
DEFAULT_LANGUAGE = "ko"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogue(lang: str) -> dict[str, str]:
    """msgid -> translation of one language (entries with an empty or fuzzy translation are left out)."""
    with po_path(lang).open("rb") as handle:
        catalogue = read_po(handle, locale=lang)
    return {m.id: m.string for m in catalogue if m.id and m.string and not m.fuzzy and isinstance(m.id, str)}


@dataclass
class Catalogues:
    """Both languages' messages, loaded once."""

    messages: dict[str, dict[str, str]] = field(
        default_factory=lambda: {lang: read_catalogue(lang) for lang in LANGUAGES}
    )
    missing: set[tuple[str, str]] = field(default_factory=set)

    def gettext(self, lang: str, msgid: str) -> str:
        text = self.messages.get(lang, {}).get(msgid)
        if text is None:
            self.missing.add((lang, msgid))
            return msgid
        return text


def pick_language(wanted: str | None, current: str | None = None) -> str:
    """``?lang=`` if it names a known language, else the session's, else Korean."""
    for lang in (wanted, current):
        if lang in LANGUAGES:
            return lang  # type: ignore[return-value]
    return DEFAULT_LANGUAGE


def won(amount: int | float | None, lang: str) -> str:
    """Whole won with thousands separators: ``1,234,567원`` (ko) or ``₩1,234,567`` (en)."""
    if not isinstance(amount, (int, float)) or isinstance(amount, bool):
        return "—"  # None, or a field this control plane does not report
    value = int(round(amount))
    sign = "-" if value < 0 else ""
    digits = f"{abs(value):,}"
    return f"{sign}{digits}원" if lang == "ko" else f"{sign}₩{digits}"


def number(value: float | None, digits: int = 1) -> str:
    """A quantity (hours) with separators."""
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "—"


def to_kst(value: float | str | dt.datetime | None) -> dt.datetime | None:
    """Epoch seconds, an RFC 3339 string or a datetime, as an aware datetime in Asia/Seoul."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        moment = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    elif isinstance(value, str):
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(KST)


def long_date(value: dt.date | str | None, lang: str) -> str:
    """``2026년 12월 6일`` (ko) or ``6 Dec 2026`` (en)."""
    if value is None or value == "":
        return "—"
    day = dt.date.fromisoformat(value) if isinstance(value, str) else value
    if lang == "ko":
        return f"{day.year}년 {day.month}월 {day.day}일"
    return f"{day.day} {day.strftime('%b')} {day.year}"


def short_datetime(value: float | str | dt.datetime | None, lang: str) -> str:
    """A moment in KST: ``2026.12.06 09:30 KST`` (both languages: the Korean short style)."""
    moment = to_kst(value)
    return "—" if moment is None else moment.strftime("%Y.%m.%d %H:%M KST")


def short_date(value: dt.date | str | None) -> str:
    """``2026.12.06``."""
    if value is None or value == "":
        return "—"
    day = dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
    return day.strftime("%Y.%m.%d")
