"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver) through Selenium.

Uploads photos to `serve` on a tiny trained run, waits for the scores and heatmaps, checks what the page
shows against the submission, and saves a screenshot under the test's tmp dir.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium + chromedriver on PATH "
                                "(apt-get install -y chromium chromium-driver; .ci/run does)")


def open_page(url: str, photos: list[Path], timeout: float = 300):
    """A headless Chromium showing the page after uploading `photos` and every result card has rendered."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1180,900"):
        options.add_argument(arg)  # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        driver.get(url)
        driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in photos))
        WebDriverWait(driver, timeout).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == len(photos) and d.execute_script(
                "return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"))
    except BaseException:
        driver.quit()
        raise
    return driver


def test_upload_shows_scores_ranking_heatmap_and_crop(live_server, advice_run, test_photos, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = live_server
    _, sub = advice_run
    photos = test_photos[:3]
    driver = open_page(url, photos)
    try:
        driver.save_screenshot(str(tmp_path / "advice-page.png"))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        shown = [float(c.find_element(By.CSS_SELECTOR, ".score").text) for c in cards]
        expected = sorted(sub.set_index("Id").loc[[p.stem for p in photos], "Pawpularity"], reverse=True)
        assert shown == [round(v, 1) for v in expected]  # the submission's scores, best first
        assert "Put this one first" in cards[0].text and "Put this one first" not in cards[1].text
        heatmaps = driver.find_elements(By.CSS_SELECTOR, ".card img.heatmap")
        assert len(heatmaps) == 3 and all(h.size["width"] > 100 for h in heatmaps)
        assert all(("likely to add about" in c.text) or ("Keep this photo as it is" in c.text) for c in cards)
        assert "could not be read" not in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()
    png = (tmp_path / "advice-page.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
