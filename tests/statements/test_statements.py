"""Monthly statements from a real money ledger (h17's MoneyLedger on SQLite): totals equal the ledger in CSV, XLSX
and PDF; the PDF embeds its Korean font; a closed month never changes (byte-identical exports) and a late entry
counts in the next open month; an open month is provisional on every row and page; the API and CLI export it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from operators.control_plane import audit
from operators.control_plane.auth import Principal
from operators.control_plane.errors import ServiceError
from operators.control_plane.db.models import JobRow
from operators.control_plane.db.money import MoneyLedger
from operators.control_plane.db.store import Store
from operators.control_plane.api.statements import render
from operators.statements.export import COLUMNS, to_csv, to_pdf, to_xlsx
from operators.statements.months import Statements
from testbed.config import load_stack_file, pricing_pool, stack_file_for
from testbed.money import LedgerKind, day_start_ts, kst_month
from testbed.statements import FINAL, PROVISIONAL, TOTAL

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
OPERATOR = Principal(subject="operator", role="operator")
MARCH_10 = day_start_ts(dt.date(2026, 3, 10)) + 3600 * 10
APRIL_2 = day_start_ts(dt.date(2026, 4, 2))
needs_poppler = pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler-utils (make system-deps)")


class Books:
    """A store, h17's money ledger on it, and the statements computed from it."""

    def __init__(self, tmp_path: Path):
        self.stack = load_stack_file(stack_file_for("gyeongnam"))
        self.store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
        self.money = MoneyLedger(self.store, self.stack, lambda tenant: pricing_pool(self.stack, tenant, "kuberay"))
        self.statements = Statements(self.stack, self.store, lambda: self.money.entries())
        self.jobs = 0

    def run(self, tenant: str, gpus: int, seconds: int, charged_at: float, started_at: float | None = None) -> str:
        """A job that ran ``seconds`` (from ``started_at``), charged by the ledger at ``charged_at``."""
        self.jobs += 1
        job_id = f"job-{self.jobs:016d}"
        start = charged_at - seconds if started_at is None else started_at
        self.store.add_job(
            JobRow(
                id=job_id,
                tenant=tenant,
                region="gyeongnam",
                name="t",
                experiment="e",
                status="RUNNING",
                entrypoint="true",
                template=None,
                spec={"max_runtime_seconds": 86400},
                cpus=4.0,
                gpus=gpus,
                gpu_model="l4",
                memory_bytes=16 * 2**30,
                submitted_at=start,
                started_at=start,
                dispatched=True,
                message="",
            )
        )
        with self.store.write_session() as s:
            row = s.get(JobRow, job_id)
            self.money.accrue(s, row, until=start + seconds, now=charged_at)
        return job_id

    def ledger_supply(self, tenant: str, month: str) -> int:
        return sum(
            e.amount_krw
            for e in self.money.entries(tenant=tenant, kinds=[LedgerKind.CHARGE, LedgerKind.ADJUSTMENT])
            if kst_month(e.at) == month
        )

    def close(self) -> None:
        self.store.close()


@pytest.fixture()
def books(tmp_path):
    books = Books(tmp_path)
    yield books
    books.close()


def csv_rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel shows the Hangul
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def header(field: str) -> str:
    return dict((name, head) for head, name in COLUMNS)[field]


def tenant_total(rows: list[dict[str, str]], tenant: str, column: str) -> int:
    [total] = [r for r in rows if r[header("tenant")] == tenant and r[header("funding_source")] == TOTAL]
    return int(total[header(column)])


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_exported_totals_equal_the_ledger_in_csv_xlsx_and_pdf(books, tmp_path):
    books.run(ALICE, gpus=2, seconds=5 * 3600 + 17, charged_at=MARCH_10)
    books.run(ALICE, gpus=1, seconds=1234, charged_at=MARCH_10 + 86400)
    books.run(BOB, gpus=1, seconds=7 * 3600, charged_at=MARCH_10 + 2 * 86400)
    books.run(ALICE, gpus=1, seconds=3600, charged_at=APRIL_2 + 3600)  # another month
    statement = books.statements.statement(OPERATOR, "2026-03")
    assert statement.provisional
    by_tenant = {t.tenant: t for t in statement.tenants}
    for tenant in (ALICE, BOB):
        supply = books.ledger_supply(tenant, "2026-03")
        assert supply > 0 and by_tenant[tenant].charged_krw == supply == by_tenant[tenant].total.supply_krw
        rows = by_tenant[tenant].rows
        # per funding source and pool rows add up to the subtotals and the total; VAT per row, rounded half up
        assert sum(r.supply_krw for r in rows if r.pool != TOTAL) == supply
        assert sum(r.supply_krw for r in rows if r.pool == TOTAL and r.funding_source != TOTAL) == supply
        assert all(r.total_krw == r.supply_krw + r.vat_krw for r in rows)
        assert {r.funding_source for r in rows} == {"national", "local", "self", TOTAL}
        assert by_tenant[tenant].grant_remaining_krw == books.stack.tenant(tenant).grant.krw - supply
    assert all(t.charged_krw == 0 for t in statement.tenants if t.tenant not in (ALICE, BOB))

    rows = csv_rows(to_csv(statement.tenants))
    assert {r[header("status")] for r in rows} == {PROVISIONAL}  # open month: provisional on every row
    for tenant in (ALICE, BOB):
        assert tenant_total(rows, tenant, "supply_krw") == books.ledger_supply(tenant, "2026-03")
        assert tenant_total(rows, tenant, "total_krw") == by_tenant[tenant].total.total_krw

    from openpyxl import load_workbook

    when = dt.datetime(2026, 4, 2, tzinfo=dt.timezone.utc)
    sheet = load_workbook(io.BytesIO(to_xlsx(statement.tenants, when, "t"))).active
    cells = list(sheet.iter_rows(values_only=True))
    names = [c for c in cells[0]]
    xlsx = [dict(zip(names, row)) for row in cells[1:]]
    for tenant in (ALICE, BOB):
        [total] = [r for r in xlsx if r[header("tenant")] == tenant and r[header("funding_source")] == TOTAL]
        assert total[header("supply_krw")] == books.ledger_supply(tenant, "2026-03")

    if shutil.which("pdftotext"):
        pdf = tmp_path / "alice.pdf"
        pdf.write_bytes(to_pdf(by_tenant[ALICE], when))
        text = pdf_text(pdf)
        total = by_tenant[ALICE].total
        assert f"{total.supply_krw:,}" in text and f"{total.total_krw:,}" in text and PROVISIONAL in text


