"""The report in a real browser: headless Chromium (Debian's ``chromium``) opens the page,
every figure loads, nothing asks for the network, and a screenshot is kept.

Chromium is driven over ``--remote-debugging-pipe`` (:mod:`cdp_pipe`): the Network domain
reports every request the page makes, whatever its scheme, so the check does not rely on
reading the HTML. Host names resolve to nothing (``--host-resolver-rules``), so even a
request that slipped through could not leave the machine. A control page with one remote
image shows that the check sees such a request.

Skips when no Chromium is installed, unless ``NEUROFEAT_REQUIRE_CHROMIUM=1`` (set by
``.ci/run`` once it installed it), which makes its absence a failure. The screenshot is
written to the test's tmp folder and, when ``NEUROFEAT_TEST_ARTIFACTS`` names a folder,
there too (``report.png``).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image as PILImage

from cdp_pipe import Browser

pytestmark = pytest.mark.slow

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_WIDTH = 1280
_MAX_SHOT_HEIGHT = 16000


@pytest.fixture(scope="session")  # before the session-scoped report: a skip is instant
def chromium() -> str:
    explicit = os.environ.get("NEUROFEAT_CHROMIUM")
    found = explicit or next((shutil.which(n) for n in _NAMES if shutil.which(n)), None)
    if found:
        return found
    if os.environ.get("NEUROFEAT_REQUIRE_CHROMIUM") == "1":
        pytest.fail("NEUROFEAT_REQUIRE_CHROMIUM=1 but no chromium on PATH: install Debian's "
                    "package (apt-get install chromium) or point NEUROFEAT_CHROMIUM at a binary")
    pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; .ci/run "
                "installs it and then requires it); NEUROFEAT_CHROMIUM may name a binary")


def _open(chromium: str, tmp_path: Path) -> Browser:
    home = tmp_path / "chromium-home"
    home.mkdir(exist_ok=True)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--window-size={_WIDTH},900"]
    env = dict(os.environ, HOME=str(home))
    return Browser(chromium, args, timeout=90, log=tmp_path / "chromium.log", env=env)


def _load(browser: Browser, page: Path) -> tuple[str, list[dict], list[dict]]:
    """Open ``page`` in a new tab; return the session, the images' state, the requests."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"]
    browser.send("Emulation.setDeviceMetricsOverride", {"width": _WIDTH, "height": 900,
                                                        "deviceScaleFactor": 1,
                                                        "mobile": False}, session=session)
    for domain in ("Network", "Page", "Log"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    browser.wait_event("Page.loadEventFired", session)
    images = browser.send("Runtime.evaluate", {
        "expression": "Array.from(document.images).map(i => ({complete: i.complete, "
                      "width: i.naturalWidth, height: i.naturalHeight, alt: i.alt}))",
        "returnByValue": True}, session=session)["result"]["value"]
    requests = [e["params"]["request"] for e in browser.events("Network.requestWillBeSent")
                if e.get("sessionId") == session]
    return session, images, requests


def _remote(requests: list[dict]) -> list[str]:
    return [r["url"] for r in requests if not r["url"].startswith(("data:", "file:"))]


def test_report_renders_in_chromium_without_network(chromium, full_report, tmp_path):
    page = full_report.path
    n_images = len(re.findall(r"<img ", full_report.html))
    with _open(chromium, tmp_path) as browser:
        session, images, requests = _load(browser, page)
        metrics = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        height = min(int(metrics["height"]), _MAX_SHOT_HEIGHT)
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": _WIDTH, "height": height, "scale": 1}},
            session=session)
        errors = [e["params"]["entry"] for e in browser.events("Log.entryAdded")
                  if e["params"]["entry"]["level"] == "error"]
    png = base64.b64decode(shot["data"])
    (tmp_path / "report.png").write_bytes(png)
    artifacts = os.environ.get("NEUROFEAT_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        (Path(artifacts) / "report.png").write_bytes(png)

    assert len(images) == n_images >= 12
    broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0
                                               and i["height"] > 0)]
    assert not broken, f"figures that did not load: {broken}"
    assert not _remote(requests), _remote(requests)
    assert requests[0]["url"] == page.resolve().as_uri()
    assert not errors, errors  # e.g. a Content-Security-Policy violation
    with PILImage.open(io.BytesIO(png)) as picture:
        assert picture.size == (_WIDTH, height) and height > 2000
        assert len(picture.convert("L").getcolors(maxcolors=256) or ()) > 16  # not blank


def test_the_network_check_sees_a_remote_image(chromium, tmp_path):
    """Control: a page that does ask for a remote image is caught, and its image fails."""
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img alt="remote" '
                       'src="http://neurofeat-report.invalid/figure.png"></body></html>')
    with _open(chromium, tmp_path) as browser:
        _, images, requests = _load(browser, control)
    assert _remote(requests) == ["http://neurofeat-report.invalid/figure.png"]
    assert images == [{"complete": True, "width": 0, "height": 0, "alt": "remote"}]
