"""The portal over real HTTP with the no-op backend: sessions, CSRF, isolation, catalogues, won and KST."""

from __future__ import annotations

import datetime as dt
import re
import time

import httpx
import pytest

from operators.portal import i18n
from operators.portal.catalogue import extract_msgids, missing
from operators.portal.sessions import Session, SessionStore
from tests.portal.pages import csrf_of, login, untranslated

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
COMPANY_PAGES = [
    "/portal/jobs",
    "/portal/jobs/new",
    "/portal/jobs/new?template=smoke",
    "/portal/data",
    "/portal/grant",
    "/portal/models",
    "/portal/statements",
]
OPERATOR_PAGES = [
    "/portal/operator",
    "/portal/jobs",
    "/portal/operator/tokens",
    "/portal/statements",
    "/portal/operator/audit",
    f"/portal/grant?tenant={ALICE}",
]


def test_every_msgid_is_translated_in_both_catalogues():
    assert len(extract_msgids()) > 100
    assert missing() == {"ko": [], "en": []}


def test_a_missing_translation_is_caught(tmp_path, monkeypatch):
    """The check itself can fail: a catalogue without one msgid is reported."""
    source = i18n.po_path("ko").read_text(encoding="utf-8")
    cut = source.replace('msgid "Submit job"\nmsgstr "작업 제출"', 'msgid "Submit job"\nmsgstr ""')
    assert cut != source
    (tmp_path / "ko" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "ko" / "LC_MESSAGES" / "messages.po").write_text(cut, encoding="utf-8")
    (tmp_path / "en" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "en" / "LC_MESSAGES" / "messages.po").write_text(
        i18n.po_path("en").read_text(encoding="utf-8"), encoding="utf-8"
    )
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    assert missing()["ko"] == ["Submit job"]
    catalogues = i18n.Catalogues()
    assert catalogues.gettext("ko", "Submit job") == "Submit job" and ("ko", "Submit job") in catalogues.missing


def test_untranslated_text_is_detected():
    assert untranslated("<p>작업 <b>Jobs</b></p>", "ko") == ["Jobs"]
    assert untranslated('<p translate="no">job-123 Running</p><p>CSV</p>', "ko") == []
    assert untranslated("<p>작업</p>", "en") == ["작업"]


def test_money_dates_and_times_as_koreans_write_them():
    assert i18n.won(1234567, "ko") == "1,234,567원"
    assert i18n.won(1234567, "en") == "₩1,234,567"
    assert i18n.won(-5000, "ko") == "-5,000원"
    assert i18n.won(None, "ko") == "—"
    assert i18n.long_date(dt.date(2026, 12, 6), "ko") == "2026년 12월 6일"
    assert i18n.short_date("2026-12-06") == "2026.12.06"
    # 2026-12-05 23:30 UTC is the next morning in Seoul
    assert i18n.short_datetime("2026-12-05T23:30:00.000Z", "ko") == "2026.12.06 08:30 KST"
    assert i18n.pick_language("en", "ko") == "en" and i18n.pick_language("fr", None) == "ko"


def test_sessions_expire_when_idle_and_at_the_absolute_limit(monkeypatch):
    store = SessionStore(idle=10, maximum=100)
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    sid = store.create(Session(token="t", subject="a", role="tenant", lang="ko"))
    clock[0] += 9
    assert store.get(sid) is not None
    clock[0] += 11
    assert store.get(sid) is None
    sid = store.create(Session(token="t", subject="a", role="tenant", lang="ko"))
    for _ in range(12):
        clock[0] += 9
        store.get(sid)
    assert store.get(sid) is None  # 108 s after login: past the absolute limit although never idle


