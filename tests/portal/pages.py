"""Test helpers for the portal: log in over real HTTP, and find text a page shows untranslated."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

HANGUL = re.compile(r"[\uac00-\ud7a3]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
# Words that are the same in both languages (file formats, product and unit names).
SAME_IN_BOTH = {"CSV", "XLSX", "PDF", "MLflow", "KST", "Gi"}
SKIP_TAGS = {"script", "style", "pre", "code", "title"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _VisibleText(HTMLParser):
    """Text nodes of a page outside ``translate="no"``, other-language and non-visible elements."""

    def __init__(self, lang: str):
        super().__init__(convert_charrefs=True)
        self.lang = lang
        self.stack: list[bool] = []  # per open element: is its content exempt?
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        a = dict(attrs)
        exempt = (
            tag in SKIP_TAGS
            or a.get("translate") == "no"
            or (a.get("lang") not in (None, self.lang))
            or (self.stack and self.stack[-1])
        )
        self.stack.append(bool(exempt))

    def handle_endtag(self, tag):
        if tag not in VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if data.strip() and not (self.stack and self.stack[-1]):
            self.texts.append(data.strip())


def untranslated(html: str, lang: str) -> list[str]:
    """Visible text that is not in ``lang``: Latin words on a Korean page, Hangul on an English one."""
    parser = _VisibleText(lang)
    parser.feed(html)
    bad = []
    for text in parser.texts:
        if lang == "ko":
            words = set(LATIN_WORD.findall(text)) - SAME_IN_BOTH
            if words and not HANGUL.search(text):
                bad.append(text)
        elif HANGUL.search(text):
            bad.append(text)
    return bad


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def login(url: str, token: str, lang: str | None = None) -> httpx.Client:
    """A client holding a portal session for ``token``."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    page = client.get("/portal/login", params={"lang": lang} if lang else None)
    answer = client.post("/portal/login", data={"token": token, "csrf": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text
    return client
