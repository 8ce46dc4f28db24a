"""The live dashboard in a real browser (issue 21 item 6): headless Chromium (Debian's ``chromium`` and its
``chromedriver``) driven by Selenium logs in through ``labctl dashboard``'s one-time link, finds web.1 and web.2
of a Private Space app in their instance boxes, stops web.1 from the page and sees it in a new instance box, adds
a fault and sees its badge, sends a bad scale and sees the API's one-line error, and watches the sparklines move
while a traffic generator started from the page runs.

The page's screenshot is saved to ``$LABCTL_ARTIFACTS/dashboard.png`` when that is set (CI keeps it), else under
the test's temporary folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labctl.client import Client
from tests.conftest import Lab, wait_until
from tests.integration.helpers import chromium

pytestmark = pytest.mark.docker


@pytest.fixture
def browser(tmp_path: Path):
    driver = chromium(tmp_path / "profile", "--window-size=1500,1100")
    yield driver
    driver.quit()


def _box_of(driver, app: str, dyno: str) -> str | None:
    """The instance box holding the dyno's element on the page (None: not in a box)."""
    return driver.execute_script(
        "const d = document.querySelector(`.instance .dyno[data-app='${arguments[0]}'][data-name='${arguments[1]}']`);"
        "return d ? d.closest('.instance').dataset.instance : null;",
        app,
        dyno,
    )


def _requests_drawn(driver, app: str, dyno: str) -> int:
    """The requests the dyno's sparkline draws (its series' sum), -1 if it has none."""
    value = driver.execute_script(
        "const d = document.querySelector(`.dyno[data-app='${arguments[0]}'][data-name='${arguments[1]}']`);"
        "const s = d && d.querySelector('.traffic:not([hidden]) .spark');"
        "return s ? [s.dataset.requests, s.querySelector('.rps').getAttribute('points')] : null;",
        app,
        dyno,
    )
    return int(value[0]) if value else -1


def _points(driver, app: str, dyno: str) -> str | None:
    return driver.execute_script(
        "const d = document.querySelector(`.dyno[data-app='${arguments[0]}'][data-name='${arguments[1]}']`);"
        "const p = d && d.querySelector('.spark .rps'); return p ? p.getAttribute('points') : null;",
        app,
        dyno,
    )


def _click(driver, app: str, dyno: str, cls: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f".dyno[data-app='{app}'][data-name='{dyno}'] button.{cls}").click()