@pytest.mark.integration  # pdftotext reads the PDF
def test_idle_gpu_hours_in_csv_xlsx_and_pdf_reproducibly(books, tmp_path):
    idle_job = books.run(ALICE, gpus=2, seconds=4 * 3600, charged_at=MARCH_10)
    books.run(BOB, gpus=1, seconds=3600, charged_at=MARCH_10)
    with books.store.write_session() as s:  # the idle monitor's verdict: 1 h 30 min 36 s of GPU time held idle
        row = s.get(JobRow, idle_job)
        row.idle_gpu_seconds, row.idle_checked_at = 5436, MARCH_10
    statement = books.statements.statement(OPERATOR, "2026-03")
    by_tenant = {t.tenant: t for t in statement.tenants}
    assert by_tenant[ALICE].idle_gpu_hours == Decimal("1.51") and by_tenant[BOB].idle_gpu_hours == 0

    data = to_csv(statement.tenants)
    rows = csv_rows(data)
    for tenant, idle in ((ALICE, Decimal("1.51")), (BOB, Decimal(0))):
        mine = [r for r in rows if r[header("tenant")] == tenant]
        [total] = [r for r in mine if r[header("funding_source")] == TOTAL]
        assert Decimal(total[header("idle_gpu_hours")]) == idle  # on the tenant's total row ...
        assert all(r[header("idle_gpu_hours")] == "" for r in mine if r is not total)  # ... and nowhere else

    from openpyxl import load_workbook

    when = dt.datetime(2026, 4, 2, tzinfo=dt.timezone.utc)
    xlsx_bytes = to_xlsx(statement.tenants, when, "t")
    cells = list(load_workbook(io.BytesIO(xlsx_bytes)).active.iter_rows(values_only=True))
    xlsx = [dict(zip(cells[0], line)) for line in cells[1:]]
    [total] = [r for r in xlsx if r[header("tenant")] == ALICE and r[header("funding_source")] == TOTAL]
    assert total[header("idle_gpu_hours")] == pytest.approx(1.51)
    assert sum(r[header("idle_gpu_hours")] or 0 for r in xlsx if r[header("tenant")] == ALICE) == pytest.approx(1.51)

    pdf_bytes = to_pdf(by_tenant[ALICE], when)
    if shutil.which("pdftotext"):
        pdf = tmp_path / "alice.pdf"
        pdf.write_bytes(pdf_bytes)
        assert re.search(r"유휴 GPU 시간 \(idle GPU-hours\): 1\.510000\b", pdf_text(pdf))

    # the same statement gives the same bytes, idle hours included
    again = books.statements.statement(OPERATOR, "2026-03")
    assert to_csv(again.tenants) == data and to_xlsx(again.tenants, when, "t") == xlsx_bytes
    assert to_pdf(next(t for t in again.tenants if t.tenant == ALICE), when) == pdf_bytes


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
@needs_poppler
def test_the_pdf_embeds_its_korean_font_on_one_page(books, tmp_path):
    books.run(ALICE, gpus=1, seconds=3600, charged_at=MARCH_10)
    [alice] = books.statements.statement(OPERATOR, "2026-03", ALICE).tenants
    pdf = tmp_path / "statement.pdf"
    pdf.write_bytes(to_pdf(alice, dt.datetime(2026, 4, 2, tzinfo=dt.timezone.utc)))
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), fonts  # the "emb" column of every font
    assert any("NanumGothic" in line for line in fonts)
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M), info
    assert "사용료 명세서" in pdf_text(pdf)


