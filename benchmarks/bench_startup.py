"""1. Start-up: ``ibgw --help`` and a fake-backend read beside the floor
(``python -c pass`` in the same environment) and beside the peer CLI's ``--help``.

Our own loop interleaves the commands (each round runs every command once, in a
shuffled order), so a change in the machine's load hits all of them alike; the
ratios come from that loop. When hyperfine is installed it is run as well, as a
cross-check of the absolute figures (hyperfine runs each command's series in turn,
not interleaved). A cProfile of ``ibgw --help`` and an ``-X importtime`` grouping
say where the time goes.
"""

from __future__ import annotations

import json
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    ensure_peer_venv,
    fmt_ratio,
    fmt_ratio_summary,
    fmt_summary,
    fmt_time,
    ibgw_env,
    paired_ratios,
    ratio,
    scratch,
    shuffled,
    summary,
    timed_run,
    venv_bin,
)

NAME = "startup"
TITLE = "Start-up"
RUNS = 30
WARMUP = 3
HYPERFINE_RUNS = 10  # the cross-check; the interleaved loop has RUNS
TARGET_HELP_S = 0.10
TARGET_PEER_FACTOR = 5.0

PROFILE_CHILD = r"""
import cProfile, contextlib, io, json, pstats, sys
prof = cProfile.Profile()
prof.enable()
from ibgw.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
prof.disable()
stats = pstats.Stats(prof).stats
SKIP = ("<frozen", "{built-in method builtins.exec}", "{built-in method builtins.__import__}",
        "{method 'disable'")
rows = []
total = 0.0
for (path, line, func), (cc, nc, tt, ct, callers) in stats.items():
    total += tt
    label = f"{path}:{line}({func})" if line else func
    if any(label.startswith(s) for s in SKIP):
        continue
    short = label.replace(sys.prefix + "/lib/python3." + str(sys.version_info[1]) + "/site-packages/", "")
    short = short.replace(sys.base_prefix + "/lib/python3." + str(sys.version_info[1]) + "/", "")
    rows.append((short, ct, tt, nc))
def pick(pred):  # the largest match: same-named nested functions are not counted twice
    return max([ct for (label, ct, tt, nc) in rows if pred(label)], default=0.0)
sel = {
    "create_cli (plugins, reads, click commands)": pick(lambda l: l.endswith("(create_cli)")),
    "  get_plugin_manager": pick(lambda l: l.endswith("(get_plugin_manager)")),
    "    load_entrypoint_plugins (entry points + plugin imports)": pick(lambda l: l.endswith("(load_entrypoint_plugins)")),
    "      entry-point discovery (ibgw.plugins._entry_points)": pick(lambda l: "ibgw/plugins.py" in l and l.endswith("(_entry_points)")),
    "        of which importlib.metadata.entry_points()": pick(lambda l: "importlib/metadata/__init__.py" in l and l.endswith("(entry_points)")),
    "  collect_reads": pick(lambda l: l.endswith("(collect_reads)")),
    "import click": pick(lambda l: l.startswith("click/__init__.py:1(<module>)")),
    "import importlib.metadata": pick(lambda l: l.startswith("importlib/metadata/__init__.py:1(<module>)")),
    "regular-expression compiles (re._compile)": pick(lambda l: l.startswith("re/__init__.py") and l.endswith("(_compile)")),
    "click: format and print the help": pick(lambda l: l.startswith("click/core.py") and l.endswith("(get_help)")),
}
rows.sort(key=lambda r: -r[1])
print(json.dumps({"total": total, "selected": sel, "top": rows[:22]}))
"""


def _importtime(env, ibgw_python: str) -> list[tuple[str, float]]:
    """Self import time (ms) per top-level package while running ``ibgw --help``."""
    proc = subprocess.run(
        [ibgw_python, "-X", "importtime", "-c", "from ibgw.cli import main; main(['--help'])"],
        env=env,
        capture_output=True,
        text=True,
    )
    groups: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|")
        if len(parts) != 3:
            continue
        try:
            self_us = float(parts[0].split(":", 1)[1])
        except ValueError:
            continue
        name = parts[2]
        top = name.strip().split(".")[0]
        if top.startswith("__editable__"):
            top = "(editable-install finders)"
        groups[top] = groups.get(top, 0.0) + self_us / 1000.0
    return sorted(groups.items(), key=lambda kv: -kv[1])[:14]


def _hyperfine(commands: dict[str, list[str]], env) -> dict | None:
    exe = shutil.which("hyperfine")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hf.json"
        argv = [
            exe,
            "-N",
            "--style",
            "none",
            "--warmup",
            str(WARMUP),
            "--runs",
            str(HYPERFINE_RUNS),
            "--export-json",
            str(out),
        ]
        for cmd in commands.values():
            argv.append(shlex.join(cmd))  # -N splits it back the way a shell would
        proc = subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if proc.returncode != 0 or not out.exists():
            return {"error": proc.stderr[-300:]}
        data = json.loads(out.read_text())
        version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    res = {"version": version, "results": {}}
    for label, entry in zip(commands, data["results"], strict=True):
        res["results"][label] = summary(entry["times"])
    return res