def test_the_dashboard_in_chromium(lab: Lab, space_app: str, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    app, driver = space_app, browser
    link = lab.json("dashboard")
    code = link["url"].split("code=", 1)[1]
    token = lab.ok("auth:token").strip()

    # -- the one-time link logs the browser in, and leaves a clean URL ----------------------------------------
    driver.get(link["url"])
    assert driver.current_url.endswith("/dashboard/"), driver.current_url
    wait_until(lambda: _box_of(driver, app, "web.1"), timeout=15, what="web.1 on the page")
    source = driver.page_source
    assert code not in source and token not in source and code not in driver.current_url
    cookies = driver.get_cookies()
    assert len(cookies) == 1 and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict", cookies
    assert driver.execute_script("return document.cookie") == ""  # HttpOnly: the page's script cannot read it

    # -- web.1 and web.2 in their instance boxes, as the API places them ------------------------------------
    dynos = lab.dynos(app)
    wait_until(lambda: _box_of(driver, app, "web.2"), timeout=10, what="web.2 on the page")
    assert _box_of(driver, app, "web.1") == dynos["web.1"]["instance"]
    assert _box_of(driver, app, "web.2") == dynos["web.2"]["instance"]
    space_area = driver.find_element(By.CSS_SELECTOR, f"[data-runtime='s{app[1:]}']")
    assert space_area.find_element(By.CSS_SELECTOR, f".instance[data-instance='{dynos['web.1']['instance']}']")

    # -- a used link gets 401 and says what to do ------------------------------------------------------------
    driver.get(link["url"])
    assert "Run labctl dashboard" in driver.find_element(By.TAG_NAME, "body").text.replace("`", "")
    driver.get(link["url"].split("/login", 1)[0] + "/")  # the session is still good
    wait_until(lambda: _box_of(driver, app, "web.1"), timeout=15, what="the page again")

    # -- the seed's lesson: a fault on web.1's instance shows as a badge; ps:restart leaves web.1 in that badged
    # box, ps:stop moves it into a new box (within 5 s) -------------------------------------------------------
    old = _box_of(driver, app, "web.1")
    box = driver.find_element(By.CSS_SELECTOR, f".instance[data-instance='{old}']")
    Select(box.find_element(By.CSS_SELECTOR, "select.fault-kind")).select_by_visible_text("cpu 0.05 CPU")
    box.find_element(By.CSS_SELECTOR, "button.add-fault").click()
    wait_until(
        lambda: [b.text for b in box.find_elements(By.CSS_SELECTOR, ".badge")] == ["cpu 0.05 CPU"],
        timeout=10,
        what="the fault's badge",
    )
    assert [(f["kind"], f["instance"]) for f in lab.json("faults", "-a", app)] == [("cpu", old)]

    restarted = lab.dynos(app)["web.1"]["container"]
    _click(driver, app, "web.1", "restart")
    wait_until(
        lambda: lab.dynos(app)["web.1"]["container"] not in (restarted, None), timeout=15, what="web.1 restarted"
    )
    lab.wait_up(app, ["web.1"])
    wait_until(lambda: _box_of(driver, app, "web.1") == old, timeout=10, what="web.1 back in its box")
    assert [b.text for b in box.find_elements(By.CSS_SELECTOR, ".badge")] == ["cpu 0.05 CPU"]

    clicked = time.monotonic()
    _click(driver, app, "web.1", "stop")
    wait_until(lambda: _box_of(driver, app, "web.1") not in (None, old), timeout=5, what="web.1 in a new instance box")
    moved_in = time.monotonic() - clicked
    new = _box_of(driver, app, "web.1")
    assert new == lab.dynos(app)["web.1"]["instance"]
    new_box = driver.find_element(By.CSS_SELECTOR, f".instance[data-instance='{new}']")
    assert new_box.find_elements(By.CSS_SELECTOR, ".badge") == []  # the fault stayed with the old instance
    wait_until(
        lambda: not driver.find_elements(By.CSS_SELECTOR, f".instance[data-instance='{old}']"),
        timeout=15,
        what="the old instance box gone",
    )

    # -- bad input shows the API's one-line error and changes nothing -------------------------------------
    article = driver.find_element(By.CSS_SELECTOR, f".app[data-app='{app}']")
    qty = article.find_element(By.CSS_SELECTOR, ".formation [data-key='web'] input.qty")
    qty.clear()
    qty.send_keys("-1")
    article.find_element(By.CSS_SELECTOR, ".formation [data-key='web'] button.scale").click()
    error = driver.find_element(By.ID, "error")
    wait_until(lambda: error.is_displayed() and error.text, timeout=10, what="the API's error")
    assert error.text == "quantity must be between 0 and 100, not -1"
    assert {f["type"]: f["quantity"] for f in lab.json("ps:scale", "-a", app)}["web"] == 2

    # -- preboot from the page: the API's refusal for a Private Space app, word for word -------------------
    refused = lab.cli("features:enable", "preboot", "-a", app)
    assert refused.code != 0
    article.find_element(By.CSS_SELECTOR, "button.preboot-toggle").click()
    wait_until(lambda: error.text != "quantity must be between 0 and 100, not -1", timeout=10, what="preboot's error")
    assert error.text == refused.err.strip().removeprefix("▸").strip()
    assert not {f["name"]: f["enabled"] for f in lab.json("features", "-a", app)}["preboot"]

    # -- the keyboard: L switches large type; Tab reaches the buttons --------------------------------------
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("l")
    wait_until(lambda: "large" in (body.get_attribute("class") or ""), timeout=5, what="large type")
    assert driver.find_element(By.ID, "large").get_attribute("aria-pressed") == "true"
    body.send_keys("l")
    wait_until(lambda: "large" not in (body.get_attribute("class") or ""), timeout=5, what="normal type")

    # -- a traffic generator from the page: the sparklines move --------------------------------------------
    rps = article.find_element(By.CSS_SELECTOR, "input.gen-rps")
    rps.clear()
    rps.send_keys("10")
    article.find_element(By.CSS_SELECTOR, "button.gen-start").click()
    wait_until(lambda: not error.is_displayed(), timeout=10, what="the generator started")
    wait_until(lambda: _requests_drawn(driver, app, "web.2") > 0, timeout=20, what="web.2's sparkline")
    first, first_points = _requests_drawn(driver, app, "web.2"), _points(driver, app, "web.2")
    wait_until(
        lambda: _requests_drawn(driver, app, "web.2") > first + 5 and _points(driver, app, "web.2") != first_points,
        timeout=20,
        what="web.2's sparkline moving",
    )
    wait_until(lambda: _requests_drawn(driver, app, "web.1") > 0, timeout=20, what="web.1's sparkline")
    assert [g["app"] for g in Client(lab.name).traffic_generators()] == [app]
    shot = Path(os.environ.get("LABCTL_ARTIFACTS") or tmp_path) / "dashboard.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shot))
    article.find_element(By.CSS_SELECTOR, "button.gen-stop").click()
    wait_until(lambda: Client(lab.name).traffic_generators() == [], timeout=10, what="the generator stopped")
    print(f"web.1 moved to a new box {moved_in:.2f} s after the click")
