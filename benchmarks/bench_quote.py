"""6. Quote: ``ibgw quote`` of 200 symbols against a gateway that enforces IBKR's
limits (429 beyond them) and answers every request after 150 ms.

``ibgw --backend live --gateway-url URL -o json quote T1 ... T200`` as a fresh process
with a fresh state dir (empty pacer state): one contract search per ticker (the core
symbol resolver, 4 in flight, paced by ibgw's cross-process pacer), IBKR's
``/iserver/accounts`` prerequisite, then the snapshot in 2 chunks of 100 conids: the
pre-flight that opens the streams and the call that brings the fields. Beside the
same requests sent one at a time on one ``requests.Session`` (as the peer clients
do). The floor is calls ÷ 10/s (IBKR's global limit); the server counts 429 answers.
"""

from __future__ import annotations

import subprocess
import time

from common import fmt_summary, fmt_time, ibgw_env, scratch, summary, venv_bin

NAME = "quote"
TITLE = "Quote of 200 symbols"
LATENCY_MS = 150
RATE = 10.0  # IBKR: 10 requests per second per client in all
SYMBOLS = 200
IBGW_RUNS = 5
SEQ_RUNS = 1
TARGET_FACTOR = 1.10


def _tickers() -> list[str]:
    from ibgw_fake import stocks

    return sorted(stocks.universe())[:SYMBOLS]


def _settle(server) -> None:
    """Forget the server's pacing windows and counters between runs."""
    time.sleep(1.1)
    server.reset()


def _sequential(base: str, tickers: list[str]) -> int:
    import requests
    from ibgw_marketdata.reads import FIELDS

    calls = 0
    with requests.Session() as s:

        def get(path, query):
            nonlocal calls
            calls += 1
            r = s.get(base + path, params=query, timeout=30)
            r.raise_for_status()
            return r.json()

        conids = []
        for t in tickers:
            found = get("/iserver/secdef/search", {"symbol": t, "secType": "STK"})
            us = [e for e in found if e.get("description") in ("NASDAQ", "NYSE", "ARCA")]
            conids.append(str((us or found)[0]["conid"]))
        get("/iserver/accounts", {})
        chunks = [",".join(conids[i : i + 100]) for i in range(0, len(conids), 100)]
        for _ in range(2):  # pre-flight, then the fields
            for c in chunks:
                get("/iserver/marketdata/snapshot", {"conids": c, "fields": FIELDS})
    return calls


def run(log) -> dict:
    import json

    from ibgw_fake.server import FakeGatewayServer

    from ibgw.plugins import get_plugin_manager

    ibgw = venv_bin("ibgw")
    tickers = _tickers()
    res: dict = {"ibgw": [], "sequential": []}
    with (
        scratch() as tmp,
        FakeGatewayServer(get_plugin_manager(), latency_ms=LATENCY_MS, pacing=True) as server,
    ):
        order = ["ibgw", "sequential"] * SEQ_RUNS + ["ibgw"] * (IBGW_RUNS - SEQ_RUNS)
        for i, kind in enumerate(order):
            _settle(server)
            error, rows = None, None
            log(f"  {kind}: quote of {len(tickers)} symbols (run {i + 1}/{len(order)})")
            t = time.perf_counter()
            if kind == "ibgw":
                env = ibgw_env(tmp / f"quote-{i}")
                argv = [ibgw, "--backend", "live", "--gateway-url", server.url, "-o", "json"]
                proc = subprocess.run(
                    [*argv, "quote", *tickers], env=env, capture_output=True, text=True
                )
                wall = time.perf_counter() - t
                if proc.returncode != 0:
                    error = f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
                    log(f"  FAILED: {error}")
                else:
                    data = json.loads(proc.stdout)
                    rows = sum(1 for r in data if r.get("last") is not None)
            else:
                try:
                    _sequential(server.url, tickers)
                except Exception as exc:  # a 429 or a refused connection
                    error = f"{type(exc).__name__}"
                wall = time.perf_counter() - t
            calls = server.stats["total"]
            res[kind].append(
                {
                    "wall": wall,
                    "calls": calls,
                    "429": server.stats["429"],
                    "error": error,
                    "rows": rows,
                    "paths": dict(server.stats["paths"]),
                    "floor": calls / RATE,
                    "over_floor": wall / (calls / RATE) if calls else float("nan"),
                }
            )
    out = {}
    for kind, runs in res.items():
        good = [r for r in runs if not r["error"]] or runs
        out[kind] = {
            "runs": runs,
            "failed": sum(1 for r in runs if r["error"]),
            "errors": [r["error"] for r in runs if r["error"]],
            "wall": summary([r["wall"] for r in good]),
            "over_floor": summary([r["over_floor"] for r in good]),
            "calls": max(r["calls"] for r in good),
            "calls_min": min(r["calls"] for r in good),
            "429": sum(r["429"] for r in runs),
            "rows": good[0]["rows"],
            "paths": good[0]["paths"],
        }
    return out


