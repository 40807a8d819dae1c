"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver) through Selenium.

Uploads photos to `serve` on a tiny trained run, as a volunteer would (at desktop and phone sizes), and
checks what the page shows against the submission: one batch at a time, progress while it works, the
clean photo first, and no serious accessibility problem (axe-core, shipped in axe-selenium-python).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium + chromedriver on PATH "
                                "(apt-get install -y chromium chromium-driver; .ci/run does)")

DESKTOP, PHONE = (1280, 900), (390, 844)
# Every card rendered with its images decoded, no photo still waiting, the batch over.
ALL_DONE = ("return document.querySelectorAll('.card.pending').length === 0 && "
            "document.querySelectorAll('.card').length === arguments[0] && "
            "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0) && "
            "!/ of \\d+ done/.test(document.getElementById('status').textContent)")


def browser(size: tuple[int, int] = DESKTOP, phone: bool = False):
    """A headless Chromium at `size`; `phone`: a touch screen at 2x pixels, as a phone reports itself."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)  # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
            "width": size[0], "height": size[1], "pixelRatio": 2.0, "touch": True}})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))


def choose(driver, photos: list[Path]) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in photos))


def wait_done(driver, n: int, timeout: float = 300) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(ALL_DONE, n))


def open_page(url: str, photos: list[Path], timeout: float = 300, size=DESKTOP, phone: bool = False):
    """A headless Chromium showing the page after uploading `photos` and every result card has rendered."""
    driver = browser(size, phone)
    try:
        driver.get(url)
        choose(driver, photos)
        wait_done(driver, len(photos), timeout)
    except BaseException:
        driver.quit()
        raise
    return driver


def serious_violations(driver) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each."""
    Axe = pytest.importorskip("axe_selenium_python", reason="pip install -e '.[dev]' (axe-core ships in it)").Axe
    axe = Axe(driver)
    axe.inject()
    found = axe.run()["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:4]}"
            for v in found if v["impact"] in ("serious", "critical")]


