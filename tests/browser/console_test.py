#!/usr/bin/env python3
"""The console (SPEC §13) in a real browser: Debian's chromium, headless,
driven through Debian's chromedriver by selenium.

Everything runs on loopback and is started here: the daemon (env
`HOOKYARD_BIN`, default `target/debug/hookyard`), a receiver whose answer
switches between 500 and 200, and a config in a temporary directory.

The walk: a wrong token is refused and the right one logs in; events
published while the receiver fails are dead-lettered; the events list leads
to the event, its attempts and the request each one sent; the dead-letter
page redrives one delivery, which then succeeds; a read-only token sees no
controls and its POST is 403; a POST without the CSRF token is 403; "Redrive
all" takes two clicks; no page ever shows a token or a secret's value.
Screenshots of the login, events, event and dead-letter pages go to
`docs/screenshots/` (overwritten each run).

It also sends a request to a trigger, finds it among the trigger's captured
samples, and tries a changed mapping against it ("try a mapping"), which
shows the mapped event and the YAML to copy.

Run it with `bash tests/browser/run` (installs what is missing and builds the
daemon), or directly: `python3 tests/browser/console_test.py`.
Env: HOOKYARD_BIN, EXPECT_REQUEST_BODY=1 (attempts must show the request
body in `pre.request-body`), KEEP_TMP=1 (keep the temp dir and daemon log),
BROWSER_QUEUE=redis (the Redis backend at BROWSER_REDIS_URL, default
redis://127.0.0.1:6379/0, under a fresh key prefix; default: embedded).
"""

import http.client
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
# Never let selenium-manager fetch a browser or driver: Debian's are used.
os.environ.setdefault("SE_OFFLINE", "true")
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20  # seconds for anything asynchronous (deliveries, page loads)
EXPECT_REQUEST_BODY = os.environ.get("EXPECT_REQUEST_BODY") == "1"

# Values planted in the config through environment variables. None of them
# may ever appear in a page's HTML. Long random strings, so that a hit is a
# leak and not a coincidence.
FULL_TOKEN = "hy_full_" + secrets.token_hex(16)
READ_TOKEN = "hy_read_" + secrets.token_hex(16)
SIGNING_SECRET = "whsec_" + secrets.token_hex(20)
HEADER_SECRET = "hdrsecret" + secrets.token_hex(16)
PLANTED = {
    "full token": FULL_TOKEN,
    "read-only token": READ_TOKEN,
    "signing secret": SIGNING_SECRET,
    "header secret": HEADER_SECRET,
}


class Failure(Exception):
    """A failed check, with the page it failed on."""


# ---------------------------------------------------------------- receiver


class Receiver:
    """A loopback HTTP receiver answering 500 (unhealthy) or 200 (healthy),
    recording every request it gets."""

    def __init__(self):
        self.healthy = False
        self.received = []  # (path, {lower-case header: value}, body, status answered)
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                status = 200 if outer.healthy else 500
                with outer.lock:
                    outer.received.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                answer = b'{"ok":true}' if status == 200 else b'{"error":"receiver is unhealthy"}'
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, delivery_id, status):
        with self.lock:
            return [
                r for r in self.received
                if r[1].get("x-hookyard-delivery-id") == delivery_id and r[3] == status
            ]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ daemon


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """\
# Written by tests/browser/console_test.py.
server:
  listen: "127.0.0.1:{main_port}"
  api_listen: "127.0.0.1:{api_port}"
queue: {queue}
reload: {{ watch: false }}
egress: {{ allow: ["127.0.0.0/8"] }}
secrets:
  full_token: {{ env: HYBT_FULL_TOKEN }}
  read_token: {{ env: HYBT_READ_TOKEN }}
  signing: {{ env: HYBT_SIGNING }}
  header_key: {{ env: HYBT_HEADER }}
tokens:
  - name: browser-full
    secret: full_token
    scopes: [events:write, deliveries:read, deliveries:write, admin]
  - name: browser-readonly
    secret: read_token
    scopes: [deliveries:read]
triggers:
  - id: shop-order
    event: order.created
    verify: none
subscriptions:
  - id: receiver
    url: "{receiver}"
    events: ["order.*"]
    signing: {{ scheme: hmac-sha256, secret: signing }}
    headers:
      X-Api-Key: "key={{{{ secrets.header_key }}}}"
    retry: {{ schedule: [200ms] }}
    timeout: 5s
"""