def test_login_cookie_is_httponly_strict_and_a_bad_token_is_refused(noop_plane):
    client = httpx.Client(base_url=noop_plane.url, follow_redirects=False)
    page = client.get("/portal/login")
    assert page.status_code == 200 and 'lang="ko"' in page.text
    bad = client.post("/portal/login", data={"token": "tbt_nope", "csrf": csrf_of(page.text)})
    assert bad.status_code == 401 and "유효하지 않은 토큰" in bad.text
    no_csrf = client.post("/portal/login", data={"token": noop_plane.token(ALICE), "csrf": "forged"})
    assert no_csrf.status_code == 401
    good = client.post("/portal/login", data={"token": noop_plane.token(ALICE), "csrf": csrf_of(page.text)})
    assert good.status_code == 303 and good.headers["location"] == "/portal/jobs"
    cookie = [c for c in good.headers.get_list("set-cookie") if c.startswith("tb_portal=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/portal" in cookie
    assert noop_plane.token(ALICE) not in good.headers.get("set-cookie", "")
    assert httpx.get(noop_plane.url + "/portal/jobs", follow_redirects=False).status_code == 303  # no cookie: login


def test_every_form_needs_the_csrf_token(noop_plane):
    client = login(noop_plane.url, noop_plane.token(ALICE))
    job = noop_plane.client(ALICE).submit({"entrypoint": "sleep 60"})
    for path, data in (
        (f"/portal/jobs/{job.id}/stop", {}),
        ("/portal/jobs/new", {"template": "smoke"}),
        ("/portal/logout", {}),
        ("/portal/jobs/quote", {"template": "smoke"}),
    ):
        assert client.post(path, data={**data, "csrf": "forged"}).status_code == 403, path
        assert client.post(path, data=data).status_code == 403, path
    assert noop_plane.client(ALICE).get_job(job.id).status.value == "RUNNING"  # the forged stop did nothing
    form = client.get("/portal/jobs/new?template=smoke").text
    stopped = client.post(f"/portal/jobs/{job.id}/stop", data={"csrf": csrf_of(form)})
    assert stopped.status_code == 303
    assert noop_plane.client(ALICE).get_job(job.id).status.value == "STOPPED"


def test_another_companys_job_is_a_404_as_on_the_api(noop_plane):
    job = noop_plane.client(ALICE).submit({"entrypoint": "sleep 60"})
    bob = login(noop_plane.url, noop_plane.token(BOB))
    for path in (f"/portal/jobs/{job.id}", f"/portal/jobs/{job.id}/log"):
        answer = bob.get(path)
        unknown = bob.get(path.replace(job.id, "job-doesnotexist"))
        # the same page as for a job that does not exist (the id only in the language links)
        assert answer.status_code == unknown.status_code == 404, path
        assert answer.text.replace(job.id, "X") == unknown.text.replace("job-doesnotexist", "X"), path
    assert job.id not in bob.get("/portal/jobs").text
    assert (
        bob.post(f"/portal/jobs/{job.id}/stop", data={"csrf": csrf_of(bob.get("/portal/jobs/new").text)}).status_code
        == 404
    )
    assert noop_plane.client(ALICE).get_job(job.id).status.value == "RUNNING"
    for path in (
        "/portal/operator",
        "/portal/operator/tokens",
        "/portal/operator/audit",
        f"/portal/grant?tenant={ALICE}",
    ):
        answer = bob.get(path)
        main = answer.text.split("<main", 1)[1].split("</main>", 1)[0]
        assert answer.status_code == 404 and ALICE not in main, path
    operator = login(noop_plane.url, noop_plane.token("operator"))
    assert job.id in operator.get("/portal/jobs").text
    assert operator.get(f"/portal/jobs/{job.id}").status_code == 200


def test_submit_through_the_form_with_korean_text_and_get_a_quote(noop_plane):
    alice = login(noop_plane.url, noop_plane.token(ALICE))
    form = alice.get("/portal/jobs/new?template=smoke")
    assert form.status_code == 200 and 'name="param.epochs"' in form.text and 'type="number"' in form.text
    data = {"csrf": csrf_of(form.text), "template": "smoke", "param.epochs": "3", "note": "한글 메모: 첫 작업"}
    quote = alice.post("/portal/jobs/quote", data=data)
    assert quote.status_code == 200 and 'id="quote-hold"' in quote.text, quote.text
    hold = re.search(r'id="quote-hold">([^<]+)<', quote.text).group(1)
    assert hold.endswith("원") and re.fullmatch(r"[\d,]+원", hold)
    answer = alice.post("/portal/jobs/new", data=data)
    assert answer.status_code == 303
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    job = noop_plane.client(ALICE).get_job(job_id)
    assert job.template == "smoke" and job.params == {"epochs": 3, "lr": 0.1, "seed": 0}
    bad = alice.post("/portal/jobs/new", data={**data, "param.epochs": "0"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    missing_number = alice.post("/portal/jobs/new", data={**data, "param.epochs": "three"})
    assert missing_number.status_code == 422 and "숫자를 입력하세요" in missing_number.text


def test_upload_data_through_the_form(noop_plane):
    alice = login(noop_plane.url, noop_plane.token(ALICE))
    csrf = csrf_of(alice.get("/portal/data").text)
    answer = alice.post(
        "/portal/data", data={"csrf": csrf, "name": "batches.csv"}, files={"file": ("b.csv", b"a,b\n1,2\n", "text/csv")}
    )
    assert answer.status_code == 200 and "batches.csv" in answer.text
    assert [o.name for o in noop_plane.client(ALICE).list_data().objects] == ["batches.csv"]


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_no_page_shows_an_untranslated_string(noop_plane, lang):
    noop_plane.client(ALICE).submit({"entrypoint": "sleep 60"})
    portal = noop_plane.app.state.portal
    portal.catalogues.missing.clear()
    for token, pages in ((noop_plane.token(ALICE), COMPANY_PAGES), (noop_plane.token("operator"), OPERATOR_PAGES)):
        client = login(noop_plane.url, token, lang=lang)
        job_id = re.search(r'/portal/jobs/(job-[0-9a-f]+)"', client.get("/portal/jobs").text).group(1)
        for path in [*pages, f"/portal/jobs/{job_id}", "/portal/jobs/job-missing"]:
            answer = client.get(path + ("&" if "?" in path else "?") + f"lang={lang}")
            assert answer.status_code in (200, 404), (path, answer.status_code)
            assert f'<html lang="{lang}">' in answer.text
            assert untranslated(answer.text, lang) == [], (lang, path)
    assert portal.catalogues.missing == set()


def test_language_switch_persists_in_the_session(noop_plane):
    alice = login(noop_plane.url, noop_plane.token(ALICE))
    assert "작업" in alice.get("/portal/jobs").text
    assert ">Jobs<" in alice.get("/portal/jobs?lang=en").text
    assert ">Jobs<" in alice.get("/portal/grant").text  # no ?lang=: the session remembers
    assert "지원금" in alice.get("/portal/grant?lang=ko").text


def test_a_rotated_token_ends_the_session(noop_plane):
    alice = login(noop_plane.url, noop_plane.token(ALICE))
    assert alice.get("/portal/jobs").status_code == 200
    noop_plane.client("operator").rotate_token(ALICE)
    noop_plane.plane.tokens.clear()
    answer = alice.get("/portal/jobs")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/portal/login")


def test_a_pending_job_says_why_it_waits(noop_plane):
    alice = noop_plane.client(ALICE)
    jobs = [alice.submit({"entrypoint": "sleep 120"}) for _ in range(5)]  # max_running_jobs: 4
    waiting = next(j for j in (alice.get_job(j.id) for j in jobs) if j.status.value == "PENDING")
    assert waiting.message
    page = login(noop_plane.url, noop_plane.token(ALICE)).get(f"/portal/jobs/{waiting.id}")
    assert "대기 사유" in page.text and waiting.message.split("\n")[0][:40] in page.text.replace("&#39;", "'")


def test_the_operator_issues_a_token_and_closes_a_month(noop_plane):
    operator = login(noop_plane.url, noop_plane.token("operator"))
    old = noop_plane.token(ALICE)
    page = operator.get("/portal/operator/tokens")
    issued = operator.post(f"/portal/operator/tokens/{ALICE}", data={"csrf": csrf_of(page.text)})
    token = re.search(r'id="issued-token">([^<]+)<', issued.text).group(1)
    assert httpx.get(noop_plane.url + "/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    noop_plane.plane.tokens.clear()
    assert httpx.get(noop_plane.url + "/v1/jobs", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    month = re.findall(r'<option value="(\d{4}-\d{2})"', operator.get("/portal/statements").text)[1]  # last month
    before = operator.get(f"/portal/statements?month={month}").text
    assert "잠정" in before and "이번 달 마감" in before
    closed = operator.post(f"/portal/statements/{month}/close", data={"csrf": csrf_of(before)})
    assert closed.status_code == 303, closed.text
    after = operator.get(f"/portal/statements?month={month}").text
    assert "마감됨" in after and "이번 달 마감" not in after
    company = login(noop_plane.url, token)
    assert (
        company.post(
            f"/portal/statements/{month}/close", data={"csrf": csrf_of(company.get("/portal/jobs").text)}
        ).status_code
        == 403
    )


def _company_row(html: str, tenant: str) -> str:
    match = re.search(rf'<tr>\s*<td[^>]*><a href="/portal/grant\?tenant={re.escape(tenant)}".*?</tr>', html, re.S)
    assert match, f"no row for {tenant}"
    return match.group(0)


def test_the_program_office_reads_every_company_and_writes_nothing(noop_plane):
    """Logged in with credentials/program-office.token: every company's grant and use, the statements of all
    companies and the audit trail, read-only: no write control on any page, and every write is refused (403) by
    the portal itself and by the API behind it."""
    alice_job = noop_plane.client(ALICE).submit({"entrypoint": "sleep 120"})
    noop_plane.client(BOB).submit({"entrypoint": "sleep 120"})
    token = noop_plane.token("program-office")
    office = login(noop_plane.url, token)
    usage = noop_plane.client("operator").usage()
    assert len(usage.tenants) == len(noop_plane.plane.stack.tenants) >= 2

    overview = office.get("/portal/")
    assert overview.status_code == 303 and overview.headers["location"] == "/portal/operator"
    page = office.get("/portal/operator").text
    assert "이 지역의 읽기 전용 화면" in page
    for tenant in usage.tenants:  # every company's figures, as the API computes them
        row = _company_row(page, tenant.tenant)
        for amount in (tenant.grant_krw, tenant.charged_krw, tenant.held_krw, tenant.remaining_krw):
            assert i18n.won(amount, "ko") in row, (tenant.tenant, amount)
    assert any(t.held_krw for t in usage.tenants if t.tenant == ALICE)  # a figure that is not just zero

    month = re.findall(r'<option value="(\d{4}-\d{2})"', office.get("/portal/statements").text)[1]  # last month
    pages = {
        path: office.get(path)
        for path in (
            "/portal/operator",
            f"/portal/statements?month={month}",
            "/portal/operator/audit",
            f"/portal/grant?tenant={BOB}",
        )
    }
    for path, answer in pages.items():
        assert answer.status_code == 200, (path, answer.status_code)
        forms = re.findall(r'<form method="post" action="([^"]+)"', answer.text)
        assert forms == ["/portal/logout"], (path, forms)  # no write control, only logging out
    assert 'href="/portal/jobs"' not in pages["/portal/operator"].text  # accounts, not jobs: no jobs page offered
    assert office.get(f"/portal/jobs/{alice_job.id}").status_code == 404  # a company's job and logs: as on the API
    audit_page = pages["/portal/operator/audit"].text
    assert ALICE in audit_page and BOB in audit_page  # the audit trail of every company
    statements = pages[f"/portal/statements?month={month}"].text
    assert all(t.tenant in statements or (t.name or "") in statements for t in usage.tenants)
    assert f'href="/portal/statements/{month}/download?format=csv"' in statements  # all companies in one file
    everyone = office.get(f"/portal/statements/{month}/download", params={"format": "csv"})
    assert everyone.status_code == 200 and all(t.tenant in everyone.text for t in usage.tenants)
    pdf = office.get(f"/portal/statements/{month}/download", params={"format": "pdf", "tenant": BOB})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    csrf = csrf_of(page)
    jobs_before = len(noop_plane.client("operator").list_jobs().jobs)
    assert office.get("/portal/operator/tokens").status_code in (403, 404)
    assert office.get("/portal/jobs/new").status_code == 403
    for path, data in (
        (f"/portal/operator/tokens/{ALICE}", {}),  # issue a token
        (f"/portal/statements/{month}/close", {}),  # close a month
        ("/portal/jobs/new", {"template": "smoke"}),  # submit a job
        ("/portal/jobs/quote", {"template": "smoke"}),
        (f"/portal/jobs/{alice_job.id}/stop", {}),
    ):
        refused = office.post(path, data={**data, "csrf": csrf})
        assert refused.status_code == 403, (path, refused.status_code)
    assert (
        office.post(
            "/portal/data", data={"csrf": csrf, "name": "x.csv"}, files={"file": ("x.csv", b"a,b\n")}
        ).status_code
        == 403
    )
    # the API behind the portal refuses the program office's token too
    bearer = {"Authorization": f"Bearer {token}"}
    for path, body in (
        (f"/v1/tenants/{ALICE}/token", None),
        (f"/v1/statements/{month}/close", None),
        ("/v1/jobs", {"entrypoint": "sleep 1"}),
    ):
        assert httpx.post(noop_plane.url + path, json=body, headers=bearer).status_code == 403, path

    # nothing changed: Alice's token works, the month is open, no job was added or stopped
    assert (
        httpx.get(
            noop_plane.url + "/v1/jobs", headers={"Authorization": f"Bearer {noop_plane.token(ALICE)}"}
        ).status_code
        == 200
    )
    assert noop_plane.client("operator").statement(month).provisional
    assert len(noop_plane.client("operator").list_jobs().jobs) == jobs_before
    assert noop_plane.client(ALICE).get_job(alice_job.id).status.value != "STOPPED"
    assert office.get("/portal/operator").status_code == 200  # still logged in after the refusals
