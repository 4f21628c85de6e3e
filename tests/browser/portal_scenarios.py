"""The integrator portal in a real browser. Run by tests/tests/it/portal.rs:

    python portal_scenarios.py <scenario> '<json parameters>'

The Rust test starts the stack, prepares the data and passes the gateway
address, the portal token and the ids of what it made."""

import json
import os
import re
import time

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from portal_browser import Browser, http, log, portal_link, run

IMG_XSS = '<img src=x onerror="window.__xss=1">'
SCRIPT_XSS = "<script>window.__xss=1</script>"
MUTATING = re.compile(r"\b(create|new|add|edit|save|delete|remove|retry|rotate|test|replay|recover|activate|deactivate)\b", re.I)


def publish(cfg, data):
    status, _, body = http("POST", f"{cfg['gateway']}/v1/events", cfg["admin_token"],
                           {"tenant": cfg["tenant"], "type": cfg["event_type"], "data": data})
    assert status == 202, f"publish answered {status}: {body}"
    return body["id"]


def assert_not_injected(b, where):
    flag = b.driver.execute_script("return typeof window.__xss")
    assert flag == "undefined", f"{where}: injected script ran (window.__xss is {flag})"
    images = b.driver.execute_script("return [...document.images].filter(i => i.getAttribute('src') === 'x').length")
    assert images == 0, f"{where}: an <img src=x> was created"
    scripts = b.driver.execute_script("return [...document.scripts].map(s => s.getAttribute('src'))")
    assert scripts == ["portal.js"], f"{where}: unexpected scripts {scripts}"


# ---------------------------------------------------------------- (a)

