"""The dashboard in a real browser: Debian's chromium driven by Playwright against uvicorn
serving ``create_app`` over a filled store. Checks what a person would see (the login,
device rows, drawn charts, the trigger's evidence tables, a halted rollout shown as halted)
and keeps a screenshot of every page in pytest's tmp dir and in test-output/screenshots/. A
detector fleet (issue 19) has its own store: its camera and rollout pages."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from edgekit.local_broker import free_port
from tests.cloud_sync.dashboard.conftest import TOKEN
from tests.cloud_sync.dashboard.fill import fill_store, trigger_cfg
from tests.cloud_sync.dashboard.fill_detector import detector_cfg, fill_detector_fleet

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
KEEP = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium; run .ci/system-deps.sh"),
]

# Non-white, non-transparent pixels of a canvas: > 0 means the chart drew something.
INKED = """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++; }
  return n; }"""


@pytest.fixture()
def server(tmp_path):
    """uvicorn in a thread serving the app over a filled SQLite store; yields (url, filled)."""
    yield from _serve(tmp_path, trigger_cfg, fill_store)


@pytest.fixture()
def detector_server(tmp_path):
    """The same over a store filled with a detector fleet (``fill_detector``)."""
    yield from _serve(tmp_path, detector_cfg, fill_detector_fleet)


def _serve(tmp_path, make_cfg, fill):
    import uvicorn

    from cloud_sync.api import create_app
    from cloud_sync.store import open_store

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    engine = open_store(url)
    cfg = make_cfg(tmp_path / "cloud", url)
    filled = fill(engine, cfg, time.time())
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(cfg, engine, api_token=TOKEN),
                                        host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", filled
    srv.should_exit = True
    thread.join(10)
    engine.dispose()


@pytest.fixture()
def page(tmp_path):
    """A chromium page, 1400 px wide."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    KEEP.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, KEEP / path.name)


def _no_raw_documents(page) -> None:
    cells = page.locator("td").all_inner_texts()
    raw = [c for c in cells if c.strip().startswith(("{", "[{")) or "': " in c]
    assert not raw, f"raw documents in table cells: {raw[:3]}"


def test_login_then_devices_table(server, page, tmp_path):
    base, filled = server
    page.goto(f"{base}/dashboard/devices")
    assert "/dashboard/login" in page.url
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text().startswith("wrong token")
    _shot(page, tmp_path, "01-login-wrong-token")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/devices")
    rows = page.locator("tr.device-row")
    assert rows.count() == 14
    assert page.get_by_test_id("device-total").inner_text() == "14"
    assert "dev-000" in rows.first.inner_text()
    _shot(page, tmp_path, "02-devices")
    page.click("th >> text=drift")  # sorted by drift, worst first after a second click
    page.wait_for_url("**sort=drift**")
    page.click("th >> text=drift")
    page.wait_for_url("**dir=desc**")
    first = page.locator("tr.device-row").first.inner_text()
    assert first.split()[0] in filled.drifted and "drift" in first
    page.select_option("select[name=state]", "stale")
    page.wait_for_url("**state=stale**")
    assert page.get_by_test_id("device-total").inner_text() == "2"
    _shot(page, tmp_path, "03-devices-stale-by-drift")


def _login(page, base: str, path: str) -> None:
    page.goto(f"{base}{path}")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}")


def test_overview_and_device_charts(server, page, tmp_path):
    base, _ = server
    _login(page, base, "/dashboard/")
    cards = page.locator(".cards").inner_text()
    assert "14\ndevices" in cards and "11\nonline" in cards and "2\nstale" in cards
    assert "sim-model" in page.locator("main").inner_text()
    _shot(page, tmp_path, "04-overview")
    page.goto(f"{base}/dashboard/devices/dev-000")
    page.wait_for_selector(".chart[data-drawn=true] canvas")
    charts = page.locator(".chart[data-drawn=true] canvas")
    assert charts.count() == 6  # latency, inferences, confidence + input, output, confidence
    for i in range(charts.count()):
        assert charts.nth(i).evaluate(INKED) > 500, f"chart {i} looks blank"
    assert page.locator("text=Input channels furthest over").count() == 1
    _shot(page, tmp_path, "05-device-dev-000")


