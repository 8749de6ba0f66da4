"""Python's `websockets` client against roomcast over wss:// (tests/clients/run.sh
starts the relays and passes them in the environment; README.md beside this
file says what each check is for).

    python wss_python.py

Environment:
  WSS_PORT        roomcast with --tls-cert/--tls-key (deflate on, --deflate-min-size MIN_SIZE)
  WSS_AUTH_PORT   the same with --auth-secret AUTH_SECRET (join tokens required)
  WSS_CA          the test CA (PEM) that signed the relays' certificate
  MIN_SIZE, AUTH_SECRET

Certificate verification is on everywhere (an ssl.SSLContext trusting only
the test CA, hostname checked against the certificate's SAN: IP 127.0.0.1,
DNS localhost), except where a check expects it to fail. Every wait is
bounded. Prints "ok N - ..." per check and ends with "N passed, N failed";
exits non-zero on any failure.
"""
import asyncio
import json
import os
import re
import ssl
import sys
import traceback
import urllib.request
import uuid

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

PORT = int(os.environ["WSS_PORT"])
AUTH_PORT = int(os.environ["WSS_AUTH_PORT"])
CA = os.environ["WSS_CA"]
MIN_SIZE = int(os.environ["MIN_SIZE"])
AUTH_SECRET = os.environ["AUTH_SECRET"]
WAIT = 5.0  # any single wait for a frame or a handshake

passed = 0
failed = 0


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok {passed + failed} - {what}", flush=True)
    else:
        failed += 1
        print(f"not ok {passed + failed} - {what}: {detail}", flush=True)


def trusting(minimum=None, maximum=None):
    """A context that trusts the test CA only, verifying the certificate and
    its host name (ssl.create_default_context with cafile does both)."""
    ctx = ssl.create_default_context(cafile=CA)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    ctx.set_alpn_protocols(["http/1.1"])
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


CTX = trusting()


def room():
    return "py-" + uuid.uuid4().hex[:8]


def url(port, name, host="127.0.0.1", query=""):
    return f"wss://{host}:{port}/ws/chat/{name}/{query}"


def dial(u, ctx=CTX, **kw):
    return connect(u, ssl=ctx, proxy=None, open_timeout=WAIT, max_size=2**20, **kw)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def nothing_more(ws, within=0.3):
    """True when no frame arrives within `within` seconds."""
    try:
        extra = await asyncio.wait_for(ws.recv(), within)
    except TimeoutError:
        return True
    print(f"# unexpected frame: {extra[:200]!r}")
    return False


def metrics(port):
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=CTX, timeout=WAIT) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r"^(roomcast_[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def ext_of(ws):
    return ws.response.headers.get("Sec-WebSocket-Extensions")


def tls_of(ws):
    ssl_object = ws.transport.get_extra_info("ssl_object")
    return ssl_object.version(), ssl_object.selected_alpn_protocol()


# ---------------------------------------------------------------------------


async def chat_contract():
    r = room()
    async with dial(url(PORT, r)) as a, dial(url(PORT, r, host="localhost")) as b:
        check("wss:// to 127.0.0.1 (IP SAN) and to localhost (DNS SAN) both verify", True)
        await a.send(json.dumps({"message": "hello"}))
        got = [await recv_json(a), await recv_json(b)]
        check('{"message": V} reaches both members, the sender included, exactly', got == [{"message": "hello"}] * 2, got)

        value = {"nested": [1, 2.5, None, "ü"], "ok": True}
        await b.send(json.dumps({"message": value, "extra": "ignored"}))
        got = [await recv_json(a), await recv_json(b)]
        check("any JSON value round-trips; extra fields are dropped", got == [{"message": value}] * 2, got)

        sent = []
        for i in range(5):
            for name, ws in (("a", a), ("b", b)):
                text = f"{name}{i}"
                sent.append(text)
                await ws.send(json.dumps({"message": text}))
        seen_a = [(await recv_json(a))["message"] for _ in sent]
        seen_b = [(await recv_json(b))["message"] for _ in sent]
        check("interleaved senders: both see one order, each message once", seen_a == seen_b and sorted(seen_a) == sorted(sent), (seen_a, seen_b))
        check(
            "each sender's messages keep their send order",
            all([t for t in seen_a if t[0] == n] == [t for t in sent if t[0] == n] for n in "ab"),
            seen_a,
        )

        for label, frame in (("not JSON", "not json {"), ("not an object", "[1, 2]"), ("no message field", '{"text": 1}'), ("binary", b"\x7b\x7d")):
            await a.send(frame)
            err = await recv_json(a)
            check(
                f'{label}: the sender alone gets {{"error": "<plain words>"}}',
                list(err) == ["error"] and isinstance(err["error"], str) and err["error"],
                err,
            )
        check("nothing of the bad input reached the other member", await nothing_more(b))
        await a.send(json.dumps({"message": "still open"}))
        got = [await recv_json(a), await recv_json(b)]
        check("the connection is kept after bad input", got == [{"message": "still open"}] * 2, got)