def create_and_deliver(cfg):
    with Browser(1280, 900) as b:
        b.open(f"{cfg['gateway']}/portal/")
        assert b.title() == "Open your portal link", b.title()
        assert "Open the link your provider gave you" in b.text(), b.text()
        b.open(f"{cfg['gateway']}/portal/#token=hk_not_a_key")
        assert b.title() == "Session expired", b.title()
        assert "token" not in b.driver.current_url, b.driver.current_url
        # A base64 token pasted unencoded (`+`, `/`) works as well as an encoded one.
        b.open(portal_link(cfg, encode=False))
        assert "token" not in b.driver.current_url, f"the token stayed in the address bar: {b.driver.current_url}"
        stored = b.driver.execute_script("return sessionStorage.getItem('herald.portal.token')")
        assert stored == cfg["token"], "the token was not kept in sessionStorage"
        assert b.title() == "Overview", b.title()
        assert "No endpoints yet." in b.text()

        b.button("New endpoint").click()
        b.wait_loaded()
        assert b.title() == "New endpoint", b.title()
        # A refused form shows the problem next to it.
        b.fill("URL", "ftp://nowhere")
        b.button("Create endpoint").click()
        problem = b.wait(lambda d: [p for p in d.find_elements(By.CSS_SELECTOR, "form .problems .problem") if p.is_displayed()],
                         "the problem of the refused form")[0]
        log("refused form shows:", problem.text.replace("\n", " | "))
        assert problem.get_attribute("role") == "alert"

        b.fill("URL", cfg["receiver"])
        b.fill("Description", "Orders to the warehouse")
        b.button("Add header").click()
        name, value = b.css('.pair input[name="headers.name"]')[-1], b.css('.pair input[name="headers.value"]')[-1]
        name.send_keys("X-Warehouse")
        value.send_keys("north")
        b.button("Create endpoint").click()
        b.wait(lambda d: b.title() == "Orders to the warehouse", "the new endpoint's page")
        b.wait_loaded()
        text = b.text()
        assert cfg["receiver"] in text and "X-Warehouse" in text and "north" in text, text
        endpoint_url = b.driver.execute_script("return location.hash")
        log("created", endpoint_url)

        # A subscription through its form.
        b.driver.find_element(By.XPATH, "//summary[normalize-space()='Add a subscription']").click()
        b.fill("Event types", cfg["event_type"])
        b.button("Add subscription").click()
        b.wait(lambda d: [c for c in d.find_elements(By.CSS_SELECTOR, ".subscription code.tag") if c.text == cfg["event_type"]],
               "the new subscription in the list")

        # The edit form changes the authentication.
        b.button("Edit").click()
        b.wait_loaded()
        b.driver.find_element(By.CSS_SELECTOR, 'select[name="auth.type"] option[value="bearer"]').click()
        b.fill("Token", "s3cret-token")
        b.button("Save changes").click()
        b.wait(lambda d: d.execute_script("return location.hash") == endpoint_url, "the endpoint page after saving")
        b.wait_loaded()
        assert "Bearer token" in b.text(), b.text()

        # A test event, and the attempt it made.
        b.button("Send test event").click()
        outcome = b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".test-outcome"), "the test attempt")[0]
        assert "delivered" in outcome.text, outcome.text

        # Replay and recovery answer how much they queued.
        since = b.field("Since", b.driver.find_elements(By.XPATH, "//section[h2='Replay']")[0])
        assert since.get_attribute("value"), "replay has no default start"
        b.button("Replay events").click()
        b.wait(lambda d: re.search(r"\d+ events? queued for replay", b.text()), "the replay's count")
        b.button("Recover failed deliveries").click()
        b.wait(lambda d: re.search(r"\d+ deliver(y|ies) queued again", b.text()), "the recovery's count")

        event_id = publish(cfg, {"orderId": "o-1", "amount": 12})
        log("published", event_id)
        b.go("#/deliveries")

        def delivered_row():
            for row in b.css("tbody tr"):
                if event_id in row.text and "delivered" in row.text:
                    return True
            return False

        b.refresh_until(delivered_row, f"the delivery of {event_id} in the list")
        # The status filter: no failed delivery, one delivered.
        b.driver.find_element(By.CSS_SELECTOR, 'form[role=search] select[name="status"] option[value="failed"]').click()
        b.button("Apply").click()
        b.wait(lambda d: "status=failed" in d.execute_script("return location.hash") and "No deliveries match." in b.text(),
               "the failed filter to match nothing")
        b.driver.find_element(By.CSS_SELECTOR, 'form[role=search] select[name="status"] option[value="delivered"]').click()
        b.button("Apply").click()
        b.wait(lambda d: "status=delivered" in d.execute_script("return location.hash") and delivered_row(),
               "the delivered filter to show the delivery")
        b.go("#/")
        assert event_id in b.text(), "the landing page does not list the delivery"
        assert "Orders to the warehouse" in b.text()

        # The event log: the event, its data and its delivery; a type filter that matches nothing.
        b.go("#/events")
        b.refresh_until(lambda: event_id in b.text(), "the event in the event log")
        b.driver.find_element(By.LINK_TEXT, event_id).click()
        b.wait(lambda d: b.title() == f"Event {cfg['event_type']}", "the event's page")
        b.wait_loaded()
        assert '"orderId": "o-1"' in b.text() and "delivered" in b.text(), b.text()
        b.go("#/events")
        b.fill("Event type", "no.such.type")
        b.button("Apply").click()
        b.wait(lambda d: "type=no.such.type" in d.execute_script("return location.hash") and "No events match." in b.text(),
               "the type filter to match nothing")

        b.go(endpoint_url)
        # The signing secret: revealed, then rotated (after a confirmation) to another one.
        b.button("Reveal signing secret").click()
        first = b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".secret-value"), "the secret")[0].text
        assert first.startswith("whsec_"), first
        b.button("Rotate secret").click()
        b.button("Rotate now").click()
        b.wait(lambda d: b.one(".secret-value").text not in ("", first), "a new secret")

        # The subscription: edited to every type, then deleted.
        b.button("Edit", b.one(".subscription")).click()
        b.fill("Event types", "*")
        b.button("Save subscription").click()
        b.wait(lambda d: [c for c in d.find_elements(By.CSS_SELECTOR, ".subscription code.tag") if c.text == "*"],
               "the edited subscription")
        b.button("Delete", b.one(".subscription")).click()
        b.button("Delete subscription").click()
        b.wait(lambda d: "No subscriptions" in b.text(), "the subscription to go")

        # Deactivated, activated, then deleted (after a confirmation).
        b.button("Deactivate").click()
        b.wait(lambda d: b.css(".badge-deactivated"), "the deactivated status")
        b.wait_loaded()
        b.button("Activate").click()
        b.wait(lambda d: b.css("dd .badge-active"), "the active status")
        b.wait_loaded()
        b.button("Delete endpoint").click()
        b.button("Delete for good").click()
        b.wait(lambda d: d.execute_script("return location.hash") == "#/endpoints", "the endpoint list")
        b.wait_loaded()
        b.wait(lambda d: "No endpoints yet." in b.text(), "the endpoint to be gone")
        b.assert_no_csp_violations()


