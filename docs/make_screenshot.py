#!/usr/bin/env python
"""Regenerate the README's screenshots of the photo-advice page: `serve` on a finished run, photos chosen in
headless Chromium, the page captured while it works and when it is done, at desktop and phone sizes.

    .venv/bin/python docs/make_screenshot.py --artifacts-dir A --run R PHOTO [PHOTO ...]

Writes docs/advice-{desktop,phone}{,-waiting}.png. One batch is scored once: the phone shots are the same
page switched to a phone's screen (390 x 844, touch) through Chrome's device emulation, so scoring is not
repeated. Same browser path as tests/advice/test_browser.py (needs chromium + chromium-driver).
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.advice.conftest import free_port  # noqa: E402
from tests.advice.test_browser import DESKTOP, PHONE, browser, choose, wait_done  # noqa: E402


def as_phone(driver, on: bool) -> None:
    """Switch the open page between a phone's screen (touch, coarse pointer) and the desktop window."""
    if on:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
    # What the page does on load on a touch screen (it was loaded as a desktop one).
    driver.execute_script(f"document.documentElement.classList.toggle('touch', {'true' if on else 'false'});"
                          "window.scrollTo(0, 0);")
    time.sleep(0.5)


def save(png: bytes, out: Path, scale: float) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    image.quantize(colors=256).save(out, optimize=True)  # small files for the README
    print(f"Wrote {out} ({out.stat().st_size // 1024} KB)")


def desktop_shot(driver, out: Path) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(DESKTOP[0], min(int(height) + 140, 3000))  # the whole page, top first
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    save(driver.get_screenshot_as_png(), out, 0.75)
    driver.set_window_size(*DESKTOP)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", type=Path, help="photos (a non-photo file shows its error card)")
    p.add_argument("--artifacts-dir", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    args = p.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "pipeline.py"), "serve", "--artifacts-dir", args.artifacts_dir,
                               "--run", args.run, "--port", str(port)], cwd=ROOT)
    out = args.out_dir
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(480):
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        driver = browser(DESKTOP)
        try:
            driver.get(url)
            choose(driver, args.photos)
            # Waiting: one photo done, the others still to come.
            for _ in range(3600):
                if driver.execute_script("return document.querySelectorAll('.card .figure').length") >= 1:
                    break
                time.sleep(0.25)
            time.sleep(1)
            desktop_shot(driver, out / "advice-desktop-waiting.png")
            as_phone(driver, True)
            save(driver.get_screenshot_as_png(), out / "advice-phone-waiting.png", 0.5)
            as_phone(driver, False)
            wait_done(driver, len(args.photos), timeout=3600)
            # Results: the clean photos; the second card with its heatmap turned on, to show the toggle.
            toggles = driver.find_elements("xpath", "//label[contains(., 'Show the heatmap')]")
            if len(toggles) > 1:
                toggles[1].click()
            desktop_shot(driver, out / "advice-desktop.png")
            if len(toggles) > 1:
                toggles[1].click()
            as_phone(driver, True)
            driver.execute_script("document.getElementById('progressline').scrollIntoView()")
            save(driver.get_screenshot_as_png(), out / "advice-phone.png", 0.5)
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
