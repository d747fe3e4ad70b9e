"""The portal in a real browser (Debian's Chromium + chromium-driver, Selenium) on the real local testbed.

A company logs in and, with the keyboard alone, submits a template job through the form (Korean in a
text field; Enter while the IME composes does not submit), gets a quote, watches the job finish in
the live log, sees its charge and its champion model, and downloads its statement. Another company
sees none of it, even by typing the URLs; the operator sees both. Every page at 320 and 1280 px, in
Korean and English: screenshots (folder: $PORTAL_SCREENSHOTS, default a temp dir), nothing cut or
overlapping, and no serious or critical axe-core violation.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.portal.browser import (
    CHROMEDRIVER,
    CHROMIUM,
    active,
    axe_violations,
    chromium,
    layout_problems,
    press,
    screenshot_dir,
    set_width,
    tab_to,
)
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make system-deps)",
    ),
]

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
MODEL = "smoke-demo"
STATE: dict = {}  # what one test leaves for the next (the module's tests run in order)


@pytest.fixture(scope="module")
def downloads() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="portal-downloads-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(downloads):
    with chromium(downloads) as driver:
        yield driver


@pytest.fixture(scope="module")
def testbed(local_testbed):
    """The session's local testbed (Ray, MLflow, the control plane and its portal), every component running: tests
    before this module stop and restart components, and ``up`` starts whatever is not running and healthy."""
    local_testbed.testbed.up(region=local_testbed.stack.region.id, num_cpus=2, num_gpus=2)
    local_testbed.refresh_tokens()
    return local_testbed


def company_job(testbed) -> str:
    """The job the first test submitted through the form (or, run alone, one submitted here)."""
    if "job" not in STATE:
        job = testbed.client(ALICE).submit({"template": "smoke", "params": {"epochs": 2}})
        testbed.client(ALICE).wait(job.id, timeout=150)
        STATE["job"] = job.id
    return STATE["job"]


def this_month() -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo("Asia/Seoul")).strftime("%Y-%m")


def portal_url(testbed, path: str) -> str:
    return testbed.control_plane_url + path


def log_in(driver, testbed, token: str, lang: str = "ko") -> None:
    """Log in by typing the token and pressing Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.delete_all_cookies()
    driver.get(portal_url(testbed, f"/portal/login?lang={lang}"))
    field = driver.find_element(By.ID, "token")
    field.send_keys(token + Keys.ENTER)
    wait_until(lambda: "/portal/login" not in driver.current_url, 15, "the login to finish")


def register_champion(testbed, tenant: str) -> None:
    """A registered model with a 'champion' alias in the tenant's own MLflow workspace (its own login)."""
    from mlflow.tracking import MlflowClient

    with testbed.client(tenant).mlflow_credentials().active():
        client = MlflowClient()
        experiment = client.get_experiment_by_name(f"{tenant}/portal") or None
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(f"{tenant}/portal")
        run = client.create_run(experiment_id)
        client.set_terminated(run.info.run_id)
        try:
            client.create_registered_model(MODEL)
        except Exception:  # noqa: BLE001 - already there from an earlier run of the module
            pass
        version = client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias(MODEL, "champion", version.version)
        STATE["champion"] = version.version