async def compression():
    r = room()
    m0 = metrics(PORT)
    async with dial(url(PORT, r)) as a, dial(url(PORT, r)) as b, dial(url(PORT, r), compression=None) as c:
        ext = ext_of(a) or ""
        check(
            "compression='deflate' (the default): the 101 accepts permessage-deflate with no context takeover",
            ext.startswith("permessage-deflate") and "server_no_context_takeover" in ext and "client_no_context_takeover" in ext,
            ext,
        )
        check("compression=None: no extension in the 101", ext_of(c) is None, ext_of(c))

        small = "x" * (MIN_SIZE // 2)
        await a.send(json.dumps({"message": small}))
        got = [await recv_json(ws) for ws in (a, b, c)]
        check("a message under --deflate-min-size reaches all three", got == [{"message": small}] * 3, [len(str(g)) for g in got])
        m1 = metrics(PORT)
        check(
            "... and is not compressed",
            m1["roomcast_deflate_compressions_total"] == m0["roomcast_deflate_compressions_total"],
            (m0["roomcast_deflate_compressions_total"], m1["roomcast_deflate_compressions_total"]),
        )

        line = "roomcast relays chat rooms over wss with permessage-deflate; "
        big = (line * (65_536 // len(line) + 1))[:65_536]
        await a.send(json.dumps({"message": big}))  # the client compresses it too
        got = [await recv_json(ws) for ws in (a, b, c)]
        check(
            "a 64 KiB compressible message sent compressed round-trips intact to deflate and plain members",
            all(g == {"message": big} for g in got),
            [len(g.get("message", "")) for g in got],
        )
        m2 = metrics(PORT)
        n = m2["roomcast_deflate_compressions_total"] - m1["roomcast_deflate_compressions_total"]
        b_in = m2["roomcast_deflate_bytes_in_total"] - m1["roomcast_deflate_bytes_in_total"]
        b_out = m2["roomcast_deflate_bytes_out_total"] - m1["roomcast_deflate_bytes_out_total"]
        check("the broadcast was compressed once for the two deflate members", n == 1, n)
        check(f"deflate shrank it ({b_in:.0f} -> {b_out:.0f} bytes)", b_in >= 65_536 and 0 < b_out < b_in / 10, (b_in, b_out))


async def tls_versions():
    for name, version in (("TLSv1.2", ssl.TLSVersion.TLSv1_2), ("TLSv1.3", ssl.TLSVersion.TLSv1_3)):
        r = room()
        async with dial(url(PORT, r), ctx=trusting(version, version)) as ws:
            got_version, alpn = tls_of(ws)
            await ws.send(json.dumps({"message": name}))
            echo = await recv_json(ws)
            check(f"a {name}-only context connects and chats (negotiated {got_version}, ALPN {alpn})", got_version == name and alpn == "http/1.1" and echo == {"message": name}, (got_version, alpn, echo))


async def verification_fails():
    before = metrics(PORT)
    cases = (
        ("the system's roots (not the test CA)", ssl.create_default_context(), {}),
        ("the test CA, but a host name the certificate does not name", CTX, {"server_hostname": "not-in-the-cert.example"}),
    )
    for label, ctx, kw in cases:
        try:
            async with dial(url(PORT, room()), ctx=ctx, **kw):
                pass
            check(f"{label}: verification fails", False, "it connected")
        except ssl.SSLCertVerificationError as e:
            check(f"{label}: verification fails ({e.verify_message})", True)
    after = metrics(PORT)
    fails = {k: after[k] - before.get(k, 0) for k in after if k.startswith("roomcast_tls_handshake_failures_total") and after[k] != before.get(k, 0)}
    check("the relay counted the refused handshakes in roomcast_tls_handshake_failures_total", sum(fails.values()) >= 2, fails)
    async with dial(url(PORT, room())) as ws:
        await ws.send('{"message": "after"}')
        check("the relay serves a good client afterwards", await recv_json(ws) == {"message": "after"})


def django_token(payload, key=AUTH_SECRET):
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django.core import signing

    return signing.dumps(payload, key=key, salt="roomcast")


async def tokens():
    r = room()
    ann = django_token({"room": r, "user": "ann"})
    bob = django_token({"rooms": ["py-*"], "user": "bob", "write": False})
    async with dial(url(AUTH_PORT, r, query=f"?token={ann}")) as a, dial(url(AUTH_PORT, r, query=f"?token={bob}")) as b:
        check("tokens minted by Django's signing.dumps admit over wss://", True)
        await a.send(json.dumps({"message": "from ann", "user": "mallory"}))
        got = [await recv_json(a), await recv_json(b)]
        check('frames carry the token\'s identity: {"message": ..., "user": "ann"}', got == [{"message": "from ann", "user": "ann"}] * 2, got)
        await b.send(json.dumps({"message": "from bob"}))
        err = await recv_json(b)
        check('a read-only token ("write": false): bob\'s message gets {"error": ...}', list(err) == ["error"], err)
        check("... and is not broadcast", await nothing_more(a))

    for label, query, status in (
        ("no token", "", 401),
        ("a token for another room", f"?token={django_token({'room': 'elsewhere', 'user': 'ann'})}", 403),
        ("a token signed with another key", f"?token={django_token({'room': r, 'user': 'ann'}, key='x' * 32)}", 403),
    ):
        try:
            async with dial(url(AUTH_PORT, r, query=query)):
                pass
            check(f"{label}: refused with {status}", False, "it connected")
        except InvalidStatus as e:
            body = e.response.body.decode("utf-8", "replace").strip()
            check(f"{label}: refused with {status} and a plain reason ({body!r})", e.response.status_code == status and body, (e.response.status_code, body))


async def main():
    for part in (chat_contract, compression, tls_versions, verification_fails, tokens):
        try:
            await asyncio.wait_for(part(), 60)
        except Exception:
            check(f"{part.__name__} ran to its end", False, traceback.format_exc())


asyncio.run(main())
print(f"wss_python: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