def test_upload_shows_scores_ranking_and_advice_in_words(live_server, advice_run, test_photos, tmp_path):
    """Catches the page showing other scores than the submission, a ranking that is not by the score as
    posted, several "Put this one first", cards without a score out of 100 or without crop advice, and a
    status turned into an error when every photo was fine."""
    from selenium.webdriver.common.by import By

    url, _ = live_server
    _, sub = advice_run
    photos = test_photos[:3]
    driver = open_page(url, photos)
    try:
        driver.save_screenshot(str(tmp_path / "advice-page.png"))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        expected = sub.set_index("Id").loc[[p.stem for p in photos], "Pawpularity"]
        said = [re.search(r"Scores (\d+) out of 100", c.text) for c in cards]
        assert all(said), [c.text for c in cards]  # a score with its scale, in words
        assert sorted(int(m.group(1)) for m in said) == sorted(round(v) for v in expected)
        shown = {c.get_attribute("data-name"): float(c.get_attribute("data-score")) for c in cards}
        assert shown == pytest.approx({f"{k}.jpg": v for k, v in expected.items()}, abs=1e-4)
        posted = [float(c.get_attribute("data-posted")) for c in cards]
        assert posted == sorted(posted, reverse=True)
        assert [c.text.count("Put this one first") for c in cards] == [1, 0, 0]
        for c in cards:
            assert ("likely to add about" in c.text) or ("Keep this photo as it is" in c.text)
            # The heads' numbers are in the closed details fold, not in the card's visible text.
            assert "neural network" not in c.text and "Details" in c.text
        status = driver.find_element(By.ID, "status")
        assert status.text == "Done: 3 photos scored." and "error" not in status.get_attribute("class")
    finally:
        driver.quit()
    png = (tmp_path / "advice-page.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_a_second_choice_while_scoring_replaces_the_first(live_server, test_photos):
    """Catches two batches mixing: photos chosen while others were being scored gave the cards of both
    (4 cards, two "Put this one first", status "2 photo(s) scored")."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = live_server
    first, second = test_photos[:2], test_photos[2:4]
    driver = browser()
    try:
        driver.get(url)
        choose(driver, first)
        # The first batch is under way (its first photo is with the server) when the second is chosen.
        WebDriverWait(driver, 30, poll_frequency=0.05).until(
            lambda d: d.find_element(By.ID, "status").text.strip() != "")
        assert not driver.find_elements(By.CSS_SELECTOR, ".card img")  # no photo of the first batch done yet
        choose(driver, second)
        WebDriverWait(driver, 300, poll_frequency=0.2).until(
            lambda d: "scored" in d.find_element(By.ID, "status").text)
        wait_done(driver, 2)
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 2 and all(any(p.name in c.text for c in cards) for p in second), [c.text for c in cards]
        assert sum(c.text.count("Put this one first") for c in cards) == 1
        assert "Put this one first" in cards[0].text
        assert driver.find_element(By.ID, "status").text.startswith("Done: 2 photos scored")
    finally:
        driver.quit()


def test_progress_is_shown_before_the_last_photo_is_done(live_server, test_photos):
    """Catches the silent wait: one unchanging line until every photo was done, no count, no estimate of
    the time left, and no card before the last photo finished."""
    from selenium.webdriver.common.by import By

    url, _ = live_server
    photos = test_photos[4:7]
    driver = browser()
    try:
        driver.get(url)
        # Every change of the status line, with how many photos were shown at that moment.
        driver.execute_script("""
            window.seen = [];
            const status = document.getElementById('status');
            new MutationObserver(() => window.seen.push(
                [status.textContent, document.querySelectorAll('.card .figure').length])).observe(
                document.body, {subtree: true, childList: true, characterData: true});""")
        choose(driver, photos)
        wait_done(driver, 3)
        seen = driver.execute_script("return window.seen")
        before_last = [text for text, shown in seen if 0 < shown < 3]
        assert any("1 of 3 done" in t for t in before_last), seen  # a card appeared, the count moved
        assert any("2 of 3 done" in t and "left" in t for t in before_last), seen  # with a time estimate
        assert driver.find_element(By.ID, "status").text == "Done: 3 photos scored."
    finally:
        driver.quit()


def test_the_clean_photo_shows_first_and_the_heatmap_is_opt_in(live_server, test_photos):
    """Catches the heatmap drawn over every photo on load (it hid the pet), with no control beside it to
    explain it, and alt texts that were file names or "heatmap"."""
    from selenium.webdriver.common.by import By

    url, _ = live_server
    driver = open_page(url, test_photos[:2])
    try:
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        for c in cards:
            photo = c.find_element(By.CSS_SELECTOR, ".figure img:not(.heatmap)")
            heat = c.find_element(By.CSS_SELECTOR, ".figure img.heatmap")
            assert photo.is_displayed() and not heat.is_displayed()
            assert not any(b.is_displayed() for b in c.find_elements(By.CSS_SELECTOR, ".cropbox"))
            name = c.get_attribute("data-name")
            assert photo.get_attribute("alt").startswith(name) and "out of 100" in photo.get_attribute("alt")
        toggle = cards[0].find_element(By.XPATH, ".//label[contains(., 'Show the heatmap')]")
        assert "raises the score" in toggle.find_element(By.XPATH, "..").text  # the legend is beside it
        toggle.click()
        assert cards[0].find_element(By.CSS_SELECTOR, "img.heatmap").is_displayed()
    finally:
        driver.quit()


@pytest.mark.parametrize("size, phone", [(DESKTOP, False), (PHONE, True)], ids=["desktop", "phone"])
def test_no_serious_accessibility_violation(live_server, test_photos, size, phone):
    """Catches what axe-core rates serious or critical, on load and with results: the badge's white on
    amber (2.27:1), a file input without a label; on a phone, "Drop photos here" and tap targets under
    44 px (axe 3 does not measure targets, so they are measured here)."""
    from selenium.webdriver.common.by import By

    url, _ = live_server
    driver = browser(size, phone)
    try:
        driver.get(url)
        found = serious_violations(driver)  # the empty page, then with results
        choose(driver, test_photos[:2])
        wait_done(driver, 2)
        found += serious_violations(driver)
        assert found == []
        assert driver.find_element(By.ID, "status").get_attribute("aria-live") == "polite"
        if phone:
            assert "drop" not in driver.find_element(By.ID, "drop").text.lower()
            assert "Choose photos" in driver.find_element(By.ID, "drop").text
            small = driver.execute_script("""
                return [...document.querySelectorAll('button, summary, label, input[type=checkbox]')]
                  .map(e => e.tagName === 'INPUT' ? e.closest('label') : e)
                  .filter(e => e && e.offsetParent !== null)
                  .map(e => [e.textContent.trim().slice(0, 30), e.getBoundingClientRect().height])
                  .filter(([t, h]) => h < 44);""")
            assert small == []
        else:
            assert "or drop them here" in driver.find_element(By.ID, "drop").text
    finally:
        driver.quit()
