"""The web demo in a real headless browser: Debian's ``chromium`` + ``chromedriver`` driven by Selenium.

The Gradio page is served from this process on a free port; the browser loads it, uploads a photo from
``../shared/data/media``, clicks the button and reads what the page renders. The test is skipped (with the reason)
only where no chromium/chromedriver is installed; CI installs them (``.ci/run``). Set
``EMOCAP_DEMO_SCREENSHOT=docs/demo.png`` to refresh the screenshot kept in the docs.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

from emocap.demo_analysis import DEFAULT_LABELS, DemoModel, analyze_photo
from test_demo import media_file

CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless browser: install Debian's chromium and chromedriver "
                              "(apt-get install -y chromium chromium-driver; .ci/run does this in CI)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),  # gradio's own pandas calls
]

PAGE_TIMEOUT_S = 30
RESULT_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_model() -> DemoModel:
    return DemoModel(device="cpu")


@pytest.fixture(scope="module")
def page_url(demo_model):
    pytest.importorskip("gradio", reason="Gradio (the demo extra) is not installed: pip install -e '.[dev]'")
    from emocap.demo import build_demo

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_demo(model=demo_model)
    port = _free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, share=False)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1300"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _open(browser, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda d: d.find_elements(By.ID, "photo-submit"))


def _submit_and_read(browser, photo: Path, labels: str, expect: str) -> str:
    """Upload ``photo``, type ``labels``, click Analyze and return the results text once it contains ``expect``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.CSS_SELECTOR, "#photo-input input[type=file]").send_keys(str(photo))
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(  # the upload is shown before the button is pressed
        lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-input img"))
    box = browser.find_element(By.CSS_SELECTOR, "#photo-labels textarea, #photo-labels input")
    box.clear()
    box.send_keys(labels)
    browser.find_element(By.ID, "photo-submit").click()
    results = browser.find_element(By.ID, "photo-results")
    WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda d: expect in results.text)
    return results.text


def test_page_loads_takes_a_photo_and_renders_faces_and_scores(browser, page_url, demo_model, tmp_path):
    from selenium.webdriver.common.by import By

    photo = media_file("multi_face.jpg")
    _open(browser, page_url)
    assert "emocap" in browser.title
    text = _submit_and_read(browser, photo, DEFAULT_LABELS, "faces found")
    expected = analyze_photo(demo_model, Image.open(photo), DEFAULT_LABELS)
    assert f"{len(expected.faces)} faces found" in text
    for number, face in enumerate(expected.faces, start=1):
        top = face["predictions"][0]
        assert f"{top['label']} {top['score']:.3f}" in text  # each face's top label and score, as rendered
        assert f"face {number} ({top['label']})" in text  # and its closest facial behaviour
        assert face["behaviour"][0]["sentence"] in text
    boxed = browser.find_elements(By.CSS_SELECTOR, "#photo-faces img")
    assert boxed and boxed[0].get_attribute("src")  # the photo with the faces boxed came back
    browser.save_screenshot(str(tmp_path / "demo.png"))
    target = os.environ.get("EMOCAP_DEMO_SCREENSHOT")
    if target:
        shutil.copyfile(tmp_path / "demo.png", target)


def test_bad_inputs_show_a_message_on_the_page(browser, page_url, tmp_path):
    _open(browser, page_url)
    text = _submit_and_read(browser, media_file("single_face.jpg"), "happiness", "at least two labels")
    assert "faces found" not in text
    tiny = tmp_path / "one_pixel.png"
    Image.new("RGB", (1, 1), (200, 150, 120)).save(tiny)
    _open(browser, page_url)
    text = _submit_and_read(browser, tiny, DEFAULT_LABELS, "too small to hold a face")
    assert "1x1 pixels" in text