def run(log) -> dict:
    peer = ensure_peer_venv(log)
    ibgw = venv_bin("ibgw")
    py = sys.executable
    with scratch() as tmp:
        env = ibgw_env(tmp / "state")
        commands = {
            "python -c pass (project .venv)": [py, "-c", "pass"],
            "ibgw --help": [ibgw, "--help"],
            "ibgw --backend fake fx rate USD EUR": [
                ibgw,
                "--backend",
                "fake",
                "fx",
                "rate",
                "USD",
                "EUR",
            ],
            "python -c pass (peer venv)": [peer["python"], "-c", "pass"],
            f"{peer['cli_name']} --help (ibkr-cli {peer['versions']['ibkr-cli']})": [
                peer["cli"],
                "--help",
            ],
            # The floor set by the CLI framework the project chose: the interpreter of
            # this venv importing click and nothing else.
            'python -c "import click" (project .venv)': [py, "-c", "import click"],
        }
        labels = list(commands)
        samples: dict[str, list[float]] = {k: [] for k in labels}
        rng = random.Random(9)
        log(f"  {len(labels)} commands, {WARMUP} warm-up + {RUNS} interleaved rounds")
        for _ in range(WARMUP):
            for label in labels:
                timed_run(commands[label], env)
        for _ in range(RUNS):
            for label in shuffled(labels, rng):
                samples[label].append(timed_run(commands[label], env))
        log(
            "  hyperfine cross-check"
            if shutil.which("hyperfine")
            else "  hyperfine not installed: skipped"
        )
        hf = _hyperfine(commands, env)
        log("  profiling ibgw --help")
        prof = subprocess.run(
            [py, "-c", PROFILE_CHILD], env=env, capture_output=True, text=True, check=True
        )
        profile = json.loads(prof.stdout)
        imports = _importtime(env, py)

    s = {k: summary(v) for k, v in samples.items()}
    py_l, help_l, fx_l, peer_py_l, peer_l, click_l = labels
    ratios = {
        'ibgw --help ÷ python -c "import click"': (
            ratio(s[help_l], s[click_l]),
            paired_ratios(samples[help_l], samples[click_l]),
        ),
        "ibgw --help ÷ python -c pass": (
            ratio(s[help_l], s[py_l]),
            paired_ratios(samples[help_l], samples[py_l]),
        ),
        "fx rate (fake) ÷ python -c pass": (
            ratio(s[fx_l], s[py_l]),
            paired_ratios(samples[fx_l], samples[py_l]),
        ),
        "peer --help ÷ ibgw --help": (
            ratio(s[peer_l], s[help_l]),
            paired_ratios(samples[peer_l], samples[help_l]),
        ),
        "peer --help ÷ peer python -c pass": (
            ratio(s[peer_l], s[peer_py_l]),
            paired_ratios(samples[peer_l], samples[peer_py_l]),
        ),
    }
    return {
        "labels": labels,
        "summaries": s,
        "ratios": {k: {"ratio": v[0], "paired": v[1]} for k, v in ratios.items()},
        "overhead_over_python_s": s[help_l]["median"] - s[py_l]["median"],
        "overhead_over_click_s": s[help_l]["median"] - s[click_l]["median"],
        "hyperfine": hf,
        "profile": profile,
        "importtime": imports,
        "peer": {k: peer[k] for k in ("cli_name", "versions")},
    }


def targets(r: dict) -> list[dict]:
    help_l, peer_l = r["labels"][1], r["labels"][4]
    med = r["summaries"][help_l]["median"]
    factor = r["ratios"]["peer --help ÷ ibgw --help"]["ratio"]
    return [
        {
            "what": "`ibgw --help` median",
            "target": f"≤ {fmt_time(TARGET_HELP_S)}",
            "measured": fmt_time(med),
            "ok": med <= TARGET_HELP_S,
        },
        {
            "what": f"`ibgw --help` vs `{peer_l.split(' (')[0]}`",
            "target": f"≥ {TARGET_PEER_FACTOR:g}× faster",
            "measured": f"{factor:.2f}× faster",
            "ok": factor >= TARGET_PEER_FACTOR,
        },
    ]


