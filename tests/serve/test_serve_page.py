"""The chat page in a real browser: Debian's headless chromium (through chromium-driver and selenium) loads /,
sends a message, and the streamed reply appears in the DOM, equal to the API's greedy reply; a screenshot is
written as a test artifact (MYLLM_TEST_ARTIFACTS, default runs/test-artifacts/)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import missing
from tests.serve.serve_helpers import API_KEY, REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

NO_BROWSER = missing.chromium(CHROMIUM, DRIVER)
pytestmark = pytest.mark.skipif(NO_BROWSER is not None, reason=str(NO_BROWSER))


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium not installed — install: pip install -e '.[all]'")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_is_self_contained(api_server):
    """No CDN, no remote font or script: every URL in the page is relative to this server."""
    with api_server.client(key=None) as http:
        html = http.get("/").text
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", html)
    assert not re.findall(r"""fetch\(\s*["'](?:https?:)?//""", html)
    assert 'id="stop"' in html and 'id="temperature"' in html and 'id="tokens-per-s"' in html


def test_a_message_sent_from_the_page_streams_its_reply_into_the_dom(api_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with api_server.client() as http:
        expected = http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "The quick brown"}], "max_tokens": 24,
            "temperature": 0}).json()["choices"][0]["message"]["content"]
    browser.get(api_server.url + "/")
    key = browser.find_element(By.ID, "api-key")
    key.send_keys(API_KEY)
    for field, value in (("temperature", "0"), ("max-tokens", "24")):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.execute_script("document.getElementById('api-key').dispatchEvent(new Event('change'))")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model-name").text == "tiny")
    browser.find_element(By.ID, "prompt").send_keys("The quick brown")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-state='done'], .msg.error"))
    errors = browser.find_elements(By.CSS_SELECTOR, ".msg.error")
    assert not errors, errors[0].text
    reply = browser.execute_script("return document.querySelector('.msg.assistant').textContent")
    assert reply == expected and len(reply) > 20
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user").text == "The quick brown"
    rate = browser.find_element(By.ID, "tokens-per-s").text
    assert float(rate) > 0, rate
    artifacts = Path(os.environ.get("MYLLM_TEST_ARTIFACTS", REPO / "runs" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "serve_chat_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 5_000
    print(f"\nscreenshot: {shot}")
