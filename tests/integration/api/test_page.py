"""The local page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
it loads, shows a decision the daemon just made, and a review click lands in SQLite."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and "
                                "chromium-driver (tools/install_system_deps.sh)")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_page_shows_a_fresh_decision_and_a_review_lands_in_sqlite(live, browser, tmp_path):
    seen_before = {d["part_id"] for d in live.station.last}
    browser.get(live.url + "/")
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    assert wait.until(lambda b: b.find_element(By.ID, "station").text == "test")

    def fresh_reject(b):
        for li in b.find_elements(By.CSS_SELECTOR, "#live li"):
            part = li.get_attribute("data-part")
            if part not in seen_before and li.find_element(By.CSS_SELECTOR, ".badge").text == "REJECT":
                return li, part
        return False

    li, part = wait.until(fresh_reject)  # a decision made after the page was opened
    conn = sqlite3.connect(live.station.cfg.db_path)
    assert conn.execute("SELECT outcome FROM inspections WHERE part_id = ?", [part]).fetchall() == [("REJECT",)]
    conn.close()
    li.click()
    assert wait.until(lambda b: b.find_element(By.ID, "d-part").text == part)
    assert wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#d-boxes .box"))  # boxes drawn
    assert "P(defective)" in browser.find_element(By.ID, "d-summary").text
    browser.find_element(By.ID, "r-type").send_keys("short")
    browser.find_element(By.ID, "r-defect").click()
    assert wait.until(lambda b: "labelled defect" in b.find_element(By.ID, "r-result").text)
    assert wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#gallery img"))
    browser.save_screenshot(str(tmp_path / "page.png"))
    conn = sqlite3.connect(live.station.cfg.db_path)
    got = conn.execute("SELECT verdict, defect_type FROM labels WHERE part_id = ?", [part]).fetchall()
    conn.close()
    assert got == [("defect", "short")]
