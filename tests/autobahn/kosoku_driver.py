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


# --------------------------------------------------------------------------
# group
# --------------------------------------------------------------------------


async def run_group(args: argparse.Namespace) -> int:
    from kosoku import FailureError, run_fuzzingclient

    ids = group_case_ids(args.group)
    if not ids:
        print(f"kosoku has no cases in group {args.group}.x", file=sys.stderr)
        return 2
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

    results = "".join(
        f"{c} {b} {bc}\n" for c, (b, bc) in sorted(rows.items(), key=lambda kv: case_key(kv[0]))
    )
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(results)
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
                "# cases 1.x-10.x. Format: <case id> <behavior> <behaviorClose>.",
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("group")
    g.add_argument("--url", required=True)
    g.add_argument("--group", required=True)
    g.add_argument("--raw", required=True)
    g.add_argument("--reports")
    g.add_argument("--case-timeout", type=float, default=60.0)

    s = sub.add_parser("summarize")
    s.add_argument("--raw-dir", required=True)
    s.add_argument("--groups", required=True)
    s.add_argument("--timed-out", default="")
    s.add_argument("--seconds", default="")
    s.add_argument("--results", required=True)
    s.add_argument("--expected", required=True)
    s.add_argument("--update", action="store_true")

    args = parser.parse_args()
    if args.cmd == "group":
        return cmd_group(args)
    return cmd_summarize(args)


if __name__ == "__main__":
    sys.exit(main())
