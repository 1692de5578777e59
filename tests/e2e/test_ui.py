"""The dashboard at /ui, driven in Debian's chromium (headless) against a real gateway:
sign in, start a model and watch it turn ready, follow its log, chat in the playground
with tokens arriving over time, a chart moving under load, a key made, used and
revoked, an alert rule added, the phone layout, and a gateway with auth off.

Screenshots of each step go to ``test-artifacts/ui/`` (at 1280 px, and at 390 px for
the phone layout). Chromium comes from Debian (``apt-get install chromium``; browsers
cannot be downloaded here), driven by the ``playwright`` package's own driver.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import REPO, Gateway, simulator_model, start_gateway

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
ARTIFACTS = REPO / "test-artifacts" / "ui"
PASSWORD = "dashboard-admin-password"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# The simulator answers max_tokens words, one every DECODE_MS: a 40-token answer takes
# about two seconds, long enough to see it arrive in pieces.
DECODE_MS = 50
ANSWER_TOKENS = 40
PAGES = [("/ui/models", "Models"), ("/ui/alerts", "Alerts"), ("/ui/keys", "API keys"),
         ("/ui/devices", "Devices"), ("/ui/live", "Live"), ("/ui/playground", "Playground")]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as mp:
        # no GPU here: the gateway reads two made-up ones through tests.fake_nvml
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        gateway = start_gateway(
            tmp_path_factory.mktemp("ui"),
            [simulator_model("sim", args={"decode_ms_per_token": DECODE_MS}),
             simulator_model("sim-b"), simulator_model("sim-load")],
            auth={"admin_password": PASSWORD}, nvml_module="tests.fake_nvml")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the dashboard's tests "
                    "drive Debian's build)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


class Tab:
    """A page, the errors its scripts raised, and where its screenshots go."""

    def __init__(self, browser: Browser, gw: Gateway, viewport: dict[str, int]):
        self.context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        self.page: Page = self.context.new_page()
        self.gw = gw
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda dialog: dialog.accept())
        self.page.set_default_timeout(20_000)

    def open(self, path: str) -> Page:
        self.page.goto(self.gw.url + path)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def sign_in(self, path: str = "/ui/models") -> Page:
        page = self.open(path)
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("main#content h1")).to_be_visible()
        return page

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"errors in the page: {self.errors}"


@pytest.fixture
def tab(browser: Browser, gw: Gateway) -> Iterator[Tab]:
    t = Tab(browser, gw, DESKTOP)
    yield t
    t.close()


def _token(gw: Gateway) -> str:
    r = httpx.post(gw.url + "/api/auth/token", json={"username": "admin", "password": PASSWORD},
                   timeout=10)
    return str(r.json()["access_token"])


def test_sign_in_then_start_a_model_and_follow_its_log(tab: Tab, gw: Gateway) -> None:
    page = tab.open("/ui/")
    expect(page).to_have_url(f"{gw.url}/ui/sign-in")
    expect(page.get_by_role("heading", name="Sign in to modelfleet")).to_be_visible()
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
    tab.shot("01-sign-in-refused")

    page = tab.sign_in("/ui/models")
    expect(page).to_have_url(f"{gw.url}/ui/models")
    assert page.evaluate("sessionStorage.getItem('modelfleet.token')").count(".") == 2  # a JWT
    row = page.locator("tr[data-model='sim']")
    expect(row.locator(".badge")).to_have_text("stopped")
    tab.shot("02-models")

    page.get_by_role("button", name="Start sim", exact=True).click()
    expect(row.locator(".badge")).to_have_text("ready", timeout=60_000)
    expect(row.locator("td[data-label='Instances']")).to_have_text("1")
    tab.shot("03-model-ready")

    page.get_by_role("link", name="Logs of sim", exact=True).click()
    expect(page.get_by_role("heading", name="Logs of sim")).to_be_visible()
    expect(page.locator("#log-state")).to_have_text("live")
    log = page.get_by_role("log")
    expect(log.locator(".log-line").first).to_be_visible()
    before = log.locator(".log-line").count()
    # a restart writes new lines (stopping, launching, ready): they arrive on the open stream
    r = gw.post("/api/models/sim/restart?wait=true",
                headers={"Authorization": f"Bearer {_token(gw)}"})
    assert r.status_code == 200, r.text
    expect(log.get_by_text("[modelfleet] sim ready").nth(1)).to_be_visible()
    assert log.locator(".log-line").count() > before
    tab.shot("04-model-log")


def test_create_edit_and_delete_a_model(tab: Tab, gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {_token(gw)}"}
    page = tab.sign_in("/ui/models")
    page.get_by_role("link", name="New model").click()
    expect(page.get_by_role("heading", name="New model")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("made-in-ui")
    page.get_by_label("Engine", exact=True).select_option("simulator")
    page.get_by_label("Weights").fill("made-in-ui")
    page.get_by_label("Aliases").fill("miu, ui-sim")
    page.get_by_label("Idle timeout (seconds)").fill("120")
    page.get_by_label("Engine arguments (JSON)").fill("{not json")
    page.get_by_role("button", name="Create model").click()
    expect(page.get_by_role("alert")).to_contain_text("JSON object")  # caught before sending
    page.get_by_label("Engine arguments (JSON)").fill('{"decode_ms_per_token": 5}')
    tab.shot("05a-model-form")
    page.get_by_role("button", name="Create model").click()
    row = page.locator("tr[data-model='made-in-ui']")
    expect(row).to_contain_text("miu, ui-sim")
    made = httpx.get(gw.url + "/api/models/made-in-ui", headers=admin, timeout=10).json()
    assert made["engine"] == "simulator" and made["aliases"] == ["miu", "ui-sim"]
    assert made["config"]["idle_timeout"] == 120
    assert made["config"]["args"] == {"decode_ms_per_token": 5}

    row.get_by_role("link", name="Edit made-in-ui").click()
    expect(page.get_by_label("Name", exact=True)).to_have_value("made-in-ui")
    expect(page.get_by_label("Idle timeout (seconds)")).to_have_value("120")
    page.get_by_label("Display name").fill("Made in the dashboard")
    page.get_by_label("Idle timeout (seconds)").fill("60")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    edited = httpx.get(gw.url + "/api/models/made-in-ui", headers=admin, timeout=10).json()
    assert edited["display_name"] == "Made in the dashboard"
    assert edited["config"]["idle_timeout"] == 60 and edited["aliases"] == ["miu", "ui-sim"]

    row.get_by_role("link", name="Edit made-in-ui").click()
    page.get_by_role("button", name="Delete model").click()  # the confirm is accepted
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    expect(row).to_have_count(0)
    gone = httpx.get(gw.url + "/api/models/made-in-ui", headers=admin, timeout=10)
    assert gone.status_code == 404


def test_playground_streams_tokens_as_they_arrive(tab: Tab) -> None:
    page = tab.sign_in("/ui/playground")
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    page.get_by_label("Model").select_option("sim")
    page.get_by_label("Max tokens").fill(str(ANSWER_TOKENS))
    page.get_by_label("Message").fill("Tell me something")
    # every version of the streaming answer the page shows, recorded as the DOM changes
    page.evaluate("""() => {
        window.seen = [];
        const box = document.getElementById('answer');
        new MutationObserver(() => {
            const text = box.querySelector('.text');
            if (text) window.seen.push(text.textContent.replace('▍', ''));
        }).observe(box, {subtree: true, childList: true, characterData: true});
    }""")
    expect(page.locator("#answer")).to_have_attribute("aria-live", "polite")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        "() => (document.querySelector('#answer .text')?.textContent || '')"
        ".split(/\\s+/).filter(w => w && w !== '▍').length >= 4")
    tab.shot("05-playground-streaming")
    final = page.locator(".messages .msg.assistant .text").last
    expect(final).to_be_visible()
    counts = sorted({len(t.split()) for t in page.evaluate("window.seen")} - {0})
    # the answer grew in many steps while streaming, not all at once at the end
    assert len(counts) >= 5 and counts[0] <= ANSWER_TOKENS // 4, counts
    assert len((final.text_content() or "").split()) == ANSWER_TOKENS
    expect(page.locator("#chat-stats")).to_contain_text(f"{ANSWER_TOKENS} tokens")
    tab.shot("06-playground-done")


def _load(gw: Gateway, stop: threading.Event, errors: list[BaseException]) -> None:
    client = gw.client(api_key=_token(gw))
    while not stop.is_set():
        try:
            for _ in client.chat.completions.create(
                    model="sim-load", messages=[{"role": "user", "content": "load"}],
                    max_tokens=4, stream=True):
                pass
        except openai.OpenAIError as exc:
            errors.append(exc)
            return


def _value(page: Page, chart: str, model: str) -> float | None:
    raw = page.locator(f"#{chart} td[data-model='{model}']").get_attribute("data-value")
    return float(raw) if raw else None


def test_live_chart_moves_under_load(tab: Tab, gw: Gateway) -> None:
    page = tab.sign_in("/ui/live")
    expect(page.get_by_role("heading", name="Live")).to_be_visible()
    chart = page.locator("#chart-throughput")
    expect(chart).to_be_visible()
    expect(chart.locator("canvas")).to_have_count(1)
    assert not _value(page, "chart-throughput", "sim-load")  # idle: nothing yet
    points = int(chart.get_attribute("data-points") or 0)

    stop, errors = threading.Event(), []
    workers = [threading.Thread(target=_load, args=(gw, stop, errors)) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        expect(page.locator("#chart-throughput td[data-model='sim-load']")).not_to_have_text(
            "–", timeout=30_000)
        deadline = time.monotonic() + 30
        while (_value(page, "chart-throughput", "sim-load") or 0) <= 0:
            assert time.monotonic() < deadline, "throughput never rose under load"
            time.sleep(0.2)
        expect(page.locator("#chart-latency td[data-model='sim-load']")).not_to_have_text("–")
        expect(page.locator("#chart-ttft td[data-model='sim-load']")).not_to_have_text("–")
        time.sleep(2)
        tab.shot("07-live-under-load")
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert not errors, errors
    assert int(chart.get_attribute("data-points") or 0) > points  # the chart kept moving


def test_create_use_and_revoke_a_key(tab: Tab, gw: Gateway) -> None:
    page = tab.sign_in("/ui/keys")
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("dashboard-made")
    page.get_by_label("Allowed models").fill("sim-b")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_label("The new key")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert secret.startswith("mf-")
    tab.shot("08-key-created")

    client = gw.client(api_key=secret)
    reply = client.chat.completions.create(
        model="sim-b", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices[0].message.content

    page.get_by_role("button", name="Done").click()
    expect(secret_box).to_have_count(0)  # shown once: gone from the page
    assert secret not in page.content()
    row = page.locator("#keys-table tbody tr", has_text="dashboard-made")
    row.get_by_role("button", name="Revoke dashboard-made").click()
    expect(row.locator(".badge")).to_have_text("revoked")
    tab.shot("09-key-revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="sim-b", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_sign_in_with_a_user_key_shows_no_admin_controls(tab: Tab, gw: Gateway) -> None:
    r = httpx.post(gw.url + "/api/keys", headers={"Authorization": f"Bearer {_token(gw)}"},
                   json={"name": "reader", "role": "user"}, timeout=10)
    assert r.status_code == 201, r.text
    page = tab.open("/ui/models")
    page.get_by_role("button", name="Use an API key instead").click()
    page.get_by_label("API key").fill(r.json()["key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    expect(page.locator("tr[data-model='sim']")).to_be_visible()
    expect(page.get_by_role("link", name="Logs of sim", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Start sim", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="New model")).to_have_count(0)
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_text("Only an admin can see and make API keys.")).to_be_visible()
    tab.shot("10a-user-key")


def test_devices_and_alerts_pages(tab: Tab) -> None:
    page = tab.sign_in("/ui/devices")
    expect(page.get_by_role("heading", name="Host")).to_be_visible()
    gpu = page.get_by_role("region", name="GPU 0: NVIDIA RTX 4090")
    expect(gpu.get_by_role("meter", name="Utilization")).to_have_attribute("value", "78")
    expect(gpu).to_contain_text("12.0 GB of 24.0 GB")
    expect(page.get_by_role("region", name="GPU 1: NVIDIA A100-SXM4-80GB")).to_be_visible()
    tab.shot("10-devices")

    page.get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("sim-b slow")
    page.get_by_label("Condition").fill('ttft_p95{model="sim-b"} > 30 for 1m')
    page.get_by_role("button", name="Add rule").click()
    row = page.locator("table tbody tr", has_text="sim-b slow")
    expect(row).to_contain_text('ttft_p95{model="sim-b"} > 30')
    page.get_by_label("Condition").fill("no such metric >")
    page.get_by_label("Name", exact=True).fill("broken")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the API's 422, shown as it said
    tab.shot("11-alerts")


def test_keyboard_skip_link_and_focus(tab: Tab) -> None:
    page = tab.sign_in("/ui/devices")
    page.reload()  # a fresh load: the first Tab reaches the skip link
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # shown while it has focus
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    page.keyboard.press("Shift+Tab")  # back into the navigation, each entry a real link
    page.get_by_role("link", name="Alerts").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_focused()
    outline = page.get_by_role("button", name="Add rule").evaluate(
        "b => { b.focus(); return getComputedStyle(b).outlineStyle; }")
    assert outline == "solid"  # a visible focus ring


def test_an_invalid_token_returns_to_sign_in(tab: Tab, gw: Gateway) -> None:
    page = tab.sign_in("/ui/models")
    page.evaluate("sessionStorage.setItem('modelfleet.token', 'not-a-valid-token')")
    page.get_by_role("link", name="Devices").click()
    expect(page).to_have_url(f"{gw.url}/ui/sign-in?next=%2Fdevices")
    expect(page.get_by_role("heading", name="Sign in to modelfleet")).to_be_visible()
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{gw.url}/ui/devices")  # back where the session ended


def test_phone_width_collapses_the_navigation(browser: Browser, gw: Gateway) -> None:
    tab = Tab(browser, gw, PHONE)
    try:
        page = tab.sign_in("/ui/models")
        menu = page.get_by_role("button", name="Menu")
        nav_link = page.get_by_role("navigation").get_by_role("link", name="Playground")
        expect(menu).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(nav_link).to_be_hidden()
        tab.shot("12-phone-models")
        menu.focus()
        page.keyboard.press("Enter")  # a real button: the keyboard opens it
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(nav_link).to_be_visible()
        tab.shot("13-phone-menu-open")
        nav_link.click()
        expect(page.get_by_role("heading", name="Playground")).to_be_visible()
        expect(nav_link).to_be_hidden()  # closed again after moving
        for path, heading in PAGES:
            page.goto(gw.url + path)
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            if heading == "Live":
                expect(page.locator("#chart-throughput canvas")).to_be_visible()
                page.wait_for_timeout(2000)  # a few samples
                tab.shot("13b-phone-live")
            page.wait_for_timeout(300)  # tables filled in
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} scrolls sideways ({width}px)"
    finally:
        tab.close()


def test_no_sign_in_when_auth_is_off(browser: Browser, tmp_path: Path) -> None:
    open_gw = start_gateway(tmp_path, [simulator_model("sim")])
    tab = Tab(browser, open_gw, DESKTOP)
    try:
        page = tab.open("/ui/")
        expect(page.get_by_role("heading", name="Models")).to_be_visible()
        expect(page.locator("tr[data-model='sim']")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('modelfleet.token')") is None
        tab.shot("14-auth-off")
    finally:
        tab.close()
        open_gw.stop()


def test_static_files_are_served_with_their_types_and_caching(gw: Gateway) -> None:
    index = httpx.get(gw.url + "/ui/models/sim/logs", timeout=10)
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert index.headers["cache-control"] == "no-cache"
    asset = next(p for p in index.text.split('"') if p.startswith("/ui/assets/")
                 and p.endswith(".js"))
    r = httpx.get(gw.url + asset, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "immutable" in r.headers["cache-control"]
    missing: Any = httpx.get(gw.url + "/ui/assets/missing-0000.js", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ROUTE_NOT_FOUND"
    # the page is public, the API behind it is not
    assert httpx.get(gw.url + "/api/models", timeout=10).status_code == 401
