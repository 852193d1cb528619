"""Compute the figures docs/security.md publishes from the test suite's own data,
and rewrite (or, with --check, verify) the block between the FIGURES markers.

    python scripts/security_figures.py          # rewrite docs/security.md
    python scripts/security_figures.py --check  # exit 1 when the page is stale
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
START, END = "<!-- FIGURES:START -->", "<!-- FIGURES:END -->"


def _module(name: str):
    path = ROOT / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_figures_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count_tests(name: str, pattern: str) -> int:
    text = (ROOT / "tests" / f"{name}.py").read_text()
    return len(re.findall(rf"^def (test_\w*(?:{pattern})\w*)\(", text, flags=re.M))


def figures() -> str:
    url = _module("test_urlcheck")
    policy = _module("test_policy")
    canary = _module("test_canary")
    tricks = (
        len(policy.TRICKS) * 2
        + len(policy.ODD_METHODS)
        + len(policy.DENIED)
        + len(policy.HOSTILE_IDS) * len(policy.TEMPLATES)
        + len(policy.RAW_IDS) * len(policy.TEMPLATES)
        + len(policy.BAD_QUERIES)
    )
    commands = len(canary.BASE_COMMANDS) + len(canary.READS)
    faults = len(canary.SCENARIOS)
    audit_faults = _count_tests(
        "test_audit",
        "edit|deletion|deleted|reorder|insert|torn|truncat|disk_full|"
        "unwritable|read_only|symlink|checkpoint|missing|hard_linked|not_a_regular",
    )
    lifecycle = _count_tests(
        "test_audit_lifecycle",
        "edit|delet|reorder|torn|truncat|crash|rollback|seal|wedge|capped|changes|pruning",
    )
    emitter = _module("test_emitter")
    walked = len([f for f in emitter._sources() if f not in emitter.ALLOWED])
    planted = len(emitter.PLANTED) + 1  # and one planted in a copy of a real module
    hostile = _count_tests("test_bounds_hostile", "")
    lines = [
        "| promise | what the tests try | result |",
        "|---|---|---|",
        f"| only a local gateway | {len(url.ADVERSARIAL_URLS)} adversarial gateway URLs (SECURITY.md section 2 classes), "
        "plus a property test that any accepted URL has the same host under urllib.parse and urllib3 | 0 accepted wrongly |",
        f"| read-only | every non-read (method, path) of IBKR's OpenAPI spec v2.29.0: {len(policy.NON_READS)} of "
        f"{len(policy.SPEC_PAIRS)} pairs; {tricks} path, method, identifier and query tricks; property tests | "
        "all refused before a byte is sent |",
        f"| nothing secret leaves | {len(canary.PLANTED)} canary slots x {commands} commands and reads x "
        f"{faults} scenarios, table/json/csv, with and without --debug, scanning stdout, stderr, logs, "
        "the audit file and every file in the state dir | 0 canary hits |",
        f"| audit fails closed and is tamper-evident | {audit_faults} fault and tamper tests (every single-byte "
        "edit and deletion, reorder, insert, torn line, truncated tail, disk full, unwritable dir, read-only fs, "
        "symlinked file and directories); 8 processes x 200 reads | every fault stops the call (exit 7) or is "
        "reported by 'ibgw audit verify'; 1,600 intent and 1,600 outcome records, 0 broken links |",
        f"| the audit log stays bounded and whole | {lifecycle} rotation and retention tests (edit, delete or "
        "reorder in a closed segment, deleted middle or oldest segment, truncated or deleted live segment, "
        "crash mid-rotation and mid-prune, rollback to an old checkpoint, deleted log, edited seal, records "
        "over 1 MiB, torn huge line, 220,000 parameter values); 4 processes x 100 reads at a 20,000-byte "
        "limit | every change reported with its segment and line, pruning never reported; total size under "
        "(keep + 1) x limit; a deleted or rolled-back log refused (exit 7) until 'ibgw audit acknowledge' |",
        f"| one redacting emitter, bounded answers | a walk of {walked} modules of ibgw/ and the "
        f"plugins for raw writes to stdout/stderr ({planted} planted violations found); "
        f"{hostile} hostile-gateway and hostile-plugin tests (16 MiB of [{{}},...], deep "
        "nesting, folded Set-Cookie, MAC spellings, escape sequences, formula cells, a "
        "sink that stores nothing) | a raw write outside the emitter fails the suite; every "
        "oversized answer is refused as answer-too-large within --timeout |",
    ]
    return "\n".join(lines)


def render(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{figures()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            print(
                "docs/security.md is stale: run python scripts/security_figures.py", file=sys.stderr
            )
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
