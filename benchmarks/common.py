"""Shared helpers of the benchmarks: environments, statistics, formatting.

Nothing here asserts anything: the benchmarks measure and report; the test suite
never times anything.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PEER_VENV = ROOT / ".bench-venv-peer"  # git-ignored (.bench-venv*/)
# The peers, pinned so that two runs compare the same thing. Installed only in
# PEER_VENV, never in the project's .venv.
PEER_PACKAGES = ("ibkr-cli==0.7.2", "ibind==0.2.2")


# -- environments -----------------------------------------------------------------------------
def venv_bin(name: str) -> str:
    """A console script of the environment this process runs in (the project .venv)."""
    path = Path(sys.prefix) / "bin" / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed in {sys.prefix}")
    return found


def peer_python() -> str:
    return str(PEER_VENV / "bin" / "python")


def ensure_peer_venv(log=print) -> dict:
    """Create ``.bench-venv-peer/`` with the peers (once; again when the pins change)
    and return ``{"python", "cli", "versions"}``; ``cli`` is the console script of
    ibkr-cli, found from its metadata after the install."""
    marker = PEER_VENV / ".bench-installed"
    wanted = "\n".join(PEER_PACKAGES)
    py = peer_python()
    if not (Path(py).exists() and marker.exists() and marker.read_text() == wanted):
        log(f"creating {PEER_VENV.name}/ with {', '.join(PEER_PACKAGES)} (a minute, once)")
        base = getattr(sys, "_base_executable", None) or sys.executable
        if not Path(py).exists():
            subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_PACKAGES],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.write_text(wanted)
    code = (
        "import importlib.metadata as m, json;"
        "d = m.distribution('ibkr-cli');"
        "print(json.dumps({'scripts': [e.name for e in d.entry_points if e.group == 'console_scripts'],"
        "'versions': {n: m.version(n) for n in ('ibkr-cli', 'ibind', 'requests')}}))"
    )
    info = json.loads(
        subprocess.run([py, "-c", code], check=True, capture_output=True, text=True).stdout
    )
    scripts = info["scripts"]
    if not scripts:
        raise RuntimeError("ibkr-cli declares no console script")
    name = "ibkr" if "ibkr" in scripts else scripts[0]
    return {
        "python": py,
        "cli": str(PEER_VENV / "bin" / name),
        "cli_name": name,
        "versions": info["versions"],
    }


@contextlib.contextmanager
def scratch(prefix: str = "ibgw-bench-"):
    """A temporary directory, removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clean_env() -> dict:
    """This process's environment without IBGW_*/IBIND_* variables and without
    PYTHONDONTWRITEBYTECODE, so that processes start as a user's do: with their
    bytecode cached after the first run."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IBGW_", "IBIND_")) and k != "PYTHONDONTWRITEBYTECODE"
    }


def ibgw_env(state_dir: Path, **extra) -> dict:
    """The environment for an ibgw process: no inherited IBGW_* variable, a fresh
    state dir (audit log, pacer state, option cache) and an empty config file."""
    env = clean_env()
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir.parent / f"{state_dir.name}-config.toml"
    config.write_text("")
    env.update(
        IBGW_STATE_DIR=str(state_dir), IBGW_CONFIG=str(config), COLUMNS="80", LC_ALL="C.UTF-8"
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def app_environ(state_dir: Path) -> dict:
    """``environ`` for an in-process ``ibgw.app.App`` (same rules as :func:`ibgw_env`)."""
    return ibgw_env(state_dir)


# -- statistics -------------------------------------------------------------------------------
def quantile(values, q: float) -> float:
    """Linear-interpolated quantile (q in [0, 1])."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values) -> dict:
    """median, IQR, p5-p95, min, max and n of a list of samples (seconds or ratios)."""
    values = [float(v) for v in values]
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p25": quantile(values, 0.25),
        "p75": quantile(values, 0.75),
        "p5": quantile(values, 0.05),
        "p95": quantile(values, 0.95),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def ratio(num: dict, den: dict) -> float:
    return num["median"] / den["median"] if den["median"] else float("nan")


def paired_ratios(a: list[float], b: list[float]) -> dict:
    """The spread of per-round ratios a[i]/b[i] (interleaved rounds)."""
    return summary([x / y for x, y in zip(a, b, strict=True) if y > 0])


def shuffled(items: list, rng: random.Random) -> list:
    items = list(items)
    rng.shuffle(items)
    return items


# -- formatting -------------------------------------------------------------------------------
def fmt_time(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_summary(s: dict, unit=fmt_time) -> str:
    """``median (IQR a–b; p5–p95 c–d; n)``."""
    return (
        f"**{unit(s['median'])}** (IQR {unit(s['p25'])}–{unit(s['p75'])}; "
        f"p5–p95 {unit(s['p5'])}–{unit(s['p95'])}; n={s['n']})"
    )


def fmt_ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}×"


def fmt_ratio_summary(s: dict) -> str:
    return f"IQR {s['p25']:.2f}–{s['p75']:.2f}×"


def verdict(ok: bool | None) -> str:
    return "pending" if ok is None else ("**met**" if ok else "**missed**")


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "",
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "memory_gib": _memory_gib(),
    }


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def timed_run(argv, env, cwd=None) -> float:
    """Wall time of one process, output discarded; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}: {proc.stderr[-400:]!r}"
        )
    return elapsed


# -- profiles ---------------------------------------------------------------------------------
def profile_parts(stats: dict, spec, calls: int = 1) -> list[tuple[str, float]]:
    """Cumulative time per call of named functions in a ``pstats.Stats(...).stats`` dict.

    ``spec`` rows are ``(label, file suffix or "~" for built-ins, "func|func2")``; for
    each function name the largest matching entry counts (a wrapper of the same name
    in the same module would otherwise be counted twice), and the names are summed.
    """
    rows = []
    for label, suffix, funcs in spec:
        total = 0.0
        for name in funcs.split("|"):
            best = 0.0
            for (path, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.items():
                if func == name and (path.endswith(suffix) if suffix != "~" else path == "~"):
                    best = max(best, ct)
            total += best
        rows.append((label, total / calls))
    return rows


def profile_top(stats: dict, n: int = 20, calls: int = 1) -> list[tuple[str, float, float, int]]:
    """``(function, own time, cumulative, calls)`` per call, the n largest own times."""
    prefixes = sorted(
        {sys.prefix + "/lib/", sys.base_prefix + "/lib/", str(ROOT) + "/"}, key=len, reverse=True
    )
    top = []
    for (path, line, func), (_cc, nc, tt, ct, _callers) in stats.items():
        short = path
        for prefix in prefixes:
            short = short.replace(prefix, "")
        top.append(
            (
                f"{short}:{line}({func})" if line else func,
                tt / calls,
                ct / calls,
                max(1, nc // calls),
            )
        )
    top.sort(key=lambda r: -r[1])
    return top[:n]


def profile_block(top, title: str) -> list[str]:
    lines = [
        "",
        f"<details><summary>{title}</summary>",
        "",
        "```",
        f"{'own':>10} {'cumulative':>11} {'calls':>6}  function",
    ]
    for label, tt, ct, nc in top:
        lines.append(f"{tt * 1000:8.3f}ms {ct * 1000:9.3f}ms {nc:6d}  {label[:110]}")
    lines += ["```", "", "</details>"]
    return lines


def vm_hwm_kib() -> int | None:
    """Peak resident set of this process image (``VmHWM``; unlike ``ru_maxrss`` it is
    not inherited across ``exec`` from the parent that forked it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
