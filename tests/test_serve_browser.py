"""The web app in a real browser: our own `serve` command runs uvicorn on a free 127.0.0.1 port, headless
Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium) uploads a photo, sees the bars, says
"Wrong?", picks the right class, and the correction lands in feedback.csv. A screenshot is saved in the test's
temporary folder (webapp.png)."""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kinds import make_learner

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def browser():
    """Headless Chromium under Selenium, or a skip that names the packages to install (checked first, before
    any model is built)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install -r requirements.txt")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("no browser: install Debian's packages with `apt-get install -y chromium chromium-driver` "
                    "(.ci/run does) to run the browser test")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"serve did not answer {url}/health within {seconds} s")


@pytest.fixture
def live_app(tmp_path, monkeypatch):
    """(url, photo, feedback folder, classes) of `python -m course_utils serve` running a single-label export."""
    learn, photo = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    port, feedback = _free_port(), tmp_path / "feedback"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "course_utils", "serve", str(export), "--port", str(port),
                             "--feedback", str(feedback)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, photo, feedback, learn.data.classes
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_upload_see_bars_correct_and_the_row_lands_in_feedback_csv(browser, live_app, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver, (url, photo, feedback, classes) = browser, live_app
    wait = WebDriverWait(driver, 60)
    driver.get(url)
    wait.until(ec.visibility_of_element_located((By.ID, "image-input")))
    upload = shutil.copy(photo, tmp_path / "my photo.png")
    driver.find_element(By.ID, "file").send_keys(str(upload))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#result .bar")) == len(classes))
    predicted = driver.find_element(By.ID, "prediction").text.removeprefix("Prediction: ")
    assert predicted in classes
    widths = [b.size["width"] for b in driver.find_elements(By.CSS_SELECTOR, "#result .bar")]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]  # bars drawn to scale
    driver.find_element(By.ID, "wrong").click()
    right = next(c for c in classes if c != predicted)
    Select(wait.until(ec.visibility_of_element_located((By.ID, "correct-select")))).select_by_value(right)
    driver.find_element(By.ID, "send").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "feedback-status"), "Thank you"))
    driver.save_screenshot(str(tmp_path / "webapp.png"))
    print(f"screenshot: {tmp_path / 'webapp.png'}")
    rows = list(csv.DictReader(open(feedback / "feedback.csv")))
    assert [(r["predicted"], r["corrected"]) for r in rows] == [(predicted, right)]
    assert (feedback / rows[0]["file"]).read_bytes() == photo.read_bytes()
    assert (tmp_path / "webapp.png").stat().st_size > 1000
