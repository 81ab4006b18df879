"""End to end: the real Streamlit server driven by headless Chromium, one screenshot a page.

Needs Debian's chromium (``.ci/run`` installs it) and the playwright package;
the server and the browser talk over loopback only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Text each page shows once it has rendered.
PAGES = {
    "Overview": "parameters",
    "Schemas": "most active n-grams in context",
    "Entropy": "Entropy predicts next-token loss",
    "Memory": "writes and slots",
    "Leakage": "verdict",
    "Compare": "held-out loss",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for run in ("demo-legacy", "demo-strict"):
        shutil.copytree(REPO / "checkpoints" / run, root / run, ignore=shutil.ignore_patterns("probe_results"))
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--", "--root", str(root)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("the Streamlit server did not become healthy within 60 s")
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_every_page_in_chromium(server, tmp_path):
    shots = Path(os.environ.get("SCMT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.get_by_text("demo-legacy / checkpoint-2717").wait_for(timeout=60_000)
        for name, marker in PAGES.items():
            page.get_by_test_id("stSidebar").get_by_text(name, exact=True).click()
            if name == "Leakage":
                page.get_by_role("button", name="Run the gate").click()
            page.get_by_text(marker).first.wait_for(timeout=120_000)
            assert page.get_by_test_id("stException").count() == 0, f"{name} shows an exception"
            # Tables draw on a canvas after the text appears; give them a moment before the shot.
            page.wait_for_timeout(1500)
            path = shots / f"{name.lower()}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000, f"{name} screenshot is nearly empty"
        browser.close()
