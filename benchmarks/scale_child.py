"""One ``ibgw accounts positions`` run for the scale benchmark, in a fresh process.

``python scale_child.py GATEWAY_URL FORMAT RESULT_JSON [--tracemalloc | --profile]``; the rendered
output goes to this process's stdout (the parent sends it to a file). Runs the real
CLI (``create_cli().main``) on the live backend with ibgw's client-side pacer
replaced by a no-op: the server's pacing is off for this benchmark too, since
IBKR's 10 requests/s would otherwise set the time (50 pages take 5 s at 10/s).
Writes ``{"total", "fetch", "render", "maxrss_before", "maxrss_peak", ...}`` (seconds,
KiB) to RESULT_JSON; ``--profile`` adds a cProfile breakdown (``parts``, ``top``).
"""

import json
import sys
import time

from common import profile_parts, profile_top, vm_hwm_kib

T_START = time.perf_counter()

# (label, file suffix, function) for the cProfile breakdown of one run
PARTS = [
    ("the whole command (cli.main)", "click/core.py", "main"),
    ("run_read: fetch, parse, shape, redact", "ibgw/runner.py", "run_read"),
    ("&nbsp;&nbsp;HTTP exchanges (LiveTransport.send)", "ibgw/live.py", "_deliver"),
    ("&nbsp;&nbsp;strict JSON parsing (loads_strict)", "ibgw/jsonstrict.py", "loads_strict"),
    (
        "&nbsp;&nbsp;secret harvesting over each answer (redact.harvest)",
        "ibgw/redact.py",
        "harvest",
    ),
    (
        "&nbsp;&nbsp;schema shaping: mapping and typing (marshmallow dump)",
        "ibgw/runner.py",
        "_shape",
    ),
    ("&nbsp;&nbsp;redaction of the records (redact.data)", "ibgw/redact.py", "data"),
    ("&nbsp;&nbsp;audit records", "ibgw/audit.py", "intent|outcome"),
    ("rendering (ibgw.output.render)", "ibgw/output.py", "render"),
    (
        "&nbsp;&nbsp;table layout (plain cells; tabulate otherwise)",
        "ibgw/output.py",
        "_plain_table",
    ),
    ("&nbsp;&nbsp;tabulate", "tabulate/__init__.py", "tabulate"),
    ("&nbsp;&nbsp;JSON encoding", "ibgw/output.py", "_json"),
    ("output redaction and write (ibgw.output.emit)", "ibgw/output.py", "emit"),
]


def main() -> None:
    url, fmt, result_path = sys.argv[1:4]
    trace = "--tracemalloc" in sys.argv[4:]
    profile = "--profile" in sys.argv[4:]

    import ibgw.output
    import ibgw.pacing
    import ibgw.runner
    from ibgw.cli import create_cli

    ibgw.pacing.Pacer.acquire = lambda self, classes, deadline: time.time()
    timing = {"fetch": 0.0, "render": 0.0, "rows": 0}
    run_read, render = ibgw.runner.run_read, ibgw.output.render

    def timed_run_read(*a, **kw):
        t = time.perf_counter()
        out = run_read(*a, **kw)
        timing["fetch"] += time.perf_counter() - t
        timing["rows"] = len(out.records)
        return out

    def timed_render(*a, **kw):
        t = time.perf_counter()
        out = render(*a, **kw)
        timing["render"] += time.perf_counter() - t
        return out

    ibgw.runner.run_read = timed_run_read
    ibgw.output.render = timed_render

    cli = create_cli()
    rss_before = vm_hwm_kib()
    if trace:
        import tracemalloc

        tracemalloc.start()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    try:
        rc = cli.main(
            args=["--backend", "live", "--gateway-url", url, "-o", fmt, "accounts", "positions"],
            prog_name="ibgw",
            standalone_mode=False,
        )
    finally:
        sys.stdout.flush()
    total = time.perf_counter() - t
    if prof is not None:
        prof.disable()
    traced = None
    if trace:
        import tracemalloc

        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    result = {
        "exit": rc or 0,
        "total": total,
        "startup": t - T_START,
        "fetch": timing["fetch"],
        "render": timing["render"],
        "rows": timing["rows"],
        "maxrss_before": rss_before,
        "maxrss_peak": vm_hwm_kib(),
        "tracemalloc_peak": traced,
    }
    if prof is not None:
        import pstats

        stats = pstats.Stats(prof).stats
        result["parts"] = profile_parts(stats, PARTS)
        result["top"] = profile_top(stats, 22)
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
