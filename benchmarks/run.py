"""Run ibgw's benchmarks and write docs/benchmarks.md.

    make bench                                   # everything (builds .venv first)
    python benchmarks/run.py --only startup      # one benchmark (or a comma list)
    python benchmarks/run.py --list

Builds what it needs: re-runs itself under the project's ``.venv`` (``make install``
when there is none) and creates ``.bench-venv-peer/`` with the peers on first use.
Every result is kept in ``benchmarks/results.json``; the document is written from all
of them, so a benchmark run alone replaces only its own section (each section says
when it was measured and under what load).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"


def _ensure_project_venv() -> None:
    """Re-exec under the project .venv (which has ibgw, every plugin and the mcp SDK)."""
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    if not VENV_PY.exists():
        print("benchmarks: building .venv (make install)", flush=True)
        subprocess.run(["make", "-C", str(ROOT), "install"], check=True)
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


_ensure_project_venv()
sys.path.insert(0, str(HERE))

import bench_bounds  # noqa: E402
import bench_mcp  # noqa: E402
import bench_pacing  # noqa: E402
import bench_quote  # noqa: E402
import bench_read  # noqa: E402
import bench_scale  # noqa: E402
import bench_startup  # noqa: E402
from common import loadavg, machine, now_utc, verdict  # noqa: E402

BENCHES = [
    bench_startup,
    bench_read,
    bench_pacing,
    bench_scale,
    bench_mcp,
    bench_quote,
    bench_bounds,
]
BY_NAME = {b.NAME: b for b in BENCHES}
RESULTS = HERE / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"


def log(msg: str) -> None:
    print(msg, flush=True)


def scrub_paths(text: str) -> str:
    """Machine paths (the checkout, the interpreter, the home directory) out of anything
    written to the repository: profiles name functions by file."""
    prefixes = {
        str(ROOT) + "/": "",
        sys.prefix + "/": "",
        sys.base_prefix + "/": "",
        os.path.expanduser("~") + "/": "~/",
    }
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix, prefixes[prefix])
    return text


def load_results() -> dict:
    try:
        data = json.loads(RESULTS.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("sections"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"sections": {}}


def run_one(bench) -> dict:
    started = now_utc()
    load_before = loadavg()
    t = time.perf_counter()
    try:
        result = bench.run(lambda m: log(m))
        error = None
    except Exception as exc:  # one failing benchmark must not lose the others
        traceback.print_exc()
        result, error = {}, f"{type(exc).__name__}: {exc}"
    return {
        "measured_at": started,
        "seconds": round(time.perf_counter() - t, 1),
        "load_before": load_before,
        "load_after": loadavg(),
        "machine": machine(),
        "error": error,
        "result": result,
    }


def _load_text(load: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load) if load else "n/a"


def write_doc(data: dict) -> None:
    sections = data["sections"]
    m = machine()
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run.py`); do not edit by hand. How to run one benchmark alone "
        "and what each measures: [benchmarks/README.md](../benchmarks/README.md). Timing lives here, never "
        "as assertions in the test suite.",
        "",
        f"**Machine**: `{m['platform']}`, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['python_impl']} {m['python']}. "
        f"**Last run**: {data.get('last_run', 'n/a')}.",
        "",
        "Figures are **median** (IQR p25–p75; p5–p95; n samples). Ratios compare series measured side by side "
        "in one run, interleaved, as the ratio of their medians, with the spread of the per-round ratios. "
        "Load average (1 / 5 / 15 min) is given per section, before and after it ran: the machine has "
        f"{m['cores']} cores and other work may have been running.",
        "",
        "## Targets",
        "",
        "| # | benchmark | what | target | measured | |",
        "|---|---|---|---|---|---|",
    ]
    for i, bench in enumerate(BENCHES, 1):
        sec = sections.get(bench.NAME)
        if sec is None:
            lines.append(f"| {i} | {bench.TITLE} | not run yet | | | |")
            continue
        if sec.get("error"):
            lines.append(f"| {i} | {bench.TITLE} | failed: {sec['error']} | | | |")
            continue
        try:
            rows = bench.targets(sec["result"])
        except (KeyError, TypeError, ValueError):
            lines.append(f"| {i} | {bench.TITLE} | stored result unreadable: re-run | | | |")
            continue
        for t in rows:
            lines.append(
                f"| {i} | {bench.TITLE} | {t['what']} | {t['target']} | {t['measured']} | "
                f"{verdict(t['ok'])} |"
            )
    notes = data.get("notes")
    if notes:
        lines += ["", notes.strip()]
    for i, bench in enumerate(BENCHES, 1):
        sec = sections.get(bench.NAME)
        lines += ["", f"## {i}. {bench.TITLE}", ""]
        if sec is None:
            lines.append(f"Not run yet: `python benchmarks/run.py --only {bench.NAME}`.")
            continue
        sm = sec["machine"]
        lines += [
            f"Measured {sec['measured_at']} in {sec['seconds']:.0f} s; load average {_load_text(sec['load_before'])} "
            f"before, {_load_text(sec['load_after'])} after"
            + (
                f"; on `{sm['platform']}`, {sm['cores']} cores, Python {sm['python']}"
                if (sm["platform"], sm["cores"], sm["python"])
                != (m["platform"], m["cores"], m["python"])
                else ""
            )
            + ".",
            "",
        ]
        if sec.get("error"):
            lines.append(f"**Failed**: `{sec['error']}`.")
            continue
        try:
            lines.append(bench.report(sec["result"]))
        except (KeyError, TypeError, ValueError) as exc:  # a result stored by an older run.py
            lines.append(
                f"Stored result unreadable ({type(exc).__name__}: {exc}); re-run "
                f"`python benchmarks/run.py --only {bench.NAME}`."
            )
    text = "\n".join(lines).rstrip() + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(scrub_paths(text), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"benchmarks to run, comma-separated: {', '.join(BY_NAME)}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--doc-only", action="store_true", help="rewrite docs/benchmarks.md from results.json"
    )
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHES:
            print(f"{b.NAME:8} {b.TITLE}")
        return 0
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(BY_NAME)})"
        )
    data = load_results()
    if not args.doc_only:
        t = time.perf_counter()
        for name in names:
            bench = BY_NAME[name]
            log(f"[{name}] {bench.TITLE} (load {_load_text(loadavg())})")
            data["sections"][name] = sec = run_one(bench)
            log(
                f"[{name}] done in {sec['seconds']:.0f} s"
                + (f": FAILED {sec['error']}" if sec["error"] else "")
            )
            data["last_run"] = now_utc()
            RESULTS.write_text(
                scrub_paths(json.dumps(data, indent=1, ensure_ascii=False)) + "\n",
                encoding="utf-8",
            )
            write_doc(data)
        log(f"all done in {time.perf_counter() - t:.0f} s")
    write_doc(data)
    log(f"wrote {DOC.relative_to(ROOT)}")
    failed = False
    for bench in BENCHES:
        sec = data["sections"].get(bench.NAME)
        if sec is None or bench.NAME not in names:
            continue
        if sec.get("error"):
            failed = True
            continue
        try:
            rows = bench.targets(sec["result"])
        except (KeyError, TypeError, ValueError):
            log(f"  {bench.NAME:8} stored result unreadable: re-run it")
            continue
        for t in rows:
            mark = {True: "met", False: "MISSED", None: "pending"}[t["ok"]]
            log(f"  {bench.NAME:8} {t['what']}: {t['measured']} (target {t['target']}) {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