def targets(r: dict) -> list[dict]:
    v = r["ibgw"]
    failed = f"; {v['failed']} of {len(v['runs'])} runs failed" if v["failed"] else ""
    return [
        {
            "what": f"{SYMBOLS}-symbol quote wall time ÷ floor (calls ÷ 10/s)",
            "target": f"≤ {TARGET_FACTOR:.2f}×",
            "measured": f"{v['over_floor']['median']:.3f}×{failed}",
            "ok": v["over_floor"]["median"] <= TARGET_FACTOR and not v["failed"],
        },
        {
            "what": f"429 answers to ibgw ({SYMBOLS}-symbol quote, every run)",
            "target": "0",
            "measured": str(v["429"]),
            "ok": v["429"] == 0,
        },
    ]


def report(r: dict) -> str:
    out = [
        "`ibgw --backend live quote` of 200 tickers of the fake backend's simulated stock "
        "market, as a fresh process with a fresh state dir, against the loopback "
        "`FakeGatewayServer` enforcing IBKR's limits (10 requests/s in all, 10/s on the "
        f"snapshot, 429 beyond them) with {LATENCY_MS} ms latency per request. **Floor** = "
        "calls ÷ 10/s. ibgw's time includes its process start-up and the snapshot's "
        "pre-flight wait (0.5 s between the call that opens the streams and the one that "
        "brings the fields; the server keeps the streams open between runs, as a gateway does, "
        "so later runs get the fields at once and make 2 calls fewer).",
        "",
        "| client | calls | wall time | wall ÷ floor | 429 | failed runs | rows with a price |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "ibgw": "`ibgw quote` (a process, 4 in flight, paced)",
        "sequential": "one at a time, `requests.Session` (same requests)",
    }
    for kind, label in labels.items():
        v = r[kind]
        calls = (
            str(v["calls"]) if v["calls"] == v["calls_min"] else f"{v['calls_min']}–{v['calls']}"
        )
        o = v["over_floor"]
        out.append(
            f"| {label} | {calls} (floor {fmt_time(v['calls'] / RATE)}) | {fmt_summary(v['wall'])} | "
            f"**{o['median']:.3f}×** (range {o['min']:.3f}–{o['max']:.3f}) | {v['429']} | "
            f"{v['failed']} of {len(v['runs'])} | {v['rows'] if v['rows'] is not None else 'n/a'} |"
        )
    paths = r["ibgw"]["paths"]
    out += [
        "",
        "ibgw's calls by path: "
        + ", ".join(f"`{p}` {n}" for p, n in sorted(paths.items()))
        + ". One at a time is "
        f"**{r['sequential']['wall']['median'] / r['ibgw']['wall']['median']:.2f}×** slower "
        "(ratio of medians): with 150 ms per request it cannot reach the 10/s the gateway allows.",
    ]
    return "\n".join(out)
