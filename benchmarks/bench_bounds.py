"""6. Bounds: what a hostile gateway's worst answers cost ``ibgw``.

A loopback ``http.server`` on 127.0.0.1 answers ``GET /portfolio/accounts`` with one of
the worst bodies that fit under the 16 MiB answer cap:

* ``empty-objects``: 15.9 MiB of ``[{},{},...]`` (5.6 million values);
* ``many-values``: one record holding 2 million numbers in one list (15.9 MiB);
* ``deep``: 15.9 MiB of ``[[[[...]]]]`` (8 million levels);
* ``huge-string``: one record whose alias is a 15.9 MiB string;
* ``legit``: 2,000 ordinary accounts (the bound must not refuse a real answer).

Each case runs ``ibgw --backend live --gateway-url http://127.0.0.1:PORT/v1/api
--timeout 3 -o json accounts list`` in a fresh process and records its wall time, exit
code and peak RSS (``ru_maxrss`` of that child from ``os.wait4``), ``REPEATS`` times.
Before the bounds (issue 18, finding 5) the first case took 144 s and 5.2 GB and printed
788 MB despite ``--timeout 3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from common import fmt_summary, fmt_time, ibgw_env, scratch, summary, venv_bin

NAME = "bounds"
TITLE = "Bounds"
SIZE = int(15.9 * 1024 * 1024)
REPEATS = 3
TARGET_S = 3.5  # --timeout 3 bounds the whole read (plus start-up)
TARGET_MIB = 200.0


# The server runs in its own process: the benchmark process stays small, because a
# child's ru_maxrss also counts what it inherited from its parent before exec.
SERVER = r"""
import http.server, json, sys
SIZE = int(sys.argv[2])
n, numbers = SIZE // 3, SIZE // 8
case = sys.argv[1]
if case == "empty-objects":
    body = b"[" + b"{}," * (n - 1) + b"{}]"
elif case == "many-values":
    body = b'[{"id":"U1","extra":[' + b"1234567," * (numbers - 1) + b"1]}]"
elif case == "deep":
    body = b"[" * (SIZE // 2) + b"]" * (SIZE // 2)
elif case == "huge-string":
    body = b'[{"id":"U1","accountAlias":"' + b"x" * (SIZE - 40) + b'"}]'
else:
    body = json.dumps(
        [{"id": f"U{1000000 + i}", "accountAlias": f"Account {i}"} for i in range(2000)]
    ).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
httpd.daemon_threads = True
print(len(body), httpd.server_address[1], flush=True)
httpd.serve_forever()
"""
CASES = ("empty-objects", "many-values", "deep", "huge-string", "legit")


class _Server:
    def __init__(self, case: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, case, str(SIZE)], stdout=subprocess.PIPE, text=True
        )
        size, port = self.proc.stdout.readline().split()
        self.body_bytes = int(size)
        self.url = f"http://127.0.0.1:{port}/v1/api"

    def close(self):
        self.proc.terminate()
        self.proc.wait()


# ibgw is started from this small launcher, not from the benchmark process: a child's
# ru_maxrss counts the memory of the process it was forked from (before exec), so a
# benchmark runner grown by earlier benchmarks would otherwise set every figure's floor.
LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_once(url: str, env: dict) -> dict:
    import tempfile

    argv = [venv_bin("ibgw"), "--backend", "live", "--gateway-url", url, "--timeout", "3"]
    argv += ["-o", "json", "accounts", "list"]
    rss_fd, rss_path = tempfile.mkstemp(prefix="ibgw-bench-rss-")
    os.close(rss_fd)
    argv = [sys.executable, "-c", LAUNCHER, rss_path, *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_bytes = 0
    err = b""

    def drain_err():
        nonlocal err
        err = proc.stderr.read()

    t = threading.Thread(target=drain_err, daemon=True)
    t.start()
    while chunk := proc.stdout.read(1 << 16):
        out_bytes += len(chunk)
    t.join()
    proc.wait()
    wall = time.perf_counter() - started
    with open(rss_path, encoding="ascii") as fh:
        rss_kib = int(fh.read() or 0)
    os.unlink(rss_path)
    reason = None
    try:
        reason = json.loads(err)["error"]["reason"]
    except (ValueError, KeyError, TypeError):
        pass
    return {
        "wall_s": wall,
        "rss_mib": rss_kib / 1024,
        "exit": proc.returncode,
        "stdout_bytes": out_bytes,
        "reason": reason,
    }


def run(log) -> dict:
    cases = {}
    with scratch() as tmp:
        for name in CASES:
            server = _Server(name)
            try:
                runs = []
                for i in range(REPEATS):
                    # a fresh state dir per run: IBKR's pacing of /portfolio/accounts
                    # (one call per 5 s) would answer "paced" otherwise
                    env = ibgw_env(tmp / f"state-{name}-{i}", IBGW_LOAD_PLUGINS="")
                    runs.append(_run_once(server.url, env))
            finally:
                server.close()
            cases[name] = {
                "body_mib": round(server.body_bytes / 1024 / 1024, 2),
                "wall": summary([r["wall_s"] for r in runs]),
                "rss_mib": max(r["rss_mib"] for r in runs),
                "exit": sorted({r["exit"] for r in runs}),
                "reason": sorted({str(r["reason"]) for r in runs}),
                "stdout_bytes": max(r["stdout_bytes"] for r in runs),
            }
            log(
                f"  {name}: {fmt_time(cases[name]['wall']['median'])}, "
                f"{cases[name]['rss_mib']:.0f} MiB, exit {cases[name]['exit']}, "
                f"reason {cases[name]['reason']}"
            )
    return {"cases": cases, "repeats": REPEATS}


def targets(result: dict) -> list[dict]:
    rows = []
    for name, case in result["cases"].items():
        worst = case["wall"]["max"] if "max" in case["wall"] else case["wall"]["median"]
        ok = worst <= TARGET_S and case["rss_mib"] <= TARGET_MIB
        if name in ("legit", "huge-string"):  # one 16 MiB string is a valid answer
            ok = ok and case["exit"] == [0]
        else:
            ok = ok and case["exit"] == [4]
        rows.append(
            {
                "what": f"{name} ({case['body_mib']} MiB)",
                "target": f"≤ {TARGET_S:g} s, ≤ {TARGET_MIB:.0f} MiB peak RSS, "
                + ("exit 0" if name in ("legit", "huge-string") else "exit 4"),
                "measured": f"{fmt_time(case['wall']['median'])}, {case['rss_mib']:.0f} MiB, "
                f"exit {'/'.join(map(str, case['exit']))}",
                "ok": ok,
            }
        )
    return rows


def report(result: dict) -> str:
    lines = [
        "Worst answers of a hostile loopback gateway to `ibgw --timeout 3 -o json accounts "
        f"list`, {result['repeats']} fresh processes per case; peak RSS is the child's "
        "`ru_maxrss`.",
        "",
        "| case | body | wall time | peak RSS | exit | reason | stdout |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, case in result["cases"].items():
        lines.append(
            f"| {name} | {case['body_mib']} MiB | {fmt_summary(case['wall'])} | "
            f"{case['rss_mib']:.0f} MiB | {'/'.join(map(str, case['exit']))} | "
            f"{', '.join(case['reason'])} | {case['stdout_bytes']:,} B |"
        )
    lines += [
        "",
        "Before the bounds (issue 18, finding 5), `empty-objects` took 144 s and 5.2 GB and "
        "printed 788 MB despite `--timeout 3`.",
    ]
    return "\n".join(lines)
