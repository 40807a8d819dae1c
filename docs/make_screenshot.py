#!/usr/bin/env python
"""Regenerate docs/advice-page.png: `serve` on a finished run, photos uploaded in headless Chromium.

    .venv/bin/python docs/make_screenshot.py --artifacts-dir A --run R PHOTO [PHOTO ...]

Same browser path as tests/advice/test_browser.py (needs chromium + chromium-driver).
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
from tests.advice.test_browser import open_page  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", type=Path)
    p.add_argument("--artifacts-dir", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--out", default=str(ROOT / "docs" / "advice-page.png"))
    args = p.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "pipeline.py"), "serve", "--artifacts-dir", args.artifacts_dir,
                               "--run", args.run, "--port", str(port)], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        driver = open_page(url, args.photos, timeout=900)
        try:
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1180, min(int(height) + 40, 1400))
            png = driver.get_screenshot_as_png()
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)  # a small file for the README
    image.quantize(colors=256).save(args.out, optimize=True)
    print(f"Wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