def test_a_closed_month_never_changes_and_late_entries_count_in_the_next_open_month(books):
    books.run(ALICE, gpus=2, seconds=3 * 3600, charged_at=MARCH_10)
    with pytest.raises(ServiceError) as err:
        books.statements.close(OPERATOR, "2026-03", now=MARCH_10 + 86400)  # March has not ended
    assert err.value.status_code == 409
    closed = books.statements.close(OPERATOR, "2026-03", now=APRIL_2)
    assert closed.tenants == len(books.stack.tenants) and closed.closed_by == "operator:default"
    march = books.statements.statement(OPERATOR, "2026-03")
    assert not march.provisional and march.closed_at == APRIL_2
    files = {fmt: render(march, fmt)[0] for fmt in ("csv", "xlsx")}
    alice_march = next(t for t in march.tenants if t.tenant == ALICE)
    pdf = render(march.model_copy(update={"tenants": [alice_march]}), "pdf")[0]
    assert {r[header("status")] for r in csv_rows(files["csv"])} == {FINAL}

    # new charges: one dated in March but written after the close (a correction), one in April
    late = books.run(ALICE, gpus=1, seconds=1800, charged_at=MARCH_10 + 3 * 86400)
    books.run(ALICE, gpus=1, seconds=3600, charged_at=APRIL_2 + 7200)
    again = books.statements.statement(OPERATOR, "2026-03")
    assert again == march
    assert {fmt: render(again, fmt)[0] for fmt in ("csv", "xlsx")} == files  # byte-identical
    assert render(again.model_copy(update={"tenants": [alice_march]}), "pdf")[0] == pdf
    april = next(t for t in books.statements.statement(OPERATOR, "2026-04").tenants if t.tenant == ALICE)
    late_amount = sum(e.amount_krw for e in books.money.entries(job_id=late))
    assert april.charged_krw == books.ledger_supply(ALICE, "2026-04") + late_amount
    # every charge counts exactly once across the months
    assert alice_march.charged_krw + april.charged_krw == sum(
        e.amount_krw for e in books.money.entries(tenant=ALICE, kinds=[LedgerKind.CHARGE])
    )

    with pytest.raises(ServiceError) as err:
        books.statements.close(OPERATOR, "2026-03", now=APRIL_2)
    assert err.value.status_code == 409 and err.value.code == "month_closed"
    with pytest.raises(ServiceError) as err:
        books.statements.close(Principal(subject=ALICE, role="tenant"), "2026-04", now=APRIL_2 + 40 * 86400)
    assert err.value.status_code == 403
    [row] = audit.list_entries(books.store, kind="month.closed")
    assert json.loads(row.detail)["rows_sha256"] == closed.rows_sha256 and row.actor == "operator:default"
    assert audit.verify(books.store).ok


def test_months_close_in_order(books):
    books.run(ALICE, gpus=1, seconds=3600, charged_at=MARCH_10)
    with pytest.raises(ServiceError) as err:
        books.statements.close(OPERATOR, "2026-04", now=APRIL_2 + 40 * 86400)
    assert "close 2026-03 first" in err.value.message


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_statements_over_the_api_and_the_cli(noop_plane, tmp_path):
    alice = noop_plane.client(ALICE)
    job = alice.wait(alice.submit({"entrypoint": "true", "cpus": 1}).id, timeout=30)
    assert job.status == "SUCCEEDED"
    month = kst_month(dt.datetime.now(dt.timezone.utc).timestamp())
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "testbed.cli",
            "statements",
            "export",
            "--month",
            month,
            "--out",
            str(out),
            "--url",
            noop_plane.url,
            "--token",
            noop_plane.token("operator"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "provisional (가집계)" in done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert f"statement-{month}-provisional.csv" in names and f"statement-{month}-provisional.xlsx" in names
    assert f"statement-{month}-{ALICE}-provisional.pdf" in names
    assert len([n for n in names if n.endswith(".pdf")]) == len(noop_plane.plane.stack.tenants)
    rows = csv_rows((out / f"statement-{month}-provisional.csv").read_bytes())
    assert {r[header("status")] for r in rows} == {PROVISIONAL}
    assert tenant_total(rows, ALICE, "supply_krw") == noop_plane.plane.money.balance(ALICE).charged_krw

    # a tenant sees and downloads only its own statement; closing is the operator's
    own = alice.statement(month)
    assert [t.tenant for t in own.tenants] == [ALICE]
    from testbed.client import TestbedError

    for call in (
        lambda: alice.statement(month, BOB),
        lambda: alice.download_statement(month, "pdf", tmp_path / "x", BOB),
    ):
        with pytest.raises(TestbedError) as err:
            call()
        assert err.value.status_code == 404
    with pytest.raises(TestbedError) as err:
        alice.close_month(month)
    assert err.value.status_code == 403
    with pytest.raises(TestbedError) as err:
        noop_plane.client("operator").close_month(month)  # this month has not ended
    assert err.value.status_code == 409