# ---------------------------------------------------------------- (b)

def failing_delivery(cfg):
    with Browser(1280, 900) as b:
        b.open(portal_link(cfg))
        b.go(f"#/deliveries/{cfg['delivery_id']}")
        count = int(b.one("[data-attempt-count]").text)
        assert count >= 1, count
        attempts = b.css("article.attempt")
        assert len(attempts) == count, f"{len(attempts)} attempts shown, {count} counted"
        for article in attempts:
            request = article.find_element(By.CSS_SELECTOR, "section.request")
            response = article.find_element(By.CSS_SELECTOR, "section.response")
            assert "Request" in request.text, request.text
            assert "500" in response.text and "upstream exploded" in response.text, response.text
        request = attempts[-1].find_element(By.CSS_SELECTOR, "section.request").text
        log("first attempt's request:", request.replace("\n", " | "))
        assert cfg["receiver"] in request, f"the request's URL is not shown: {request}"
        assert re.search(r"(?i)content-type", request), f"the request's headers are not shown: {request}"
        b.button("Retry now").click()
        b.wait(lambda d: "Retry queued." in b.text(), "the retry to be accepted")
        after = {}

        def grown():
            after["count"] = int(b.one("[data-attempt-count]").text)
            return after["count"] > count and len(b.css("article.attempt")) > count

        b.refresh_until(grown, "the attempt count to grow after the retry")
        # Read inside the condition: the view may re-render once more after it.
        log(f"attempts: {count} before the retry, {after['count']} after")
        b.assert_no_csp_violations()


# ---------------------------------------------------------------- (c)

def xss(cfg):
    with Browser(1280, 900) as b:
        b.open(portal_link(cfg))
        pages = [
            ("#/", [IMG_XSS]),
            (f"#/endpoints/{cfg['endpoint_id']}", [IMG_XSS, SCRIPT_XSS]),
            (f"#/deliveries/{cfg['delivery_id']}", [IMG_XSS]),
            ("#/catalog", [IMG_XSS, SCRIPT_XSS]),
            ("#/events", []),
            (f"#/events/{cfg['event_id']}", []),
            ("#/deliveries/%3Cimg%20src%3Dx%20onerror%3D%22window.__xss%3D1%22%3E", []),
        ]
        for route, expected in pages:
            b.go(route)
            time.sleep(0.3)
            text = b.text()
            for payload in expected:
                assert payload in text, f"{route}: {payload} is not shown as text:\n{text[:2000]}"
            if route.startswith("#/events"):
                if "not available on this server yet" in text:
                    log(f"{route}: the event log is not served yet; data not checked")
                else:
                    # The list previews the data as JSON text, quotes escaped.
                    shown = [p if route.startswith("#/events/") else json.dumps(p)[1:-1] for p in (IMG_XSS, SCRIPT_XSS)]
                    assert all(p in text for p in shown), f"{route}: event data not shown as text:\n{text[:2000]}"
            assert_not_injected(b, route)
            log(f"{route}: shown as text, nothing ran")
        b.assert_no_csp_violations()


