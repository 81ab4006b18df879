"""Time the checkpoint browser in headless Chromium: cold start and page switches.

    python benchmarks/bench_app.py [--root checkpoints]

Starts the real Streamlit server on loopback against a scratch copy of the
demo runs, then measures (1) from starting the server to the first rendered
page, (2) the first visit of each page (probe results computed), (3) a second
visit of each page (results reused). Targets: cold start within 5 s, page
switches within 1 s once results exist.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = {
    "Schemas": "most active n-grams in context",
    "Entropy": "Entropy predicts next-token loss",
    "Memory": "writes and slots",
    "Overview": "parameters",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "checkpoints"), help="runs to copy and browse (default: the demo runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "runs"
        for run in ("demo-legacy", "demo-strict"):
            shutil.copytree(Path(args.root) / run, root / run, ignore=shutil.ignore_patterns("probe_results"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--", "--root", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                        break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
                page = browser.new_page()
                page.goto(url)
                page.get_by_text("parameters").first.wait_for(timeout=120_000)
                cold = time.perf_counter() - started
                print(f"| cold start (server start to first rendered page) | {cold:.1f} s |")
                for visit in ("first visit (probe computed)", "second visit (result reused)"):
                    for name, marker in PAGES.items():
                        begin = time.perf_counter()
                        page.get_by_test_id("stSidebar").get_by_text(name, exact=True).click()
                        page.get_by_text(marker).first.wait_for(timeout=120_000)
                        page.wait_for_load_state("networkidle")
                        print(f"| {name}, {visit} | {time.perf_counter() - begin:.2f} s |", flush=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