REDIS_URL = os.environ.get("BROWSER_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = "hybrowser" + secrets.token_hex(4)


def on_redis():
    return os.environ.get("BROWSER_QUEUE", "embedded") == "redis"


def queue_config(tmp):
    """The embedded queue in the temp dir, or (BROWSER_QUEUE=redis) Redis at
    BROWSER_REDIS_URL under a prefix of this run's own."""
    if on_redis():
        return f'{{ backend: redis, url: "{REDIS_URL}", prefix: "{REDIS_PREFIX}" }}'
    return f'{{ backend: embedded, path: "{tmp / "queue"}" }}'


def redis_cleanup():
    """Delete this run's keys (SCAN + UNLINK over a bare RESP connection)."""
    u = urllib.parse.urlsplit(REDIS_URL)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=10) as s:
        f = s.makefile("rb")

        def call(*args):
            s.sendall(f"*{len(args)}\r\n".encode()
                      + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args))
            return reply()

        def reply():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"-":
                raise OSError(rest.decode())
            if kind in (b"+", b":"):
                return rest.decode()
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if kind == b"*":
                return [reply() for _ in range(int(rest))]
            raise OSError(f"unexpected Redis reply {line!r}")

        if u.password:
            call("AUTH", *([u.username] if u.username else []), u.password)
        db = (u.path or "/0").strip("/") or "0"
        call("SELECT", db)
        cursor = "0"
        while True:
            cursor, keys = call("SCAN", cursor, "MATCH", REDIS_PREFIX + ":*", "COUNT", "1000")
            if keys:
                call("UNLINK", *keys)
            if cursor == "0":
                break


