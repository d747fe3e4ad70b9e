"""Statement exporters: CSV (UTF-8 with BOM), XLSX and a one-page PDF per tenant, from the typed model only.

Reproducible: the same statement gives the same bytes. Every timestamp written into a file is the
statement's ``issued_at`` (a closed month: when it was closed), the XLSX archive's members carry that
date, and the PDF is written in ReportLab's invariant mode (fixed creation date and document id).
The PDF embeds a Korean TrueType font (Debian ``fonts-nanum``; ``TESTBED_STATEMENT_FONT`` names another
.ttf); a missing font is a one-line error naming the paths tried.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from testbed.statements import PROVISIONAL, TOTAL, StatementRow, TenantStatement

KST = ZoneInfo("Asia/Seoul")
FONT_ENV = "TESTBED_STATEMENT_FONT"
FONT_PATHS = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum-gothic/NanumGothic.ttf",
)
FONT_NAME = "NanumGothic"
BOM = "\ufeff"
# The tenant's idle GPU-hours of the month: a TenantStatement figure, written on the tenant's total row only (a
# column that adds up: blank on the pool and subtotal rows).
IDLE, IDLE_HEADER = "idle_gpu_hours", "유휴 GPU 시간 (idle GPU-hours)"

# (header, field) of every exported column; the header is Korean first, English beside it.
COLUMNS: list[tuple[str, str]] = [
    ("상태 (status)", "status"),
    ("월 (month)", "month"),
    ("기업 ID (tenant)", "tenant"),
    ("기업명 (name)", "tenant_name"),
    ("재원 (funding source)", "funding_source"),
    ("비목 (cost item)", "cost_item"),
    ("풀 (pool)", "pool"),
    ("분담비율 (share)", "share"),
    ("GPU 시간 (GPU-hours)", "gpu_hours"),
    ("CPU 시간 (CPU-hours)", "cpu_hours"),
    ("메모리 GiB 시간 (GiB-hours)", "memory_gib_hours"),
    ("작업 수 (jobs)", "jobs"),
    ("공급가액 (supply, KRW)", "supply_krw"),
    ("부가세 (VAT, KRW)", "vat_krw"),
    ("합계 (total, KRW)", "total_krw"),
    ("지원금 잔액 (grant remaining, KRW)", "grant_remaining_krw"),
    (IDLE_HEADER, IDLE),
]
FUNDING_NAMES = {"national": "국비", "local": "지방비", "self": "자부담", TOTAL: TOTAL}


class ExportError(RuntimeError):
    """A statement cannot be rendered (e.g. the Korean font is missing)."""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def all_rows(statements: Sequence[TenantStatement]) -> list[StatementRow]:
    return [row for statement in statements for row in statement.rows]


def row_values(statements: Sequence[TenantStatement]) -> list[list[Any]]:
    """Every statement row's values in ``COLUMNS`` order; the idle GPU-hours on each tenant's total row."""
    lines = []
    for statement in statements:
        for row in statement.rows:
            idle = statement.idle_gpu_hours if row is statement.total else None
            lines.append([idle if name == IDLE else getattr(row, name) for _, name in COLUMNS])
    return lines


def to_csv(statements: Sequence[TenantStatement]) -> bytes:
    """One line per statement row (every row says 확정 or 가집계), UTF-8 with a BOM, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for header, _ in COLUMNS])
    for values in row_values(statements):
        writer.writerow([_cell(value) for value in values])
    return (BOM + out.getvalue()).encode("utf-8")


def _zip_date(when: dt.datetime) -> tuple[int, int, int, int, int, int]:
    local = when.astimezone(KST)
    return (max(local.year, 1980), local.month, local.day, local.hour, local.minute, local.second - local.second % 2)


