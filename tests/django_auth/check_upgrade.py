"""What a non-browser client sees of roomcast's --auth-url decisions, at the
HTTP level (tests/django_auth/run.sh runs it after the browser checks).

    python check_upgrade.py

Environment (set by run.sh): ROOMCAST_PORT (roomcast asking /roomcast/auth/),
ROOMCAST2_PORT (roomcast asking the @login_required view), DJANGO_AUTH_DB and
DJANGO_AUTH_PASSWORD (the Django site's database and the test users'
password). Sessions are made the way Django's own test Client makes them
(Client.login writes a real session row to the same database), so the cookie
roomcast passes on is one the running Django site accepts.

Prints one "ok N - ..." line per check and ends with "N passed, N failed".
Exits non-zero on any failure.
"""
import base64
import hashlib
import http.client
import os
import re
import sys
import urllib.request

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authsite.settings")
django.setup()
from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402

PORT = int(os.environ["ROOMCAST_PORT"])
PORT2 = int(os.environ["ROOMCAST2_PORT"])
PASSWORD = os.environ["DJANGO_AUTH_PASSWORD"]
ORIGIN = f"http://127.0.0.1:{PORT}"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

passed = 0
failed = 0


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok {passed + failed} - {what}")
    else:
        failed += 1
        print(f"not ok {passed + failed} - {what}: {detail}")


def upgrade(port, room, session=None, origin=ORIGIN, cookie=None):
    """One WebSocket upgrade request: (status, headers, body)."""
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    if origin:
        headers["Origin"] = origin
    if session:
        headers["Cookie"] = f"csrftoken=x; {settings.SESSION_COOKIE_NAME}={session}"
    elif cookie:
        headers["Cookie"] = cookie
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/ws/chat/{room}/", headers=headers)
        res = conn.getresponse()
        # A 101 has no body; a refusal's is read to its Content-Length.
        body = b"" if res.status == 101 else res.read()
        hdrs = {k.lower(): v for k, v in res.getheaders()}
        if res.status == 101:
            want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            if hdrs.get("sec-websocket-accept") != want:
                return (-1, hdrs, b"wrong Sec-WebSocket-Accept")
        return res.status, hdrs, body
    finally:
        conn.close()


def refused(what, got, status, reason_like=None):
    code, hdrs, body = got
    text = body.decode("utf-8", "replace").strip()
    ok = (
        code == status
        and hdrs.get("content-type", "").startswith("text/plain")
        and "upgrade" not in hdrs
        and "sec-websocket-accept" not in hdrs
        and len(text) > 0
        and (reason_like is None or re.search(reason_like, text, re.I))
    )
    check(f"{what}: HTTP {status} with a plain-text reason, no upgrade ({text!r})", ok, f"got {code} {hdrs} {body!r}")


def admitted(what, got):
    code, hdrs, body = got
    check(f"{what}: 101 Switching Protocols", code == 101, f"got {code} {hdrs} {body!r}")


def login(username):
    client = Client()
    assert client.login(username=username, password=PASSWORD), f"Django refused {username}'s password"
    return client, client.cookies[settings.SESSION_COOKIE_NAME].value


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^roomcast_auth_rejections_total\{reason="([a-z_]+)"\} (\d+)$', text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


before = metrics(PORT)
before2 = metrics(PORT2)

refused("anonymous (no cookie)", upgrade(PORT, "lobby"), 401)
refused("a session id Django never issued", upgrade(PORT, "lobby", session="x" * 32), 401)

ann, ann_session = login("ann")
bob, bob_session = login("bob")
admitted("ann's session, room lobby", upgrade(PORT, "lobby", session=ann_session))
admitted("bob's session, room lobby", upgrade(PORT, "lobby", session=bob_session))
admitted("ann (staff), room staff-ops", upgrade(PORT, "staff-ops", session=ann_session))
refused("bob (not staff), room staff-ops", upgrade(PORT, "staff-ops", session=bob_session), 403)
admitted("bob, read-only room news-today (a read-only join is still a join)", upgrade(PORT, "news-today", session=bob_session))
# roomcast passes the client's Origin on; the Django view only takes roomcast's own.
refused("ann's session from another Origin", upgrade(PORT, "lobby", session=ann_session, origin="http://evil.example"), 403)
refused("ann's session with no Origin at all", upgrade(PORT, "lobby", session=ann_session, origin=None), 403)

# --auth-cache-ttl is 0 (the default): a logout takes effect at the next join.
ann.logout()
refused("ann's session after she logged out", upgrade(PORT, "lobby", session=ann_session), 401)

after = metrics(PORT)
grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
check(
    "roomcast_auth_rejections_total counted 3 backend_unauthorized and 3 backend_forbidden",
    grew.get("backend_unauthorized") == 3 and grew.get("backend_forbidden") == 3 and grew.get("backend_unavailable") == 0,
    f"increments {grew}",
)

# The second roomcast asks the @login_required view: an anonymous join gets
# Django's 302 to the login page, which roomcast must not take for a yes.
refused("anonymous, back end answers 302 to the login page", upgrade(PORT2, "lobby", origin=f"http://127.0.0.1:{PORT2}"), 503)
bob2, bob2_session = login("bob")
admitted(
    "bob's session through the @login_required view",
    upgrade(PORT2, "lobby", session=bob2_session, origin=f"http://127.0.0.1:{PORT2}"),
)
after2 = metrics(PORT2)
check(
    "the 302 is counted as backend_unavailable",
    after2.get("backend_unavailable", 0) - before2.get("backend_unavailable", 0) == 1,
    f"{before2} -> {after2}",
)

print(f"django_auth upgrades: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