# ---------------------------------------------------------------- (d)

def assert_read_only(b, where):
    mutating = b.css("[data-mutates]")
    assert not mutating, f"{where}: {len(mutating)} controls that change things"
    for form in b.css("form"):
        assert form.get_attribute("role") == "search", f"{where}: a form that is not a search: {form.text}"
    for control in b.css("input, select, textarea"):
        inside = b.driver.execute_script("return !!arguments[0].closest('form[role=search]')", control)
        assert inside, f"{where}: an input outside the filters: {control.get_attribute('name')}"
    for button in b.css("button, a.button, [role=button]"):
        label = button.text.strip()
        assert not MUTATING.search(label), f"{where}: a '{label}' button"


def read_only(cfg):
    with Browser(1280, 900) as b:
        b.open(portal_link(cfg, cfg["readonly_token"]))
        assert "Read-only" in b.text(), "the session is not shown as read-only"
        for route in ["#/", "#/endpoints", f"#/endpoints/{cfg['endpoint_id']}", f"#/endpoints/{cfg['endpoint_id']}/edit",
                      "#/endpoints/new", "#/deliveries", f"#/deliveries/{cfg['delivery_id']}", "#/events", "#/catalog"]:
            b.go(route)
            assert_read_only(b, route)
            log(f"{route}: nothing that changes anything")
        b.go(f"#/endpoints/{cfg['endpoint_id']}")
        assert "Subscriptions" in b.text() and "Health" in b.text(), "the endpoint page is not shown"
        b.button("Sign out").click()
        b.wait(lambda d: b.title() == "Signed out", "the signed-out page")
        assert b.driver.execute_script("return sessionStorage.getItem('herald.portal.token')") is None
        status, _, body = http("GET", f"{cfg['gateway']}/v1/portal/session", cfg["readonly_token"])
        assert status == 401, f"the read-only session still works after signing out: {status} {body}"
        b.assert_no_csp_violations()
    # A full session's Sign out revokes it on the server.
    with Browser(1280, 900) as b:
        b.open(portal_link(cfg, cfg["session_token"]))
        assert b.title() == "Overview", b.title()
        assert "Read-only" not in b.text() and b.css("[data-mutates]"), "a full session shows no controls"
        b.button("Sign out").click()
        b.wait(lambda d: b.title() == "Signed out", "the signed-out page")
        status, _, body = http("GET", f"{cfg['gateway']}/v1/portal/session", cfg["session_token"])
        assert status == 401, f"the session still works after signing out: {status} {body}"
        log("a full session signed out is revoked")
        b.assert_no_csp_violations()


# ---------------------------------------------------------------- (e) and (f)

POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " \
         "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"