def report(r: dict) -> str:
    out = [
        "Each command runs as a fresh process with its output discarded; wall time from "
        "`subprocess.run` start to exit. "
        f"{WARMUP} warm-up rounds, then {RUNS} rounds; every round runs every command once in a "
        "shuffled order (interleaved), so the ratios compare runs made under the same load. "
        "ibgw runs from the project `.venv` (core and every first-party plugin, editable installs); "
        "the peer from `.bench-venv-peer/`. The fake-backend read writes its audit records to a "
        "fresh state dir.",
        "",
        "| command | wall time |",
        "|---|---|",
    ]
    for label in r["labels"]:
        out.append(f"| `{label}` | {fmt_summary(r['summaries'][label])} |")
    out += [
        "",
        "| ratio (interleaved, ratio of medians) | value | per-round spread |",
        "|---|---|---|",
    ]
    for name, v in r["ratios"].items():
        out.append(f"| {name} | **{fmt_ratio(v['ratio'])}** | {fmt_ratio_summary(v['paired'])} |")
    out.append("")
    out.append(
        f"ibgw's own start-up cost over the bare interpreter: **{fmt_time(r['overhead_over_python_s'])}** "
        "(median difference)"
        + (
            f"; over the same interpreter importing click alone: **{fmt_time(r['overhead_over_click_s'])}**."
            if "overhead_over_click_s" in r
            else "."
        )
    )
    hf = r.get("hyperfine")
    if hf and "results" in hf:
        out += [
            "",
            f"Cross-check with {hf['version']} (`-N`, {WARMUP} warm-ups, {HYPERFINE_RUNS} runs; "
            "each command's runs back to back, not interleaved):",
            "",
            "| command | hyperfine |",
            "|---|---|",
        ]
        for label, s in hf["results"].items():
            out.append(f"| `{label}` | {fmt_summary(s)} |")
    elif hf and "error" in hf:
        out += ["", f"hyperfine failed: `{hf['error']}`"]
    else:
        out += ["", "hyperfine is not installed; only the interleaved loop ran."]
    prof = r["profile"]
    out += [
        "",
        "Where `ibgw --help` spends its time (cProfile of `ibgw.cli.main(['--help'])` in one "
        f"process, {fmt_time(prof['total'])} profiled, profiler overhead included; the interpreter's "
        "own start-up and `site` are not in it):",
        "",
        "| part | cumulative |",
        "|---|---|",
    ]
    for name, secs in prof["selected"].items():
        out.append(f"| {name.replace('  ', '&nbsp;&nbsp;')} | {fmt_time(secs)} |")
    out += [
        "",
        "Self import time by top-level package while running `ibgw --help` (`python -X importtime`):",
        "",
        "| package | self import time |",
        "|---|---|",
    ]
    for name, ms in r["importtime"]:
        out.append(f"| `{name}` | {ms:.1f} ms |")
    out += [
        "",
        "<details><summary>cProfile, top functions by cumulative time</summary>",
        "",
        "```",
        f"{'cumulative':>10} {'own':>8} {'calls':>6}  function",
    ]
    for label, ct, tt, nc in prof["top"]:
        out.append(f"{ct * 1000:8.1f}ms {tt * 1000:6.1f}ms {nc:6d}  {label[:110]}")
    out += ["```", "", "</details>"]
    help_med = r["summaries"][r["labels"][1]]["median"]
    if help_med > TARGET_HELP_S:
        out += ["", _limits(r)]
    return "\n".join(out)


def _limits(r: dict) -> str:
    selected = r["profile"]["selected"]
    py = r["summaries"][r["labels"][0]]["median"]
    help_med = r["summaries"][r["labels"][1]]["median"]
    base = py + sum(
        v for k, v in selected.items() if k in ("import click", "import importlib.metadata")
    )
    listed = "; ".join(f"{k.strip()} {fmt_time(v)}" for k, v in selected.items() if v >= 0.0005)
    click_floor = ""
    if len(r["labels"]) > 5:
        click_med = r["summaries"][r["labels"][5]]["median"]
        click_floor = (
            f'In the same interleaved rounds, `python -c "import click"` in this '
            f"venv takes {fmt_time(click_med)}"
            + (
                f", more than the {fmt_time(TARGET_HELP_S)} target by itself"
                if click_med > TARGET_HELP_S
                else ""
            )
            + f"; `ibgw --help` adds {fmt_time(help_med - click_med)} to it (pluggy, the plugin "
            "modules and their declarations, building the top-level group, formatting the help). "
            "click, the CLI framework the project chose, imports inspect, typing, enum, uuid "
            "(and platform), datetime and gettext at import time. "
        )
    return (
        "**What limits it.** "
        + click_floor
        + f"`ibgw --help` takes {fmt_time(help_med)}, of which the bare interpreter "
        f"of this venv takes {fmt_time(py)} (`python -c pass`: more than in the peer's venv, "
        f"{fmt_time(r['summaries'][r['labels'][3]]['median'])}, because the core's editable "
        "install is a setuptools finder (`ibgw.fixtures` maps to the top-level `fixtures/`) that "
        "imports pathlib, re, urllib.parse and importlib.util at every start; click needs re and "
        "most of the rest anyway: checked by hand, a strict-mode editable install without the "
        "finder started `python -c pass` about 30 ms sooner but `ibgw --help` only about 5 ms, "
        "and it cannot import `ibgw.fixtures` when the checkout comes first on sys.path, as "
        "under `python -m pytest`). "
        "The rest is importing and building the command tree; in the profile above (cProfile "
        f"overhead included, nested parts counted in the parts above them): {listed}."
        + (
            ""
            if click_floor
            else " The interpreter plus importing click"
            + (
                " and importlib.metadata"
                if selected.get("import importlib.metadata", 0) > 0
                else ""
            )
            + f" alone come to about {fmt_time(base)} here, against the {fmt_time(TARGET_HELP_S)} "
            "target; the rest of the time is spread over loading the plugins (their modules and "
            "the declarations they import) and building the click commands."
        )
    )
