"""Open the report in headless Chromium (DevTools protocol): no console errors, every figure drawn.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and ``websocket-client``.
Skipped when /usr/bin/chromium is absent, unless ``CI`` is set: then it fails.
The screenshot is kept at ``build/report-screenshot.png``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # starts a browser

CHROMIUM = os.environ.get("WEIGHTLAB_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
SCREENSHOT = Path(__file__).resolve().parent.parent / "build" / "report-screenshot.png"

if not Path(CHROMIUM).exists():
    if IN_CI:
        pytest.fail(f"CI is set but {CHROMIUM} is missing: apt-get install -y chromium",
                    pytrace=False)  # fmt: skip
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium); set CI=true to make this "
                "an error", allow_module_level=True)  # fmt: skip

websocket = pytest.importorskip("websocket", reason="pip install websocket-client") if not IN_CI \
    else __import__("websocket")  # fmt: skip

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0", "--window-size=1280,900"]  # fmt: skip


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from _report_study import tiny_context
    from weightlab.report import render_html

    report = tmp_path_factory.mktemp("report") / "report.html"
    report.write_text(render_html(tiny_context()), encoding="utf-8")
    profile = tempfile.mkdtemp(prefix="weightlab-chromium-")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        dt = DevTools(url)
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.call(f"{domain}.enable")
        dt.call("Page.navigate", url=report.as_uri())
        dt.wait_for("Page.loadEventFired")
        yield dt
        dt.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _eval(dt: DevTools, js: str) -> Any:
    res = dt.call("Runtime.evaluate", expression=js, returnByValue=True)
    return res["result"].get("value")


def test_loads_without_console_errors_or_network(page):
    errors = [
        e for e in page.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []
    requested = [e["params"]["request"]["url"] for e in page.events
                 if e.get("method") == "Network.requestWillBeSent"]  # fmt: skip
    assert all(u.startswith(("file://", "data:")) for u in requested), requested[:3]
    assert _eval(page, "document.title").startswith("weightlab study")


def test_every_figure_rendered_with_a_size(page):
    figs = _eval(page, """
        Array.from(document.querySelectorAll('figure')).map(f => {
            const g = f.querySelector('svg, img');
            const r = g ? g.getBoundingClientRect() : {width: 0, height: 0};
            const drawn = g ? g.querySelectorAll('path, rect, text, use').length : 0;
            return {id: f.id, w: r.width, h: r.height, drawn: drawn,
                    caption: (f.querySelector('figcaption') || {}).textContent || ''};
        })""")  # fmt: skip
    assert len(figs) >= 10
    for f in figs:
        assert f["w"] > 50 and f["h"] > 50, f
        assert f["drawn"] > 10, f
        assert f["caption"].strip(), f
    sections = _eval(page, "Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert sections[0] == "answer"


def test_screenshot_is_kept(page):
    height = _eval(page, "document.documentElement.scrollHeight")
    page.call("Emulation.setDeviceMetricsOverride", width=1280, height=int(height),
              deviceScaleFactor=1, mobile=False)  # fmt: skip
    shot = page.call("Page.captureScreenshot", format="png")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 50_000
    first = page.call("Page.captureScreenshot", format="png",
                      clip={"x": 0, "y": 0, "width": 1280, "height": 900, "scale": 1})  # fmt: skip
    SCREENSHOT.with_name("report-first-screen.png").write_bytes(base64.b64decode(first["data"]))