class Daemon:
    def __init__(self, binary, tmp, receiver):
        self.main_port = free_port()
        self.api_port = free_port()
        self.dir = tmp
        self.config = tmp / "hookyard.yaml"
        self.config.write_text(
            CONFIG.format(
                main_port=self.main_port,
                api_port=self.api_port,
                queue=queue_config(tmp),
                receiver=receiver.url("/hook"),
            )
        )
        self.log_path = tmp / "daemon.log"
        self.log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.update(
            HYBT_FULL_TOKEN=FULL_TOKEN,
            HYBT_READ_TOKEN=READ_TOKEN,
            HYBT_SIGNING=SIGNING_SECRET,
            HYBT_HEADER=HEADER_SECRET,
            RUST_LOG=env.get("RUST_LOG", "info"),
            NO_COLOR="1",
        )
        self.proc = subprocess.Popen(
            [str(binary), "run", "-c", str(self.config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=tmp,
        )
        self.base = f"http://127.0.0.1:{self.api_port}"
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"the daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = request("GET", self.base + "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                raise Failure(f"/readyz did not answer 200 within 60 s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines=60):
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -------------------------------------------------------------------- HTTP


def request(method, url, body=None, headers=None):
    """One request, redirects not followed: (status, headers, body text)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def api(daemon, method, path, body=None, token=FULL_TOKEN):
    headers = {"authorization": f"Bearer {token}"}
    if body is not None:
        headers["content-type"] = "application/json"
        body = json.dumps(body)
    status, _, text = request(method, daemon.base + path, body, headers)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def form_post(daemon, path, fields, cookie=None):
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if cookie is not None:
        headers["cookie"] = f"hookyard_session={cookie}"
    return request("POST", daemon.base + path, urllib.parse.urlencode(fields), headers)


# ----------------------------------------------------------------- browser


class Browser:
    """The driver, plus every page's HTML as the test saw it (for the
    planted-secrets check at the end)."""

    def __init__(self, base):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,900",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-features=MediaRouter,OptimizationHints,Translate",
            "--metrics-recording-only",
            "--password-store=basic",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER)
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_window_size(1280, 900)
        self.driver.set_page_load_timeout(WAIT)
        self.base = base
        self.seen = []  # (url, html)

    def html(self):
        source = self.driver.page_source
        self.seen.append((self.driver.current_url, source))
        return source

    def get(self, path):
        self.driver.get(self.base + path)
        return self.html()

    def path(self):
        u = urllib.parse.urlsplit(self.driver.current_url)
        return u.path + (f"?{u.query}" if u.query else "")

    def find(self, css, within=None):
        return (within or self.driver).find_elements(By.CSS_SELECTOR, css)

    def one(self, css, within=None, what=None):
        found = self.find(css, within)
        if not found:
            fail(self, f"no element matches {css!r}" + (f" ({what})" if what else ""))
        return found[0]

    def submit(self, button):
        """Click a form's button and wait for the next page."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        button.click()
        try:
            WebDriverWait(self.driver, WAIT).until(lambda d: is_stale(old))
        except TimeoutException:
            fail(self, "clicking the button did not load a new page")
        return self.html()

    def screenshot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        if not self.driver.save_screenshot(str(path)):
            raise Failure(f"screenshot {path} was not saved")
        print(f"   screenshot {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")

    def console_errors(self):
        try:
            return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]
        except WebDriverException:
            return []

    def quit(self):
        self.driver.quit()


def is_stale(element):
    try:
        element.is_enabled()
        return False
    except WebDriverException:
        return True


def fail(browser, message):
    """Stop with `message`, the URL and the page's HTML."""
    url, source = "?", "(no page)"
    if browser is not None:
        try:
            url, source = browser.driver.current_url, browser.driver.page_source
        except WebDriverException as e:
            source = f"(page source unavailable: {e})"
    raise Failure(f"{message}\n--- at {url}; page HTML:\n{source}\n--- end of page")


def check(browser, condition, message):
    if not condition:
        fail(browser, message)


# Console problems that do not stop the walk: every one is reported at the
# end (and fails the test), so one run shows them all.
PROBLEMS = []


def expect(condition, message, excerpt=""):
    if not condition:
        print(f"   PROBLEM: {message}", flush=True)
        PROBLEMS.append(message + (f"\n    page excerpt: {excerpt}" if excerpt else ""))


def wait_for(what, fn, timeout=WAIT, interval=0.2):
    """Poll `fn` until it returns something truthy; that value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------- steps


def step(text):
    print(f"-- {text}", flush=True)


def login(b, token):
    b.get("/ui/")
    field = b.one('form[action="/ui/login"][method="post"] input[type="password"][name="token"]',
                  what="the login form")
    field.clear()
    field.send_keys(token)
    return b.submit(b.one('form[action="/ui/login"] button[type="submit"]'))


def logout(b):
    html = b.submit(b.one('form.logout[action="/ui/logout"] button[type="submit"]', what="Log out"))
    check(b, b.find('form[action="/ui/login"] input[name="token"]'), "after logout the login form is not shown")
    check(b, b.driver.get_cookie("hookyard_session") is None, "the session cookie is still there after logout")
    return html


def csrf_of_page(b):
    """The session's CSRF token, from the logout form's hidden input."""
    return b.one('form.logout input[type="hidden"][name="csrf"]', what="csrf input").get_attribute("value")


def session_cookie(b):
    c = b.driver.get_cookie("hookyard_session")
    check(b, c is not None and c.get("value"), "no hookyard_session cookie after login")
    return c


def delivery_of(daemon, event_id):
    status, body = api(daemon, "GET", f"/v1/events/{event_id}")
    if status != 200:
        raise Failure(f"GET /v1/events/{event_id}: {status} {body}")
    deliveries = body["deliveries"]
    if len(deliveries) != 1:
        raise Failure(f"event {event_id} should have one delivery: {json.dumps(body, indent=1)}")
    return deliveries[0]


def state_on_event_page(b, event_id, delivery_id):
    b.get(f"/ui/events/{urllib.parse.quote(event_id, safe='')}")
    sections = b.find(f'section.delivery[id="delivery-{delivery_id}"]')
    check(b, sections, f"no section.delivery for delivery {delivery_id} on the event page")
    return b.one("span.state", sections[0]).text.strip()


def overview_number(b, table, column):
    """The overview's queue number under `column` (text)."""
    heads = [th.text.strip() for th in b.find("th", table)]
    cells = [td.text.strip() for td in b.find("td", table)]
    check(b, column in heads and len(cells) == len(heads), f"the overview has no {column!r} number")
    return cells[heads.index(column)]


def buttons(b, *texts):
    """Visible buttons whose text contains any of `texts`."""
    return [x for x in b.find("button") if any(t.lower() in x.text.lower() for t in texts)]


def run(tmp, binary):
    receiver = Receiver()
    daemon = b = None
    try:
        step(f"daemon {binary}; receiver on :{receiver.port} answering 500")
        daemon = Daemon(binary, tmp, receiver)
        print(f"   api listener {daemon.base}, main listener :{daemon.main_port}")

        # The console lives on the API listener only.
        status, _, _ = request("GET", f"http://127.0.0.1:{daemon.main_port}/ui/")
        if status != 404:
            raise Failure(f"GET /ui/ on the main listener (api_listen is set) answered {status}, not 404")

        b = Browser(daemon.base)

        step("login: the form, a wrong token refused, the right one accepted")
        html = b.get("/ui/")
        check(b, b.find('form[method="post"][action="/ui/login"]'), "GET /ui/ without a session shows no login form")
        check(b, len(b.find('form[action="/ui/login"] input')) == 1, "the login form should have exactly one input")
        b.screenshot("login.png")
        html = login(b, "not-a-token-" + secrets.token_hex(4))
        check(b, b.find('form[action="/ui/login"] input[name="token"]'), "a wrong token does not show the login form again")
        problem = b.find("p.problem")
        check(b, problem and "not known" in problem[0].text, "a wrong token shows no error message")
        check(b, b.driver.get_cookie("hookyard_session") is None, "a wrong token set a session cookie")
        status, _, _ = form_post(daemon, "/ui/login", {"token": "not-a-token"})
        check(b, status == 401, f"POST /ui/login with a wrong token answered {status}, not 401")
        html = login(b, FULL_TOKEN)
        check(b, b.path() == "/ui/", f"after login the browser is at {b.path()}, not /ui/")
        check(b, b.find("form.logout"), "after login there is no logout form (still logged out?)")
        check(b, "browser-full" in b.one("form.logout .who").text, "the page does not name the logged-in token")
        cookie = session_cookie(b)
        check(b, cookie.get("httpOnly") is True, f"session cookie is not HttpOnly: {cookie}")
        check(b, cookie.get("sameSite") == "Strict", f"session cookie is not SameSite=Strict: {cookie}")
        check(b, b.find('nav a[href="/ui/config"]'), "an admin token sees no Config link")

        step("publish two events while the receiver answers 500; both dead-letter")
        events = []
        for n in (1, 2):
            status, body = api(daemon, "POST", "/v1/events",
                               {"type": "order.created", "data": {"order": {"id": f"10{n}", "total": 100 * n}}})
            if status not in (200, 201, 202) or not isinstance(body, dict) or "event_id" not in body:
                raise Failure(f"POST /v1/events answered {status}: {body}")
            events.append(body["event_id"])
        deliveries = []
        for event_id in events:
            d = wait_for(f"event {event_id}'s delivery to dead-letter",
                         lambda: (lambda d: d if d["state"] == "dead_letter" else None)(delivery_of(daemon, event_id)))
            deliveries.append(d)
            print(f"   event {event_id}: delivery {d['id']} dead_letter ({d.get('reason')}), "
                  f"{len(d['attempts'])} attempts")
        (ev1, ev2), (d1, d2) = events, deliveries
        check(None, len(d1["attempts"]) == 2, f"schedule [200ms] should make 2 attempts: {d1['attempts']}")
        check(None, receiver.got(d1["id"], 500), "the receiver never got the first delivery")

        step("events list (filtered by state) → the event → its attempts and the requests they sent")
        b.get("/ui/events")
        Select(b.one('form.filters select[name="state"]')).select_by_value("dead_letter")
        b.submit(b.one('form.filters button[type="submit"]'))
        check(b, "state=dead_letter" in b.path(), f"the state filter led to {b.path()}")
        link = b.one(f'table.events a[href="/ui/events/{ev1}"]', what=f"link to event {ev1}")
        check(b, len(b.find("table.events a[href^='/ui/events/']")) >= 2, "the events list does not show both events")
        b.screenshot("events.png")
        b.submit(link)
        check(b, b.path() == f"/ui/events/{ev1}", f"the link led to {b.path()}")
        section = b.one(f'section.delivery[id="delivery-{d1["id"]}"]', what="the delivery")
        state = b.one("span.state", section).text.strip()
        check(b, state == "dead_letter", f"the delivery's state reads {state!r}, not dead_letter")
        check(b, "attempts_exhausted" in section.text or (d1.get("reason") or "") in section.text,
              "the dead-letter reason is not shown")
        payload = b.one("pre.payload").text
        check(b, '"id": "101"' in payload, f"the payload is not shown: {payload!r}")
        attempts = b.find("details.attempt", section)
        check(b, len(attempts) == len(d1["attempts"]),
              f"{len(attempts)} attempts shown, the API has {len(d1['attempts'])}")
        for i, details in enumerate(attempts):
            if details.get_attribute("open") is None:
                b.one("summary", details).click()
                WebDriverWait(b.driver, 5).until(lambda _: details.get_attribute("open") is not None)
            text = details.text
            want = f"POST {receiver.url('/hook')}"
            check(b, want in text, f"attempt {i + 1} does not show the request line {want!r}")
            check(b, "X-Hookyard-Delivery-Id" in text or "x-hookyard-delivery-id" in text,
                  f"attempt {i + 1} does not show the request headers")
            check(b, "HTTP 500" in text and "receiver is unhealthy" in text,
                  f"attempt {i + 1} does not show the 500 response and its body")
            bodies = b.find("pre.request-body", details)
            if EXPECT_REQUEST_BODY:
                check(b, bodies, f"attempt {i + 1} shows no pre.request-body (EXPECT_REQUEST_BODY=1)")
            if bodies:
                body = bodies[0].text
                check(b, '"order.created"' in body and '"101"' in body,
                      f"attempt {i + 1}'s request body is not the envelope: {body!r}")
        if not EXPECT_REQUEST_BODY:
            print("   request bodies: not required (EXPECT_REQUEST_BODY unset); "
                  f"{'shown' if b.find('pre.request-body') else 'not shown'}")
        check(b, buttons(b, "Retry this delivery"), "a deliveries:write token sees no Retry button")
        check(b, buttons(b, "Replay"), "a deliveries:write token sees no Replay button")
        b.driver.execute_script("arguments[0].scrollIntoView()", section)
        b.screenshot("event.png")

        step("dead letter: Redrive one delivery once the receiver is healthy; it succeeds")
        b.get("/ui/dead-letter")
        check(b, b.find("section.target"), "the dead-letter page shows no target group")
        row = b.find(f'tr.dead:has(form[action="/ui/deliveries/{d1["id"]}/retry"])')
        check(b, row, f"no dead-letter row with a Redrive form for {d1['id']}")
        check(b, d1["id"] in row[0].text, "the row does not show the delivery id")
        check(b, b.find(f'tr.dead:has(form[action="/ui/deliveries/{d2["id"]}/retry"])'),
              f"the second dead letter {d2['id']} is not listed")
        b.screenshot("dead-letter.png")
        receiver.healthy = True
        redrive = b.one('form[action$="/retry"] button[type="submit"]', row[0], what="Redrive")
        check(b, redrive.text.strip() == "Redrive", f"the row's button reads {redrive.text!r}")
        b.submit(redrive)
        check(b, b.path().startswith("/ui/dead-letter"), f"after Redrive the browser is at {b.path()}")
        notice = b.find("p.notice")
        check(b, notice and d1["id"] in notice[0].text, "no notice that the delivery is queued again")
        wait_for(f"delivery {d1['id']} to succeed on the event page",
                 lambda: state_on_event_page(b, ev1, d1["id"]) == "succeeded")
        check(b, receiver.got(d1["id"], 200), "the receiver never got the redriven delivery with 200")
        check(b, delivery_of(daemon, ev2)["state"] == "dead_letter",
              "redriving one delivery also redrove the other")
        b.get("/ui/dead-letter")
        check(b, not b.find(f'form[action="/ui/deliveries/{d1["id"]}/retry"]'),
              "the succeeded delivery is still on the dead-letter page")
        b.get("/ui/")
        numbers = b.one("table.numbers", what="the overview's queue numbers")
        dead = overview_number(b, numbers, "dead-lettered")
        expect(dead == "1",
               f"after redriving {d1['id']} (now succeeded) the overview still counts {dead} dead-lettered "
               "deliveries, not 1 (one is left)", numbers.get_attribute("outerHTML"))

        step("Config page (admin) shows no secret values")
        b.get("/ui/config")
        check(b, b.find("pre.file"), "the config page shows no file")

        # The full session's CSRF token, for the cross-session check below.
        full_csrf = csrf_of_page(b)
        full_cookie = session_cookie(b)["value"]

        step("log out; log in read-only: no controls, and its POST is 403")
        logout(b)
        b.get("/ui/events")
        check(b, b.find('form[action="/ui/login"]'), "after logout /ui/events does not lead to the login form")
        login(b, READ_TOKEN)
        check(b, "browser-readonly" in b.one("form.logout .who").text, "not logged in as the read-only token")
        check(b, not b.find('nav a[href="/ui/config"]'), "a read-only token sees the Config link")
        for path in (f"/ui/events/{ev2}", "/ui/dead-letter"):
            b.get(path)
            check(b, b.find("section.delivery") or b.find("section.target"), f"{path} shows nothing to a reader")
            shown = buttons(b, "Retry", "Replay", "Redrive")
            check(b, not shown, f"{path} shows {[x.text for x in shown]} to a read-only token")
            forms = [f.get_attribute("action") for f in b.find("form")
                     if not f.get_attribute("action").endswith(("/ui/logout", "/ui/events"))]
            check(b, not forms, f"{path} has change forms for a read-only token: {forms}")
        b.get("/ui/config")
        check(b, "lacks the scope" in b.driver.page_source, "/ui/config does not refuse a non-admin token")
        ro_csrf = csrf_of_page(b)
        ro_cookie = session_cookie(b)["value"]
        status, _, _ = request("GET", daemon.base + "/ui/events",
                               headers={"cookie": f"hookyard_session={ro_cookie}"})
        check(b, status == 200, f"the read-only session cookie does not work outside the browser ({status})")
        status, _, text = form_post(daemon, f"/ui/deliveries/{d2['id']}/retry",
                                    {"csrf": ro_csrf, "back": "/ui/dead-letter"}, ro_cookie)
        check(b, status == 403, f"a read-only POST .../retry with its csrf answered {status}, not 403:\n{text}")
        b.seen.append(("POST retry (read-only)", text))
        status, _, text = form_post(daemon, "/ui/dead-letter/redrive",
                                    {"csrf": ro_csrf, "confirmed": "yes"}, ro_cookie)
        check(b, status == 403, f"a read-only POST /ui/dead-letter/redrive answered {status}, not 403")
        b.seen.append(("POST redrive (read-only)", text))
        time.sleep(0.5)
        check(b, delivery_of(daemon, ev2)["state"] == "dead_letter", "a read-only POST changed the delivery")
        logout(b)

        step("POSTs without the session's CSRF token are 403")
        for name, fields in (("no csrf", {}), ("empty csrf", {"csrf": ""}),
                             ("another session's csrf", {"csrf": ro_csrf})):
            status, _, text = form_post(daemon, f"/ui/deliveries/{d2['id']}/retry",
                                        dict(fields, back="/ui/dead-letter"), full_cookie)
            check(b, status == 403, f"POST .../retry with the full session and {name} answered {status}, not 403")
            b.seen.append((f"POST retry ({name})", text))
        status, _, _ = form_post(daemon, f"/ui/deliveries/{d2['id']}/retry", {"csrf": full_csrf})
        check(b, status == 401, f"POST .../retry without a session answered {status}, not 401")
        time.sleep(0.5)
        check(b, delivery_of(daemon, ev2)["state"] == "dead_letter", "a refused POST changed the delivery")
        # The same cookie and csrf do work (so the 403s above are the CSRF
        # check): logging out is harmless, the cookie is stateless.
        status, headers, _ = form_post(daemon, "/ui/logout", {"csrf": full_csrf}, full_cookie)
        check(b, status == 303, f"POST /ui/logout with the full session's cookie and csrf answered {status}")

        step("Redrive all takes a second click, then the other delivery succeeds")
        login(b, FULL_TOKEN)
        b.get("/ui/dead-letter")
        first = buttons(b, "Redrive all")
        check(b, first, "no 'Redrive all…' button")
        b.submit(first[0])
        check(b, "confirm=all" in b.path(), f"the first click on Redrive all led to {b.path()}")
        check(b, delivery_of(daemon, ev2)["state"] == "dead_letter", "the first click already redrove")
        yes = buttons(b, "Yes, redrive every dead letter")
        check(b, yes, "the confirmation button is not shown")
        b.submit(yes[0])
        notice = b.find("p.notice")
        check(b, notice and "Redriven" in notice[0].text, "no notice after redriving all")
        expect("Redriven: 1." in notice[0].text,
               f"'Redrive all' with one delivery ({d2['id']}) dead-lettered says {notice[0].text!r}, "
               "not 'Redriven: 1.'", notice[0].get_attribute("outerHTML"))
        wait_for(f"delivery {d2['id']} to succeed",
                 lambda: state_on_event_page(b, ev2, d2["id"]) == "succeeded")
        b.get("/ui/dead-letter")
        check(b, "Nothing is dead-lettered" in b.driver.page_source, "the dead-letter page is not empty after redrive all")
        b.get("/ui/")
        numbers = b.one("table.numbers", what="the overview's queue numbers")
        dead = overview_number(b, numbers, "dead-lettered")
        expect(dead == "0", f"after redriving everything the overview counts {dead} dead-lettered deliveries",
               numbers.get_attribute("outerHTML"))
        time.sleep(1)  # a second send of d1, if one is coming, has arrived by now
        sends = receiver.got(d1["id"], 200)
        expect(len(sends) == 1,
               f"delivery {d1['id']} succeeded once after its Redrive, yet the receiver got it "
               f"{len(sends)} times with 200: 'Redrive all' sent an already succeeded delivery again")

        step("failed logins are rate-limited (429 with Retry-After)")
        for n in range(12):
            status, headers, text = form_post(daemon, "/ui/login", {"token": f"guess-{n}"})
            if status == 429:
                break
            check(None, status == 401, f"wrong login {n + 1} answered {status}, not 401")
        check(None, status == 429, "12 wrong logins in a row were never answered 429")
        check(None, headers.get("retry-after", "").isdigit(), f"429 without Retry-After: {headers}")
        check(None, 'action="/ui/login"' in text and "Too many" in text, f"the 429 page:\n{text}")
        print(f"   429 after {n + 1} more attempts, Retry-After {headers['retry-after']}")
        b.seen.append(("POST /ui/login 429", text))

        step("a trigger's captured sample, and a changed mapping tried against it")
        status, _, _ = request(
            "POST", f"http://127.0.0.1:{daemon.main_port}/hooks/shop-order",
            json.dumps({"order": {"id": "7", "total": 55}}).encode(),
            {"Content-Type": "application/json"},
        )
        check(None, status == 202, f"POST /hooks/shop-order answered {status}")
        b.get("/ui/triggers")
        b.submit(b.one('a[href="/ui/triggers/shop-order"]', what="the trigger's link"))
        samples = b.find("details.sample")
        check(b, samples, "the trigger page shows no captured sample")
        check(b, "verification passed" in samples[0].text, f"the sample says: {samples[0].text}")
        area = b.one("textarea#mapping", what="the mapping editor")
        area.clear()
        area.send_keys("order_total: { path: $.order.total, type: string }\nref: $.order.id")
        b.submit(b.one('form.try button[type="submit"]', what="Try it"))
        tried = b.find("pre.tried-event")
        check(b, tried, "trying a mapping showed no mapped event")
        check(b, '"order_total": "55"' in tried[0].text and '"ref": "7"' in tried[0].text,
              f"the mapped event is {tried[0].text}")
        yaml = b.one("pre.tried-yaml", what="the YAML to copy").text
        check(b, yaml.startswith("mapping:") and "order_total" in yaml, f"the YAML to copy is {yaml!r}")
        check(b, b.find("pre.tried-report"), "no report of the requests it would send")
        b.screenshot("trigger.png")

        step("no page shows a token or a secret's value; no script; no browser errors")
        leaks = [(name, url) for url, html in b.seen for name, value in PLANTED.items() if value in html]
        if leaks:
            url = leaks[0][1]
            html = next(h for u, h in b.seen if u == url)
            raise Failure(f"planted values appear in pages: {leaks}\n--- {url}:\n{html}")
        scripts = [url for url, html in b.seen if "<script" in html.lower()]
        check(None, not scripts, f"pages carry <script>: {scripts}")
        # The secrets did reach the receiver (so their absence above means
        # redaction, not that they were never used).
        with receiver.lock:
            sent = receiver.received[-1][1]
        check(None, sent.get("x-api-key") == f"key={HEADER_SECRET}",
              f"the receiver did not get the header secret: {sent}")
        check(None, sent.get("x-hmac-signature", "").startswith("sha256="),
              f"the receiver got no signature: {sent}")
        # Network errors for the refusals this test provokes (401, 403) are
        # expected; anything else (a CSP violation, a missing stylesheet) is not.
        errors = [
            e for e in b.console_errors()
            if "favicon" not in e.get("message", "")
            and not (e.get("source") == "network" and any(
                f"status of {code}" in e.get("message", "") for code in (401, 403)))
        ]
        check(None, not errors, f"the browser logged errors: {errors}")
        print(f"   {len(b.seen)} pages checked")
        if PROBLEMS:
            raise Failure(f"{len(PROBLEMS)} console problem(s):\n- " + "\n- ".join(PROBLEMS))
    except Exception:
        if daemon is not None:
            print(f"--- daemon log (last lines):\n{daemon.log_tail()}", file=sys.stderr)
        raise
    finally:
        if b is not None:
            b.quit()
        if daemon is not None:
            daemon.stop()
        receiver.stop()
        if on_redis():
            try:
                redis_cleanup()
            except OSError as e:
                print(f"could not delete the Redis keys {REDIS_PREFIX}:*: {e}", file=sys.stderr)


def main():
    binary = Path(os.environ.get("HOOKYARD_BIN", "target/debug/hookyard"))
    if not binary.is_absolute():
        binary = ROOT / binary
    if not binary.exists():
        print(f"building {binary} (cargo build --bin hookyard)", flush=True)
        subprocess.run(["cargo", "build", "--bin", "hookyard"], cwd=ROOT, check=True)
        if not binary.exists():
            print(f"{binary} still missing after the build (CARGO_TARGET_DIR?)", file=sys.stderr)
            return 2
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: apt-get install chromium chromium-driver", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="hookyard-browser-"))
    started = time.time()
    try:
        run(tmp, binary)
    except Failure as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("\nFAILED (unexpected error above)", file=sys.stderr)
        return 1
    finally:
        if os.environ.get("KEEP_TMP") == "1":
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nconsole browser test passed ({time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