def _nothing_overflows(page) -> None:
    """No fact (a long file path, say) runs past its card."""
    over = page.eval_on_selector_all(
        ".facts dd", "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                     ".map(e => e.innerText)")
    assert not over, f"facts wider than their box: {over[:3]}"


def test_trigger_evidence_is_tables(server, page, tmp_path):
    base, filled = server
    _login(page, base, "/dashboard/triggers")
    assert page.locator("tbody tr").count() == 1
    _shot(page, tmp_path, "06-triggers")
    page.click(f"a[href='/dashboard/triggers/{filled.trigger_id}']")
    page.wait_for_selector(".evidence table")
    evidence = page.locator(".evidence").inner_text()
    for device in filled.drifted:
        assert device in evidence
    assert "top channels" in evidence and "devices affected" in evidence
    assert "s3cret" not in page.content()
    _no_raw_documents(page)
    _nothing_overflows(page)
    _shot(page, tmp_path, "07-trigger")


def test_rollouts_promoted_and_halted(server, page, tmp_path):
    base, filled = server
    _login(page, base, "/dashboard/rollouts")
    halted = page.locator("tr.rollout-row[data-state=halted]")
    assert halted.count() == 1 and "halted" in halted.inner_text()
    assert page.locator("tr.rollout-row[data-state=done]").count() == 1
    _shot(page, tmp_path, "08-rollouts")
    page.goto(f"{base}/dashboard/rollouts/{filled.halted}")
    banner = page.get_by_test_id("halted-banner")
    assert banner.is_visible() and banner.inner_text().startswith("HALTED")
    assert "confidence" in banner.inner_text()
    compare = page.locator("table.compare").first.inner_text()
    assert "canary (new version)" in compare and "control (old version)" in compare
    assert "over the limit" in page.locator("table.checks").first.inner_text()
    _no_raw_documents(page)
    _shot(page, tmp_path, "09-rollout-halted")
    page.goto(f"{base}/dashboard/rollouts/{filled.promoted}")
    assert page.locator(".banner.done").inner_text().startswith("Promoted")
    states = page.locator("table.timeline > tbody > tr > td:nth-child(2)").all_inner_texts()
    assert states == ["pending", "canary", "baking", "wave", "baking", "wave", "baking", "done"]
    _shot(page, tmp_path, "10-rollout-promoted")


def _columns_fit(page) -> None:
    """No table cell's text is cut off (a truncated column)."""
    cut = page.eval_on_selector_all(
        "td, th", "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                  ".map(e => e.innerText)")
    assert not cut, f"truncated cells: {cut[:3]}"


def test_detector_fleet_camera_and_rollout_pages(detector_server, page, tmp_path):
    base, filled = detector_server
    _login(page, base, f"/dashboard/devices/{filled.drifting[0]}")
    page.wait_for_selector(".chart[data-drawn=true] canvas")
    charts = page.locator(".chart[data-drawn=true] canvas")
    # latency, inferences, detections per frame, empty frames, score + 4 detection drift kinds
    assert charts.count() == 9
    for i in range(charts.count()):
        assert charts.nth(i).evaluate(INKED) > 500, f"chart {i} looks blank"
    shown = page.locator("main").inner_text()
    assert "Detections per frame" in shown and "Detected class mix" in shown
    _columns_fit(page)
    _shot(page, tmp_path, "11-detector-camera")
    page.goto(f"{base}/dashboard/rollouts/{filled.halted}")
    banner = page.get_by_test_id("halted-banner").inner_text()
    assert banner.startswith("HALTED") and "detections per frame" in banner
    checks = page.locator("table.checks").first.inner_text()
    assert "under the limit" in checks and "empty-frame rate increase" in checks
    mix = page.get_by_test_id("class-mix").first
    assert mix.is_visible() and "class 0" in mix.inner_text()
    _no_raw_documents(page)
    _columns_fit(page)
    _nothing_overflows(page)
    _shot(page, tmp_path, "12-detector-rollout-halted")
    page.goto(f"{base}/dashboard/triggers/{filled.trigger_id}")
    evidence = page.locator(".evidence").inner_text()
    assert all(d in evidence for d in filled.drifting) and "det_class" in evidence
    _no_raw_documents(page)
    _columns_fit(page)
    _nothing_overflows(page)
    _shot(page, tmp_path, "13-detector-trigger")
