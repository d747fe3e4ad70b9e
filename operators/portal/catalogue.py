"""The msgids the portal uses, extracted from its templates (``_("...")``) and modules (``N_("...")``).

Used by the tests (every msgid translated in both catalogues) and by ``python -m
operators.portal.catalogue`` (lists the msgids a catalogue lacks).
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.extract import extract_from_file

from operators.portal.i18n import LANGUAGES, read_catalogue

HERE = Path(__file__).parent
KEYWORDS = {"_": None, "N_": None}


def extract_msgids() -> set[str]:
    """Every msgid in the templates and the portal's modules."""
    found: set[str] = set()
    sources = [(p, "jinja2.ext:babel_extract") for p in sorted((HERE / "templates").glob("*.html"))]
    sources += [(p, "python") for p in sorted(HERE.glob("*.py"))]
    for path, method in sources:
        for _lineno, message, _comments, _context in extract_from_file(method, path, keywords=KEYWORDS):
            if isinstance(message, str) and message:
                found.add(message)
    return found


def missing() -> dict[str, list[str]]:
    """Per language, the msgids its catalogue lacks (or leaves untranslated)."""
    wanted = extract_msgids()
    return {lang: sorted(wanted - read_catalogue(lang).keys()) for lang in LANGUAGES}


if __name__ == "__main__":
    gaps = missing()
    for lang, ids in gaps.items():
        for msgid in ids:
            print(f"{lang}: {msgid!r}")
    sys.exit(1 if any(gaps.values()) else 0)