def normalise_zip(data: bytes, when: dt.datetime) -> bytes:
    """The same archive with every member dated ``when`` (zip stores the time of writing otherwise)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=_zip_date(when))
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o600 << 16
            target.writestr(member, source.read(info.filename))
    return out.getvalue()


def to_xlsx(statements: Sequence[TenantStatement], issued_at: dt.datetime, title: str) -> bytes:
    """One sheet, the same columns as the CSV, won as integers; document properties dated ``issued_at``."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.writer.excel import ExcelWriter

    book = Workbook()
    sheet = book.active
    sheet.title = "명세서"
    sheet.append([header for header, _ in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for values in row_values(statements):
        sheet.append([float(v) if isinstance(v, Decimal) else v for v in values])
    for index, (_, name) in enumerate(COLUMNS, start=1):
        if name.endswith("_krw"):
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = "#,##0"
    naive = issued_at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    props = book.properties
    props.creator = props.lastModifiedBy = "Regional AI Testbed"
    props.title = title
    props.created = props.modified = naive
    buffer = io.BytesIO()
    # ExcelWriter, not book.save(): save() stamps the document's "modified" property with the current time.
    ExcelWriter(book, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)).save()
    return normalise_zip(buffer.getvalue(), issued_at)


def korean_font() -> Path:
    """The TrueType font the PDF embeds."""
    candidates = [os.environ[FONT_ENV]] if os.environ.get(FONT_ENV) else list(FONT_PATHS)
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ExportError(
        f"no Korean TrueType font for the PDF statement at {', '.join(candidates)}: install Debian's "
        f"fonts-nanum (`make system-deps`) or set {FONT_ENV} to a .ttf file"
    )


def _won(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


PDF_COLUMNS: list[tuple[str, str, float]] = [  # (header, field, width in points)
    ("상태", "status", 40),
    ("재원", "funding_source", 46),
    ("풀", "pool", 70),
    ("비율", "share", 36),
    ("GPU 시간", "gpu_hours", 58),
    ("CPU 시간", "cpu_hours", 62),
    ("메모리 GiB·h", "memory_gib_hours", 70),
    ("작업", "jobs", 34),
    ("공급가액", "supply_krw", 84),
    ("부가세", "vat_krw", 72),
    ("합계", "total_krw", 84),
    ("지원금 잔액", "grant_remaining_krw", 90),
]


def _pdf_cell(row: StatementRow, name: str) -> str:
    value = getattr(row, name)
    if name == "funding_source":
        return FUNDING_NAMES.get(value, value)
    if name.endswith("_krw"):
        return _won(value)
    return str(_cell(value))


def to_pdf(statement: TenantStatement, issued_at: dt.datetime) -> bytes:
    """The tenant's statement on one A4 landscape page, the Korean font embedded; 가집계 across an open month."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    if FONT_NAME not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT_NAME, str(korean_font())))
    buffer = io.BytesIO()
    width, height = landscape(A4)
    pdf = canvas.Canvas(
        buffer, pagesize=(width, height), invariant=1, pageCompression=1, initialFontName=FONT_NAME, initialFontSize=10
    )  # no unembedded Helvetica
    title = f"{statement.month} 테스트베드 사용료 명세서 (Testbed usage statement)"
    pdf.setTitle(title)
    pdf.setAuthor("Regional AI Testbed")
    pdf.setSubject(f"{statement.region} / {statement.tenant} / {statement.month}")
    pdf.setCreator("Regional AI Testbed")
    if statement.provisional:
        pdf.saveState()
        pdf.setFillGray(0.85)
        pdf.setFont(FONT_NAME, 110)
        pdf.translate(width / 2, height / 2)
        pdf.rotate(25)
        pdf.drawCentredString(0, -40, PROVISIONAL)
        pdf.restoreState()
    left, y = 36, height - 48
    pdf.setFont(FONT_NAME, 16)
    pdf.drawString(left, y, title + (f"  [{PROVISIONAL} · provisional]" if statement.provisional else ""))
    pdf.setFont(FONT_NAME, 10)
    facts = [
        f"기업 (company): {statement.tenant_name} ({statement.tenant})   지역 (region): {statement.region}   "
        f"비목 (cost item): {statement.cost_item}",
        f"지원금 (grant): {_won(statement.grant_krw)} 원   당월 공급가액 (supply this month): {_won(statement.charged_krw)} 원   "
        f"누계 (to date): {_won(statement.charged_to_date_krw)} 원   잔액 (remaining): {_won(statement.grant_remaining_krw)} 원",
        f"부가세율 (VAT rate): {statement.vat_rate}   발행 (issued): {issued_at.astimezone(KST):%Y-%m-%d %H:%M} KST   "
        + (
            "상태: 가집계 — 월 마감 전 잠정 금액 (provisional: the month is not closed)"
            if statement.provisional
            else "상태: 확정 — 마감된 월 (final: the month is closed)"
        ),
        f"유휴 GPU 시간 (idle GPU-hours): {_cell(statement.idle_gpu_hours)}   "
        "— 할당되었으나 쓰이지 않은 GPU 시간 (GPU time held but left idle)",
    ]
    for line in facts:
        y -= 18
        pdf.drawString(left, y, line)
    y -= 28
    pdf.setFont(FONT_NAME, 9)
    x = left
    for header, name, col_width in PDF_COLUMNS:
        if name in ("status", "funding_source", "pool"):
            pdf.drawString(x, y, header)
        else:
            pdf.drawRightString(x + col_width - 6, y, header)
        x += col_width
    pdf.line(left, y - 4, x, y - 4)
    for row in statement.rows:
        y -= 16
        if row.pool == TOTAL:
            pdf.setFont(FONT_NAME, 9)
            pdf.setFillGray(0.3 if row.funding_source != TOTAL else 0.0)
        x = left
        for _, name, col_width in PDF_COLUMNS:
            text = _pdf_cell(row, name)
            if name in ("status", "funding_source", "pool"):
                pdf.drawString(x, y, text)
            else:
                pdf.drawRightString(x + col_width - 6, y, text)
            x += col_width
        pdf.setFillGray(0.0)
        if row.pool == TOTAL:
            pdf.line(left, y - 4, x, y - 4)
    y -= 30
    pdf.setFont(FONT_NAME, 8)
    pdf.drawString(
        left,
        y,
        "공급가액은 지원금 차감 기준(부가세 제외)이며, 부가세는 행별로 반올림합니다. "
        "(Supply amounts exclude VAT and are what the grant is consumed by; VAT is rounded half up per row.)",
    )
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def write_exports(statements: Sequence[TenantStatement], month: str, issued_at: dt.datetime, out: Path) -> list[Path]:
    """Write statement-MONTH.csv, statement-MONTH.xlsx and statement-MONTH-TENANT.pdf (one per tenant) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in (
        (f"statement-{month}.csv", to_csv(statements)),
        (f"statement-{month}.xlsx", to_xlsx(statements, issued_at, f"{month} statement")),
    ):
        (out / name).write_bytes(data)
        written.append(out / name)
    for statement in statements:
        path = out / f"statement-{month}-{statement.tenant}.pdf"
        path.write_bytes(to_pdf(statement, issued_at))
        written.append(path)
    return written
