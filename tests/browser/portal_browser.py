"""Shared pieces of the portal's browser tests: a headless Debian Chromium
driven by Selenium, bounded waits, the API calls the scenarios make, and the
console checks. Every address these tests use is on 127.0.0.1."""

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30  # seconds, the bound of every wait


def log(*parts):
    print(*parts, flush=True)


class Browser:
    """One Chromium with a fresh profile, closed (profile removed) on exit."""

    def __init__(self, width=1280, height=900):
        self.profile = tempfile.mkdtemp(prefix="herald-portal-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--no-proxy-server", "--disable-extensions",
            f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
        ]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)
        self.console = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ------------------------------------------------------------ navigation

    def open(self, url):
        self.driver.get(url)
        self.wait_loaded()

    def go(self, route):
        """Navigates inside the portal (hash routing) and waits for the view."""
        if self.driver.execute_script("return location.hash") == route:
            self.driver.refresh()
        else:
            self.driver.execute_script(
                "document.getElementById('main').setAttribute('aria-busy', 'true'); location.hash = arguments[0];", route)
        self.wait_loaded()

    def wait_loaded(self):
        self.wait(lambda d: d.execute_script(
            "const m = document.getElementById('main');"
            "return m && m.getAttribute('aria-busy') !== 'true' && !m.querySelector('.loading') && !!document.getElementById('view-title');"),
            "the view to render")

    def wait(self, condition, what, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; page text:\n{self.text()[:3000]}\n"
                                 f"console:\n{json.dumps(self.collect_console(), indent=1)}")

    def refresh_until(self, condition, what, timeout=WAIT):
        """Presses the view's Refresh button until `condition()` holds. A view
        that re-renders while `condition()` reads it counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except StaleElementReferenceException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; page text:\n{self.text()[:3000]}")
            time.sleep(0.5)
            buttons = self.driver.find_elements(By.CSS_SELECTOR, "[data-refresh]")
            if buttons:
                self.driver.execute_script("document.getElementById('main').setAttribute('aria-busy', 'true');")
                buttons[0].click()
            else:
                self.go(self.driver.execute_script("return location.hash"))
            self.wait_loaded()

    # ------------------------------------------------------------ reading

    def text(self):
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except Exception:  # noqa: BLE001 - only for failure messages
            return "<no page>"

    def title(self):
        return self.driver.find_element(By.ID, "view-title").text

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector):
        found = self.css(selector)
        assert found, f"no element matches {selector}; page text:\n{self.text()[:3000]}"
        return found[0]

    def button(self, label, scope=None):
        root = scope or self.driver
        for b in root.find_elements(By.CSS_SELECTOR, "button, a.button"):
            if b.text.strip() == label and b.is_displayed():
                return b
        raise AssertionError(f"no visible button '{label}'; page text:\n{self.text()[:3000]}")

    def field(self, label, scope=None):
        """The control a <label for> names."""
        root = scope or self.driver
        for lab in root.find_elements(By.TAG_NAME, "label"):
            if lab.text.strip() == label and lab.get_attribute("for"):
                return self.driver.find_element(By.ID, lab.get_attribute("for"))
        raise AssertionError(f"no field labelled '{label}'")

    def fill(self, label, value, scope=None):
        control = self.field(label, scope)
        control.clear()
        control.send_keys(value)
        return control

    # ------------------------------------------------------------ checks

    def collect_console(self):
        entries = self.driver.get_log("browser")
        self.console.extend(entries)
        return entries

    def assert_no_csp_violations(self):
        self.collect_console()
        bad = [e for e in self.console if "Content Security Policy" in e.get("message", "")
               or "Refused to" in e.get("message", "")]
        assert not bad, f"CSP violations in the console: {json.dumps(bad, indent=2)}"
        errors = [e for e in self.console if e.get("level") == "SEVERE"
                  and "Failed to load resource" not in e.get("message", "")]
        assert not errors, f"script errors in the console: {json.dumps(errors, indent=2)}"

    def screenshot(self, name, width):
        """Saves a full-page PNG into HERALD_SCREENSHOT_DIR, when it is set."""
        directory = os.environ.get("HERALD_SCREENSHOT_DIR")
        if not directory:
            return
        os.makedirs(directory, exist_ok=True)
        height = self.driver.execute_script("return Math.min(document.documentElement.scrollHeight, 3000)")
        self.driver.set_window_size(width, max(600, height + 120))
        time.sleep(0.3)
        path = os.path.join(directory, f"{name}-{width}.png")
        self.driver.find_element(By.TAG_NAME, "body").screenshot(path)
        log(f"screenshot {path} ({os.path.getsize(path)} bytes)")


# ---------------------------------------------------------------- API calls


def http(method, url, token=None, body=None):
    """One JSON call; answers (status, headers, parsed body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(request, timeout=WAIT) as response:
            return response.status, dict(response.headers), parse(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), parse(err.read())


def parse(raw):
    """JSON when the body is JSON, else its text."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def config():
    """The scenario's parameters: JSON in argv[2]."""
    cfg = json.loads(sys.argv[2])
    for key in ("gateway",):
        assert cfg[key].startswith("http://127.0.0.1:"), f"{key} must be local: {cfg[key]}"
    return cfg


def portal_link(cfg, token=None, encode=True):
    """The link an integrator is given; `encode=False` leaves a base64 token's `+` and `/` as they are."""
    token = token or cfg["token"]
    return f"{cfg['gateway']}/portal/#token={urllib.parse.quote(token, safe='') if encode else token}"


def run(scenarios):
    """Runs the scenario named in argv[1]; exit status 0 only when it passed."""
    name = sys.argv[1]
    started = time.monotonic()
    try:
        scenarios[name](config())
    except AssertionError as err:
        log(f"FAILED {name}: {err}")
        sys.exit(1)
    log(f"passed {name} in {time.monotonic() - started:.1f}s")
