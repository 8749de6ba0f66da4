#!/usr/bin/env python3
"""Check that a server speaks the roomcast / Django Channels ChatConsumer protocol.

Usage: check.py ws://127.0.0.1:PORT/ws/chat/ [--conns 1000] [--expect-error]
(needs the `websockets` package, 13 or newer: e.g. python3 -m venv /tmp/wsv &&
/tmp/wsv/bin/pip install websockets && /tmp/wsv/bin/python check.py URL)

Exits 0 when the protocol holds:
  * two clients in one room and one in another; {"message": V} sent by one member
    reaches both members (sender included) as exactly {"message": V}, for V of
    several JSON types, extra fields dropped, in the order sent;
  * the client in the other room gets nothing;
  * with --expect-error: text that is not JSON, and JSON without "message", get
    {"error": ...} back to the sender alone and the connection stays usable
    (the seed's Channels consumer instead raises and closes: don't pass it there);
  * with --conns N: N more connections spread over --rooms rooms (default one per
    100 connections) all connect, and one message per room reaches every member.
"""
import argparse
import asyncio
import json
import os
import sys
import time

try:
    from websockets.asyncio.client import connect
except ImportError:  # pragma: no cover
    sys.exit("check.py needs the `websockets` package (13 or newer): pip install websockets")

QUIET = 0.5  # seconds of silence that count as "nothing arrived"


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


async def recv_json(ws, timeout, who):
    try:
        raw = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{who}: nothing received within {timeout}s") from None
    expect(isinstance(raw, str), f"{who}: got a binary frame {raw[:60]!r}, wanted text")
    try:
        return json.loads(raw)
    except ValueError:
        raise CheckFailed(f"{who}: got a frame that is not JSON: {raw[:200]!r}") from None


async def expect_silence(ws, who, secs=QUIET):
    try:
        raw = await asyncio.wait_for(ws.recv(), secs)
    except asyncio.TimeoutError:
        return
    raise CheckFailed(f"{who}: should have received nothing, got {str(raw)[:200]!r}")


def open_ws(url, timeout):
    # No compression and no keepalive pings: keep the client cheap and neutral.
    return connect(url, open_timeout=timeout, ping_interval=None, compression=None,
                   max_size=None, close_timeout=2)


async def protocol_check(base, args):
    tag = os.urandom(4).hex()
    room, other = f"check-{tag}", f"check-{tag}-other"
    t = args.timeout
    a, b, c = await asyncio.gather(open_ws(base + room + "/", t), open_ws(base + room + "/", t),
                                   open_ws(base + other + "/", t))
    try:
        print(f"ok   connected a, b to room {room!r} and c to {other!r}")
        values = [
            "Hello, server!",  # the seed's browser snippet
            {"text": "héllo ✓ 你好", "n": [1, 2.5, None, True, False], "nested": {"k": "v"}},
            12345,
            None,
            ["list", 1],
        ]
        for i, v in enumerate(values):
            sender = a if i % 2 == 0 else b
            await sender.send(json.dumps({"message": v}))
            for who, ws in (("a", a), ("b", b)):
                got = await recv_json(ws, t, who)
                expect(got == {"message": v}, f"{who}: wanted {{'message': {v!r}}}, got {got!r}")
        print(f"ok   {len(values)} messages of several JSON types reached both members, sender included")

        await a.send(json.dumps({"message": "extra", "extra": "ignored", "type": "x"}))
        for who, ws in (("a", a), ("b", b)):
            got = await recv_json(ws, t, who)
            expect(got == {"message": "extra"}, f"{who}: extra fields not dropped: {got!r}")
        print("ok   extra fields are dropped from the broadcast")

        n = 20
        for i in range(n):
            await a.send(json.dumps({"message": {"seq": i}}))
        for who, ws in (("a", a), ("b", b)):
            seqs = [(await recv_json(ws, t, who))["message"]["seq"] for _ in range(n)]
            expect(seqs == list(range(n)), f"{who}: order broken: {seqs}")
        print(f"ok   a burst of {n} messages arrived in order at both members")

        await asyncio.gather(expect_silence(a, "a"), expect_silence(b, "b"), expect_silence(c, "c (other room)"))
        print("ok   the other room received nothing, and no duplicates arrived")

        if args.expect_error:
            for bad in ("this is not json", '{"msg": 1}', "[1, 2]"):
                await a.send(bad)
                got = await recv_json(a, t, "a")
                expect(isinstance(got, dict) and "error" in got, f"a: wanted {{'error': ...}} for {bad!r}, got {got!r}")
            await b.send(json.dumps({"message": "still open"}))
            for who, ws in (("a", a), ("b", b)):
                got = await recv_json(ws, t, who)
                expect(got == {"message": "still open"}, f"{who}: after bad input wanted 'still open', got {got!r}")
            await asyncio.gather(expect_silence(b, "b"), expect_silence(c, "c"))
            print("ok   bad input gets {\"error\": ...} to the sender alone; the connection stays usable")
    finally:
        await asyncio.gather(a.close(), b.close(), c.close(), return_exceptions=True)