def csp_and_screens(cfg):
    gateway = cfg["gateway"]
    for path, status in [("/portal/", 200), ("/portal/portal.js", 200), ("/portal/portal.css", 200),
                         ("/portal/nothing.js", 404), ("/portal", 308)]:
        code, headers, _ = http("GET", gateway + path)
        headers = {k.lower(): v for k, v in headers.items()}
        assert code == status, f"{path}: {code}"
        csp = headers.get("content-security-policy", "")
        assert csp == POLICY, f"{path}: Content-Security-Policy is {csp!r}"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers.get("x-frame-options") == "DENY" and headers.get("x-content-type-options") == "nosniff", headers
        assert headers.get("referrer-policy") == "no-referrer" and headers.get("cache-control") == "no-cache", headers
    log("headers: the policy is on every portal answer")

    views = [("landing", "#/"), ("endpoint", f"#/endpoints/{cfg['endpoint_id']}"),
             ("delivery", f"#/deliveries/{cfg['delivery_id']}"), ("catalog", "#/catalog"),
             ("deliveries", "#/deliveries"), ("events", "#/events")]
    for width in (1280, 390):
        with Browser(width, 900) as b:
            b.open(portal_link(cfg))
            # Keyboard: from the view's heading, Tab reaches the first control of the view, with a visible outline.
            ActionChains(b.driver).send_keys(Keys.TAB).perform()
            active = b.driver.switch_to.active_element
            outline = b.driver.execute_script(
                "const s = getComputedStyle(arguments[0]); return [arguments[0].tagName, s.outlineStyle, s.outlineWidth]", active)
            assert outline[0] in ("A", "BUTTON") and outline[1] != "none", f"first tab stop {active.text!r}: {outline}"
            log(f"{width}px: Tab reaches {active.text!r} with a {outline[2]} {outline[1]} outline")
            for name, route in views:
                b.go(route)
                time.sleep(0.3)
                overflow = b.driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"{name} at {width}px scrolls sideways by {overflow}px"
                if name == "endpoint":
                    chart = b.one("svg.chart")
                    log(f"{width}px: the endpoint's chart says {chart.get_attribute('aria-label')!r}")
                    assert re.match(r"[1-9]\d* delivered", chart.get_attribute("aria-label")), "the chart counts no delivery"
                if name in ("landing", "endpoint", "delivery", "catalog"):
                    b.screenshot(name, width)
                    b.driver.set_window_size(width, 900)
            if width == 1280:
                dark_and_chart(b)
            b.assert_no_csp_violations()
            log(f"{width}px: every view fits, no CSP violation in the console")
            if width == 1280:
                # The console check sees a violation when there is one.
                b.driver.execute_script("const s = document.createElement('style'); s.textContent = 'body { color: red; }'; document.head.append(s);")
                b.wait(lambda d: any("Content Security Policy" in e.get("message", "") for e in b.collect_console()),
                       "the console to report an inline style", timeout=5)
                log("an inline style is refused and reported in the console")


def dark_and_chart(b):
    """Dark mode changes the colours; the per-minute chart draws a bar group per minute."""
    b.go("#/")
    light = b.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    b.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    dark = b.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert light != dark, f"dark mode keeps the light background {light}"
    b.screenshot("landing-dark", 1280)
    b.driver.set_window_size(1280, 900)
    b.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    # Until the server reports per-minute figures, the chart is drawn from made-up ones.
    groups = b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/portal/chart.js').then((m) => {
          const now = Date.now();
          const minutes = Array.from({length: 60}, (_, i) => ({
            minute: new Date(now - (59 - i) * 60000).toISOString(),
            delivered: Math.round(20 + 15 * Math.sin(i / 6)), failed: i % 9 === 0 ? 4 : 0}));
          const figure = m.minutesChart(minutes);
          const card = document.createElement('section');
          card.className = 'card';
          card.id = 'chart-sample';
          card.append(figure);
          document.getElementById('main').prepend(card);
          done(figure.querySelectorAll('svg > g').length + ':' + figure.querySelectorAll('rect').length);
        }, (e) => done('error ' + e));""")
    assert groups.startswith("60:"), f"chart: {groups}"
    chart = b.one("#chart-sample")
    label = chart.find_element(By.CSS_SELECTOR, "svg").get_attribute("aria-label")
    assert "delivered" in label and "failed" in label, label
    if os.environ.get("HERALD_SCREENSHOT_DIR"):
        path = os.path.join(os.environ["HERALD_SCREENSHOT_DIR"], "chart-1280.png")
        chart.screenshot(path)
        log(f"screenshot {path}")


if __name__ == "__main__":
    run({
        "create_and_deliver": create_and_deliver,
        "failing_delivery": failing_delivery,
        "xss": xss,
        "read_only": read_only,
        "csp_and_screens": csp_and_screens,
    })