def ime_compose_then_enter(driver) -> None:
    """Compose Korean in the focused field through the DevTools protocol and press Enter mid-composition."""
    for partial in ("ㅎ", "하", "한"):
        driver.execute_cdp_cmd(
            "Input.imeSetComposition", {"text": partial, "selectionStart": len(partial), "selectionEnd": len(partial)}
        )
    for kind in ("rawKeyDown", "char", "keyUp"):
        event = {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
        if kind == "char":
            event["text"] = "\r"
        driver.execute_cdp_cmd("Input.dispatchKeyEvent", event)


def test_the_layout_and_axe_checks_can_fail(browser):
    """The checks themselves: a page that overflows, overlaps and lacks a label is caught."""
    driver = browser
    driver.get(
        "data:text/html;charset=utf-8,"
        + quote(
            '<html lang="ko"><body><p style="position:absolute;top:0;left:0">겹침 하나</p>'
            '<p style="position:absolute;top:0;left:0">겹침 둘</p><div style="width:2000px">넓음</div>'
            '<input type="text"><img src="x.png"></body></html>'
        )
    )
    set_width(driver, 320)
    problems = layout_problems(driver)
    assert any(p.startswith("page scrolls sideways") for p in problems)
    assert any(p.startswith("overlap:") for p in problems)
    assert any("label" in v or "image-alt" in v for v in axe_violations(driver))
    set_width(driver, 1280)


def test_company_submits_a_job_with_the_keyboard_and_downloads_its_statement(browser, testbed, downloads):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    alice = testbed.client(ALICE)
    register_champion(testbed, ALICE)
    jobs_before = len(alice.list_jobs().jobs)
    log_in(driver, testbed, testbed.tokens[ALICE])
    assert driver.current_url.endswith("/portal/jobs")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ko"

    # Jobs -> New job -> choose the template, all with Tab and Enter
    tab_to(driver, lambda e: e["href"].endswith("/portal/jobs/new") and e["tag"] == "A", "the New job link")
    press(driver, Keys.ENTER)
    wait_until(lambda: "/portal/jobs/new" in driver.current_url, 10, "the job form")
    tab_to(driver, lambda e: e["id"] == "template-pick", "the template picker")
    assert driver.execute_script("return document.activeElement.value") == "smoke"
    tab_to(driver, lambda e: e["tag"] == "BUTTON", "the Choose button")
    press(driver, Keys.ENTER)
    wait_until(lambda: driver.find_elements(By.ID, "job-form"), 10, "the smoke template's form")

    # the epochs field (typed number), then the note: Korean through the IME; Enter mid-composition must not submit
    tab_to(driver, lambda e: e["id"] == "param-epochs", "the epochs field")
    press(driver, Keys.CONTROL + "a")
    press(driver, "3")
    tab_to(driver, lambda e: e["id"] == "note", "the note field")
    ime_compose_then_enter(driver)
    time.sleep(1.0)
    assert "/portal/jobs/new" in driver.current_url, "Enter during IME composition submitted the form"
    assert len(alice.list_jobs().jobs) == jobs_before
    driver.execute_cdp_cmd("Input.insertText", {"text": "한글 메모"})
    note = driver.find_element(By.ID, "note").get_attribute("value")
    assert "한글" in note and "메모" in note, note

    # a quote in won before submitting
    tab_to(driver, lambda e: e["tag"] == "BUTTON" and e["text"] == "비용 견적 보기", "the quote button")
    press(driver, Keys.ENTER)
    hold = wait_until(lambda: (driver.find_elements(By.ID, "quote-hold") or [None])[0], 15, "the quote").text
    assert re.fullmatch(r"[\d,]+원", hold), hold

    tab_to(driver, lambda e: e["id"] == "submit-job", "the submit button")
    press(driver, Keys.ENTER)
    wait_until(lambda: re.search(r"/portal/jobs/job-[0-9a-f]+$", driver.current_url), 20, "the job page")
    job_id = driver.current_url.rsplit("/", 1)[1]
    STATE["job"] = job_id
    job = alice.get_job(job_id)
    assert job.template == "smoke" and job.params["epochs"] == 3

    # the live log, polled by htmx, until the job's log is final
    def final_log():
        state = driver.find_element(By.CSS_SELECTOR, "#log .log-state").text
        return "최종 로그" in state and state

    state = wait_until(final_log, 150, "the job to finish in the live log", every=1.0)
    assert "성공" in state, (state, driver.find_element(By.ID, "log-text").text[-2000:])
    log = driver.find_element(By.ID, "log-text")
    assert "final_loss=" in log.text
    scrolled = driver.execute_script(
        "const p = arguments[0]; return p.scrollTop + p.clientHeight >= p.scrollHeight - 2;", log
    )
    assert scrolled, "the log is not scrolled to its end"

    # its charge (the API's own figure, shown in won)
    driver.refresh()
    charged = alice.get_job(job_id).charged_krw
    assert driver.find_element(By.ID, "job-charge").text == f"{charged:,}원"

    # its champion
    driver.get(testbed.control_plane_url + "/portal/models")
    champion = driver.find_element(By.CSS_SELECTOR, ".champion").text
    assert champion == f"v{STATE['champion']}"
    assert (
        driver.find_element(By.LINK_TEXT, MODEL)
        .get_attribute("href")
        .startswith(alice.mlflow_credentials().tracking_uri)
    )

    # its statement: the navigation and the download with the keyboard alone
    tab_to(driver, lambda e: e["href"].endswith("/portal/statements"), "the Statements link")
    press(driver, Keys.ENTER)
    wait_until(lambda: "/portal/statements" in driver.current_url, 10, "the statements page")
    assert "잠정" in driver.find_element(By.TAG_NAME, "main").text  # the open month is provisional
    tab_to(driver, lambda e: e["id"] == f"download-csv-{ALICE}", "the CSV download link")
    press(driver, Keys.ENTER)
    csv_file = wait_until(
        lambda: next((p for p in downloads.glob("statement-*.csv")), None), 20, "the statement download"
    )
    text = csv_file.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf") and ALICE.encode() in text


def test_another_company_sees_none_of_it(browser, testbed):
    from selenium.webdriver.common.by import By

    driver = browser
    job_id = company_job(testbed)
    log_in(driver, testbed, testbed.tokens[BOB])
    assert job_id not in driver.find_element(By.TAG_NAME, "main").text
    for path in (
        f"/portal/jobs/{job_id}",
        f"/portal/jobs/{job_id}/log",
        f"/portal/grant?tenant={ALICE}",
        f"/portal/statements/{this_month()}/download?format=csv&tenant={ALICE}",
        "/portal/operator",
    ):
        driver.get(portal_url(testbed, path))
        main = driver.find_element(By.TAG_NAME, "main").text
        assert driver.find_element(By.TAG_NAME, "h1").text == "찾을 수 없음", path
        assert ALICE not in main and "smoke" not in main, path
    driver.get(portal_url(testbed, "/portal/models"))
    assert MODEL not in driver.find_element(By.TAG_NAME, "main").text
    driver.get(portal_url(testbed, "/portal/statements"))
    assert ALICE not in driver.find_element(By.TAG_NAME, "main").text


def test_the_operator_sees_both(browser, testbed):
    from selenium.webdriver.common.by import By

    driver = browser
    alice_job = company_job(testbed)
    bob_job = testbed.client(BOB).submit({"entrypoint": "python -c 'print(1)'"})
    log_in(driver, testbed, testbed.operator_token)
    assert driver.current_url.endswith("/portal/operator")
    overview = driver.find_element(By.TAG_NAME, "main").text
    names = {t.id: t.name for t in testbed.stack.tenants}
    assert names[ALICE] in overview and names[BOB] in overview
    driver.get(portal_url(testbed, "/portal/jobs"))
    listed = driver.find_element(By.TAG_NAME, "main").text
    assert alice_job in listed and bob_job.id in listed
    driver.get(portal_url(testbed, f"/portal/jobs/{alice_job}"))
    assert driver.find_element(By.TAG_NAME, "h1").text.endswith(alice_job)


COMPANY_PAGES = [
    "/portal/jobs",
    "/portal/jobs/new?template=tabular-quality",
    "/portal/grant",
    "/portal/models",
    "/portal/statements",
    "/portal/data",
]
OPERATOR_PAGES = [
    "/portal/operator",
    "/portal/jobs",
    "/portal/operator/tokens",
    "/portal/statements",
    "/portal/operator/audit",
]


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_pages_fit_320_and_1280_px_and_pass_axe(browser, testbed, lang):
    driver = browser
    folder = screenshot_dir()
    problems: list[str] = []
    for role, token, pages in (
        ("company", testbed.tokens[ALICE], [*COMPANY_PAGES, f"/portal/jobs/{company_job(testbed)}"]),
        ("operator", testbed.operator_token, OPERATOR_PAGES),
    ):
        log_in(driver, testbed, token, lang=lang)
        for path in pages:
            driver.get(portal_url(testbed, path))
            for width in (320, 1280):
                set_width(driver, width)
                time.sleep(0.1)
                name = re.sub(r"[^a-z0-9]+", "-", path.split("?")[0].removeprefix("/portal/").lower()).strip("-")
                name = "job" if name.startswith("jobs-job-") else name
                driver.save_screenshot(str(folder / f"{role}-{name}-{lang}-{width}.png"))
                problems += [f"{role} {path} {lang} {width}px {p}" for p in layout_problems(driver)]
                if width == 320 or lang == "ko":
                    problems += [f"{role} {path} {lang} {width}px axe {v}" for v in axe_violations(driver)]
    set_width(driver, 1280)
    print(f"portal screenshots: {folder}")
    assert problems == [], "\n".join(problems)
    assert len(list(folder.glob(f"*-{lang}-320.png"))) >= 11 and len(list(folder.glob(f"*-{lang}-1280.png"))) >= 11


def test_keyboard_focus_is_visible(browser, testbed):
    """Tab moves a visible focus ring through the page (keyboard users see where they are)."""
    driver = browser
    log_in(driver, testbed, testbed.tokens[ALICE])
    tab_to(driver, lambda e: e["tag"] == "A" and e["href"].endswith("/portal/grant"), "the Grant link")
    outline = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    assert active(driver)["text"] == "지원금"
