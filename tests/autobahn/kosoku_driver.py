"""Helper for tests/autobahn/run.sh (run it through run.sh, not by hand).

Two subcommands:

  group      run the Autobahn cases of ONE group (e.g. all of 6.*) against a
             server with kosoku, one case after the other, appending one raw
             line per finished case to --raw as soon as it finishes (so a run
             that is killed by run.sh's `timeout` still shows which cases
             finished and which one was running), and writing kosoku's own
             HTML/JSON reports for the group to --reports at the end.

  summarize  turn the raw per-group files into the normalized results file
             (`<case id> <behavior> <behaviorClose>`, natural case order),
             print per-group counts, diff against the expected file and
             decide the exit code.

Raw line format: `<case id> <behavior> <behaviorClose> <duration ms> <close code>`
with spaces inside kosoku labels replaced by `_` ("WRONG CODE" -> WRONG_CODE,
"FAILED BY CLIENT" -> FAILED_BY_CLIENT) so every line has fixed fields.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import signal
import sys
import time
from pathlib import Path

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
MAX_LISTED = 40  # longer lists/diffs are cut in the console output


def label(value: str) -> str:
    return value.replace(" ", "_")


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split("."))


def group_case_ids(group: str) -> list[str]:
    from kosoku.cases import CASES  # importing builds the case index

    return sorted((c for c in CASES if c.split(".")[0] == group), key=case_key)


# Groups whose cases get their onMessage payload as bytes (see below).
DEFLATE_GROUPS = ("12", "13")


def fix_deflate_payload_types() -> int:
    """Work around kosoku 0.1.0 handing 12.x/13.x an uncompressed echo as a str.

    kosoku's engine (Rust, src/runner.rs `deliver`) passes onMessage a message
    that arrived with RSV1 set (compressed) as `bytes`, the inflated octets; a
    message without RSV1 goes through `bridge_message` (src/protocol.rs) and
    arrives as a `str`: UTF-8-decoded for text, byte->code point (latin-1) for
    binary. The 12.x/13.x `onMessage` (cases/case12_x_x.py) starts with
    `hashlib.sha1().update(msg)`, which raises "Strings must be encoded before
    hashing" on a str, so every case whose server sends even one message
    uncompressed (RFC 7692 section 6 lets it choose per message) ends in
    ERROR, although the echo is correct.

    This wraps those two groups' onMessage so that a str is turned back into
    the octets kosoku decoded it from: latin-1 for binary (1:1, exact for any
    payload) and UTF-8 for text (exact whenever the server sent valid UTF-8,
    which a conforming server always does; bridge_message falls back to
    latin-1 only for invalid UTF-8 text, and such an echo cannot match the
    valid UTF-8 the case sent unless the server rewrote it). A `bytes` payload
    (the compressed path) is passed on untouched. Nothing else in kosoku is
    changed, and the groups 1-10 (whose cases compare str payloads) are not
    touched. Returns the number of case classes wrapped.
    """
    from kosoku.cases import CASES

    wrapped = 0
    for case_id, cls in CASES.items():
        if case_id.split(".")[0] not in DEFLATE_GROUPS:
            continue
        original = cls.__dict__.get("onMessage")
        if original is None or getattr(original, "_roomcast_bytes_fix", False):
            continue

        def on_message(self, msg, binary, _original=original):  # type: ignore[no-untyped-def]
            if isinstance(msg, str):
                msg = msg.encode("latin-1" if binary else "utf-8")
            return _original(self, msg, binary)

        on_message._roomcast_bytes_fix = True  # type: ignore[attr-defined]
        cls.onMessage = on_message
        wrapped += 1
    return wrapped


# --------------------------------------------------------------------------
# group
# --------------------------------------------------------------------------


async def run_group(args: argparse.Namespace) -> int:
    from kosoku import FailureError, run_fuzzingclient

    ids = group_case_ids(args.group)
    if not ids:
        print(f"kosoku has no cases in group {args.group}.x", file=sys.stderr)
        return 2
    if args.group in DEFLATE_GROUPS and not args.no_deflate_fix:
        fix_deflate_payload_types()
    raw = Path(args.raw)
    raw.parent.mkdir(parents=True, exist_ok=True)
    Path(str(raw) + ".planned").write_text("".join(f"{c}\n" for c in ids))

    results = []
    status = 0
    with raw.open("w") as out:
        try:
            for case_id in ids:
                Path(str(raw) + ".current").write_text(case_id + "\n")
                started = time.monotonic()
                try:
                    got = await asyncio.wait_for(
                        run_fuzzingclient(args.url, [case_id]), args.case_timeout
                    )
                except FailureError as failure:  # a case did not pass: still a result
                    got = failure.results
                except asyncio.TimeoutError:
                    ms = int((time.monotonic() - started) * 1000)
                    out.write(f"{case_id} TIMEOUT TIMEOUT {ms} -\n")
                    out.flush()
                    print(
                        f"  case {case_id} did not finish within {args.case_timeout}s",
                        file=sys.stderr,
                    )
                    status = 1
                    continue
                for r in got:
                    if r.case_id != case_id:
                        continue
                    code = r.remote_close_code if r.remote_close_code is not None else "-"
                    out.write(
                        f"{r.case_id} {label(r.behavior.value)} "
                        f"{label(r.behavior_close.value)} {r.duration} {code}\n"
                    )
                    out.flush()
                    results.append(r)
                if not any(r.case_id == case_id for r in got):
                    ms = int((time.monotonic() - started) * 1000)
                    out.write(f"{case_id} NO-RESULT NO-RESULT {ms} -\n")
                    out.flush()
                    status = 1
            # Finished normally: nothing is running any more. (When killed, the
            # .current file stays and names the case that was running.)
            with contextlib.suppress(OSError):
                Path(str(raw) + ".current").unlink()
        except asyncio.CancelledError:  # SIGTERM from run.sh's `timeout`
            status = 124
        finally:
            if results and args.reports:
                try:
                    from kosoku._report import write_reports

                    write_reports(results, args.reports)
                except Exception as exc:  # reports are a debugging aid only
                    print(f"  could not write kosoku reports: {exc}", file=sys.stderr)
    return status


def cmd_group(args: argparse.Namespace) -> int:
    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await run_group(args)
        except asyncio.CancelledError:
            return 124

    return asyncio.run(main())


# --------------------------------------------------------------------------
# tls-bridge
# --------------------------------------------------------------------------
#
# kosoku 0.1.0 cannot connect to wss:// (src/client.rs `parse_ws_url` accepts
# only the ws/http schemes and the client opens a plain TcpStream), so run.sh's
# TLS mode puts this bridge in front of the server: kosoku connects to it over
# plain TCP on 127.0.0.1, and every connection is forwarded over its own TLS
# connection (certificate verified against --ca) to the server. Bytes pass
# through unchanged and in the order and chops they were read. An end of
# stream on one side closes both (TLS has no half-close that asyncio exposes);
# a reset on one side aborts the other.


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await src.read(1 << 16)
            if not data:
                break
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        # a reset (or a failed write) on one side: reset the other side too
        for w in (dst, other):
            w.transport.abort()
        return
    for w in (dst, other):
        with contextlib.suppress(Exception):
            w.close()


async def _bridge_one(reader, writer, args, ssl_ctx) -> None:  # type: ignore[no-untyped-def]
    try:
        up_reader, up_writer = await asyncio.open_connection(
            args.target_host, args.target_port, ssl=ssl_ctx, server_hostname=args.server_name
        )
    except Exception as exc:
        print(f"tls-bridge: cannot reach {args.target_host}:{args.target_port}: {exc}", file=sys.stderr)
        writer.transport.abort()
        return
    await asyncio.gather(
        _pipe(reader, up_writer, writer), _pipe(up_reader, writer, up_writer), return_exceptions=True
    )
    for w in (writer, up_writer):
        with contextlib.suppress(Exception):
            await w.wait_closed()


def cmd_tls_bridge(args: argparse.Namespace) -> int:
    import ssl

    ssl_ctx = ssl.create_default_context(cafile=args.ca)
    host, _, port = args.target.rpartition(":")
    args.target_host, args.target_port = host.strip("[]"), int(port)

    async def main() -> int:
        server = await asyncio.start_server(
            lambda r, w: _bridge_one(r, w, args, ssl_ctx), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.rename(args.port_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
        return 0

    return asyncio.run(main())


# --------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def cmd_summarize(args: argparse.Namespace) -> int:
    raw_dir = Path(args.raw_dir)
    timed_out = set(args.timed_out.split()) if args.timed_out else set()
    seconds = dict(kv.split("=", 1) for kv in args.seconds.split()) if args.seconds else {}
    rows: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    ok = True
    summary: dict[str, dict] = {}

    for group in args.groups.split():
        raw = raw_dir / f"{group}.raw"
        planned = read_lines(Path(str(raw) + ".planned")) or group_case_ids(group)
        done: dict[str, tuple[str, str, str, str]] = {}
        for line in read_lines(raw):
            f = line.split()
            if len(f) >= 5:
                done[f[0]] = (f[1], f[2], f[3], f[4])
        missing = [c for c in planned if c not in done]
        running = (read_lines(Path(str(raw) + ".current")) or [""])[0].strip()
        if missing:
            ok = False
            # The case that was running when the group was killed is TIMEOUT;
            # the ones after it never ran.
            for c in missing:
                hung = group in timed_out and c == (running or missing[0])
                done[c] = ("TIMEOUT", "TIMEOUT", "-", "-") if hung else ("NOT-RUN", "NOT-RUN", "-", "-")
        counts: dict[str, int] = {}
        close_counts: dict[str, int] = {}
        for case_id, (beh, beh_close, ms, code) in done.items():
            rows[case_id] = (beh, beh_close)
            counts[beh] = counts.get(beh, 0) + 1
            if beh_close not in ("OK",):
                close_counts[beh_close] = close_counts.get(beh_close, 0) + 1
            if beh.replace("_", " ") not in PASSING or beh_close.replace("_", " ") not in PASSING:
                ok = False
                problems.append(
                    f"  {case_id}: behavior={beh} behaviorClose={beh_close} "
                    f"remoteCloseCode={code} ({ms} ms)"
                )
        order = ["OK", "NON-STRICT", "INFORMATIONAL"]
        parts = [f"{counts[b]} {b}" for b in order if b in counts]
        parts += [f"{n} {b}" for b, n in sorted(counts.items()) if b not in order]
        line = f"{group}.x: " + ", ".join(parts)
        if close_counts:
            line += " | close: " + ", ".join(f"{n} {b}" for b, n in sorted(close_counts.items()))
        if group in seconds:
            line += f"  [{seconds[group]}s]"
        if group in timed_out:
            line += "  ** GROUP TIMED OUT **"
            ok = False
        print(line)
        summary[group] = {
            "seconds": float(seconds[group]) if group in seconds else None,
            "behavior": counts,
            "close": close_counts,
            "timed_out": group in timed_out,
        }

    results = "".join(
        f"{c} {b} {bc}\n" for c, (b, bc) in sorted(rows.items(), key=lambda kv: case_key(kv[0]))
    )
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(results)
    # for compare.sh (compare-table)
    Path(args.results).with_name("summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(rows)} cases -> {args.results}")

    if problems:
        print(f"{len(problems)} case(s) did not end OK / NON-STRICT / INFORMATIONAL:")
        print("\n".join(problems[:MAX_LISTED]))
        if len(problems) > MAX_LISTED:
            print(f"  ... and {len(problems) - MAX_LISTED} more (see {args.results})")

    expected_path = Path(args.expected)
    selected = set(args.groups.split())
    header = [l for l in read_lines(expected_path) if l.startswith("#")]
    all_expected = [
        l for l in read_lines(expected_path) if l.strip() and not l.startswith("#")
    ]
    # Only the groups that ran are compared (AUTOBAHN_GROUPS may pick a subset).
    expected_body = [l for l in all_expected if l.split(".")[0] in selected]
    others = [l for l in all_expected if l.split(".")[0] not in selected]
    if args.update:
        if timed_out:
            print(f"NOT updating {expected_path}: group(s) {' '.join(sorted(timed_out, key=int))} timed out")
            return 1
        if not header or any("regenerate" in l.lower() and "roomcast" in l.lower() for l in header):
            header = [
                "# Expected Autobahn TestSuite (kosoku) results for roomcast's /ws/echo/,",
                "# cases 1.x-13.x. Format: <case id> <behavior> <behaviorClose>.",
                "# Written by `UPDATE_EXPECTED=1 tests/autobahn/run.sh ...` (see README.md);",
                "# tests/autobahn/run.sh fails on any difference from this file.",
            ]
        merged = sorted(
            others + results.splitlines(), key=lambda l: case_key(l.split()[0])
        )
        expected_path.write_text("\n".join(header + merged) + "\n")
        print(f"updated {expected_path}")
    elif not expected_body:
        print(f"{expected_path} has no expectations yet (run with UPDATE_EXPECTED=1 to write them)")
        ok = False
    else:
        diff = list(
            difflib.unified_diff(
                [l + "\n" for l in expected_body],
                results.splitlines(keepends=True),
                fromfile=str(expected_path),
                tofile=str(args.results),
            )
        )
        diff_path = Path(args.results).with_suffix(".diff")
        if diff:
            diff_path.write_text("".join(diff))
            print(f"results differ from the expected results (full diff: {diff_path}):")
            sys.stdout.writelines(diff[: 2 * MAX_LISTED])
            if len(diff) > 2 * MAX_LISTED:
                print(f"... {len(diff) - 2 * MAX_LISTED} more diff lines in {diff_path}")
            ok = False
        else:
            print(f"results match {expected_path}")
    return 0 if ok else 1


# --------------------------------------------------------------------------
# compare-table
# --------------------------------------------------------------------------

SHORT = {"OK": "OK", "NON-STRICT": "NS", "INFORMATIONAL": "INFO", "UNIMPLEMENTED": "UNIMPL"}


def cmd_compare_table(args: argparse.Namespace) -> int:
    """Markdown table of several run.sh output dirs (NAME=DIR ...)."""
    runs = []
    passed_cases: list[int] = []
    for spec in args.runs:
        name, _, directory = spec.partition("=")
        path = Path(directory) / "summary.json"
        runs.append((name, json.loads(path.read_text()) if path.exists() else {}))
        # a case passes when both verdicts do (what run.sh and kosoku count)
        passed_cases.append(
            sum(
                1
                for line in read_lines(Path(directory) / "results.txt")
                if len(f := line.split()) == 3
                and all(v.replace("_", " ") in PASSING for v in f[1:])
            )
        )
    groups = sorted({g for _, s in runs for g in s}, key=int)

    def cell(entry: dict | None) -> str:
        if not entry:
            return "not run"
        b = entry["behavior"]
        parts = [f"{b[k]} {SHORT.get(k, k)}" for k in ("OK", "NON-STRICT", "INFORMATIONAL") if k in b]
        parts += [f"**{n} {SHORT.get(k, k)}**" for k, n in sorted(b.items()) if k not in SHORT or k == "UNIMPLEMENTED"]
        bad_close = {k: n for k, n in entry["close"].items() if k not in ("OK", "INFORMATIONAL")}
        if bad_close:
            parts.append("close: " + ", ".join(f"{n} {k}" for k, n in sorted(bad_close.items())))
        secs = entry.get("seconds")
        t = f"{secs:.1f} s" if secs is not None else "?"
        if entry.get("timed_out"):
            t += " TIMED OUT"
        return f"{', '.join(parts)}; {t}"

    print("| group | " + " | ".join(name for name, _ in runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    for g in groups:
        print(f"| {g}.x | " + " | ".join(cell(s.get(g)) for _, s in runs) + " |")
    totals = []
    for (_, s), passed in zip(runs, passed_cases):
        secs = [e["seconds"] for e in s.values() if e.get("seconds") is not None]
        n = sum(sum(e["behavior"].values()) for e in s.values())
        totals.append(f"{passed}/{n} pass; {sum(secs):.1f} s")
    print("| all | " + " | ".join(totals) + " |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("group")
    g.add_argument("--url", required=True)
    g.add_argument("--group", required=True)
    g.add_argument("--raw", required=True)
    g.add_argument("--reports")
    g.add_argument("--case-timeout", type=float, default=60.0)
    g.add_argument(
        "--no-deflate-fix",
        action="store_true",
        help="run 12.x/13.x without fix_deflate_payload_types (to show kosoku's bug)",
    )

    b = sub.add_parser("tls-bridge")
    b.add_argument("--target", required=True, help="HOST:PORT of the TLS server")
    b.add_argument("--server-name", required=True, help="name to verify (SNI)")
    b.add_argument("--ca", required=True, help="CA certificate (PEM) to trust")
    b.add_argument("--port-file", required=True, help="written with the local port once listening")

    s = sub.add_parser("summarize")
    s.add_argument("--raw-dir", required=True)
    s.add_argument("--groups", required=True)
    s.add_argument("--timed-out", default="")
    s.add_argument("--seconds", default="")
    s.add_argument("--results", required=True)
    s.add_argument("--expected", required=True)
    s.add_argument("--update", action="store_true")

    t = sub.add_parser("compare-table")
    t.add_argument("runs", nargs="+", help="NAME=DIR (a run.sh output directory)")

    args = parser.parse_args()
    if args.cmd == "group":
        return cmd_group(args)
    if args.cmd == "tls-bridge":
        return cmd_tls_bridge(args)
    if args.cmd == "compare-table":
        return cmd_compare_table(args)
    return cmd_summarize(args)


if __name__ == "__main__":
    sys.exit(main())
