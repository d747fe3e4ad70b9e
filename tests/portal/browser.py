"""Driving Debian's Chromium with Selenium for the portal's tests: no browser or driver is downloaded.

The driver's path is given explicitly (``/usr/bin/chromedriver``), which makes Selenium skip Selenium
Manager; :func:`chromium` also makes Selenium Manager fail loudly should anything call it.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE = Path(__file__).with_name("axe.min.js")
SCREENSHOTS_ENV = "PORTAL_SCREENSHOTS"  # folder the tests write their screenshots to (default: a temp dir)
BLOCKING = ("serious", "critical")
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def screenshot_dir() -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tempfile.mkdtemp(prefix="portal-screens-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium(download_dir: Path) -> Iterator["object"]:
    """A headless Chromium session; quits (and leaves no process) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def refuse(*_args, **_kwargs):
        raise AssertionError("Selenium Manager must not run: the driver path is given")

    original = SeleniumManager.binary_paths
    SeleniumManager.binary_paths = refuse  # type: ignore[method-assign]
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--lang=ko-KR",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
        driver.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})  # axe is injected by the test
        yield driver
    finally:
        driver.quit()
        SeleniumManager.binary_paths = original  # type: ignore[method-assign]


def set_width(driver, width: int, height: int = 900) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


LAYOUT_JS = r"""
const vw = document.documentElement.clientWidth;
const hiddenBox = el => { for (let p = el; p; p = p.parentElement) { const r = p.getBoundingClientRect();
  if (getComputedStyle(p).position === 'absolute' && r.width <= 1 && r.height <= 1) return true; } return false; };
const visible = el => { const s = getComputedStyle(el); const r = el.getBoundingClientRect();
  return s.visibility !== 'hidden' && s.display !== 'none' && r.width > 0 && r.height > 0 && !el.closest('.sr-only, .skip')
    && !hiddenBox(el); };
const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) { const o = getComputedStyle(p).overflowX;
  if (o === 'auto' || o === 'scroll') return true; } return false; };
const leaves = [...document.body.querySelectorAll('*')].filter(el => !el.closest('svg') && visible(el) &&
  (['INPUT', 'SELECT', 'BUTTON', 'TEXTAREA'].includes(el.tagName) ||
   ([...el.children].length === 0 && el.textContent.trim().length > 0)));
const cut = leaves.filter(el => !scrolls(el) && (el.getBoundingClientRect().right > vw + 1 || el.getBoundingClientRect().left < -1))
  .map(el => el.tagName + ':' + el.textContent.trim().slice(0, 40));
const overlaps = [];
// per line box (an inline element that wraps has one rect per line, not its bounding box)
const boxes = leaves.map(el => [...el.getClientRects()]);
const hit = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 2 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 2;
for (let i = 0; i < leaves.length; i++) {
  for (let j = i + 1; j < leaves.length; j++) { if (leaves[i].contains(leaves[j]) || leaves[j].contains(leaves[i])) continue;
    if (boxes[i].some(a => boxes[j].some(b => hit(a, b)))) overlaps.push(leaves[i].tagName + ':' + leaves[i].textContent.trim().slice(0, 30) + ' / ' +
                                      leaves[j].tagName + ':' + leaves[j].textContent.trim().slice(0, 30)); } }
return {scrollWidth: document.documentElement.scrollWidth, viewport: vw, cut: cut, overlaps: overlaps.slice(0, 10)};
"""


def layout_problems(driver) -> list[str]:
    """Horizontal overflow of the page, elements cut at the viewport's edges, and overlapping elements."""
    found = driver.execute_script(LAYOUT_JS)
    problems = []
    if found["scrollWidth"] > found["viewport"]:
        problems.append(f"page scrolls sideways: {found['scrollWidth']} > {found['viewport']} px")
    problems += [f"cut: {c}" for c in found["cut"]] + [f"overlap: {o}" for o in found["overlaps"]]
    return problems


def axe_violations(driver) -> list[str]:
    """axe-core's serious and critical violations of WCAG 2.x A/AA on the current page."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', targets: [String(e)]}]));",
        WCAG_TAGS,
    )
    return [f"{v['impact']}: {v['id']} at {v['targets']}" for v in result if v["impact"] in BLOCKING]


def active(driver) -> dict:
    return driver.execute_script(
        "const e = document.activeElement; return {tag: e.tagName, id: e.id, text: e.textContent.trim(), "
        "href: e.getAttribute('href') || ''};"
    )


def tab_to(driver, matches: Callable[[dict], bool], what: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches (keyboard only)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if matches(active(driver)):
            return
    raise AssertionError(f"Tab never reached {what}")


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()