async def mass_check(base, args):
    n = args.conns
    rooms = args.rooms or max(1, n // 100)
    tag = os.urandom(4).hex()
    sem = asyncio.Semaphore(args.concurrency)
    conns = [None] * n
    errors = []

    async def one(i):
        async with sem:
            try:
                conns[i] = await open_ws(f"{base}mass-{tag}-{i % rooms}/", args.timeout)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    t_conn = time.monotonic() - t0
    ok = [c for c in conns if c is not None]
    try:
        print(f"{'ok  ' if not errors else 'FAIL'} {len(ok)}/{n} connections in {rooms} rooms in {t_conn:.2f}s"
              + (f"; {len(errors)} failed, first: {errors[0]}" if errors else ""))
        expect(not errors, f"{len(errors)} of {n} connections failed")

        # One sender per room; every member (sender included) must get its message.
        t0 = time.monotonic()
        for r in range(rooms):
            await conns[r].send(json.dumps({"message": {"room": r, "tag": tag}}))

        async def drain(i, ws):
            got = await recv_json(ws, args.timeout, f"conn {i}")
            want = {"message": {"room": i % rooms, "tag": tag}}
            expect(got == want, f"conn {i}: wanted {want}, got {got}")

        results = await asyncio.gather(*(drain(i, ws) for i, ws in enumerate(conns)), return_exceptions=True)
        bad = [r for r in results if isinstance(r, Exception)]
        t_fan = time.monotonic() - t0
        print(f"{'ok  ' if not bad else 'FAIL'} {rooms} messages fanned out to {n - len(bad)}/{n} members in {t_fan:.2f}s"
              + (f"; first problem: {bad[0]}" if bad else ""))
        expect(not bad, f"{len(bad)} of {n} members missed their room's message")
    finally:
        async def close(ws):
            async with sem:
                await ws.close()
        await asyncio.gather(*(close(ws) for ws in ok), return_exceptions=True)


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="example: check.py ws://127.0.0.1:9200/ws/chat/ --conns 1000")
    p.add_argument("url", help="URL prefix up to the room name, e.g. ws://127.0.0.1:9200/ws/chat/")
    p.add_argument("--conns", type=int, default=0, help="also open this many connections and fan out to them")
    p.add_argument("--rooms", type=int, default=0, help="rooms for --conns (default: one per 100 connections)")
    p.add_argument("--concurrency", type=int, default=100, help="connection attempts at once for --conns")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a connection or a message")
    p.add_argument("--expect-error", action="store_true",
                   help='require {"error": ...} replies to bad input (not for the seed Channels app)')
    args = p.parse_args()
    base = args.url if args.url.endswith("/") else args.url + "/"
    try:
        await protocol_check(base, args)
        if args.conns:
            await mass_check(base, args)
    except CheckFailed as e:
        print(f"FAIL {e}")
        return 1
    except (OSError, asyncio.TimeoutError, Exception) as e:  # noqa: BLE001
        print(f"FAIL {type(e).__name__}: {e}")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
