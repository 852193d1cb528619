"""docs/endpoints.md is exactly what scripts/gen_endpoints_doc.py generates from the
Endpoint declarations of the core and every installed plugin, and every undocumented
endpoint in it cites a source of shared/reference/cpapi-endpoints.md."""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "cpapi-endpoints.md"


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_endpoints_doc", ROOT / "scripts" / "gen_endpoints_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_endpoints_reference_is_current():
    # generated in a fresh process, as a developer runs it: plugins other tests
    # register in this worker must not change the table
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    code = (
        "import importlib.util, sys; s = importlib.util.spec_from_file_location('g', sys.argv[1]); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); sys.stdout.write(m.generate())"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "scripts" / "gen_endpoints_doc.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    ).stdout
    current = (ROOT / "docs" / "endpoints.md").read_text(encoding="utf-8")
    diff = "".join(
        list(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True)))[:40]
    )
    assert current == fresh, (
        "docs/endpoints.md is out of date with the Endpoint declarations; regenerate it with: "
        f".venv/bin/python scripts/gen_endpoints_doc.py\n{diff}"
    )


def test_the_check_mode_fails_on_a_stale_file(tmp_path):
    gen = _generator()
    stale = tmp_path / "endpoints.md"
    stale.write_text("# old\n", encoding="utf-8")
    original = gen.ROOT
    gen.ROOT = tmp_path  # relative_to() in the message
    try:
        assert "regenerate it with" in gen.stale_message(stale)
    finally:
        gen.ROOT = original
    assert gen.stale_message() is None or "regenerate" in gen.stale_message()


def test_every_undocumented_endpoint_cites_the_reference():
    if not REFERENCE.exists():
        pytest.fail(f"the endpoint reference is expected beside the repository at {REFERENCE}")
    sources = set(re.findall(r"^\| (S\d+) \|", REFERENCE.read_text(encoding="utf-8"), re.M))
    assert {"S1", "S11", "S12"} <= sources
    found = _generator().collect()
    undocumented = [e for e, _ in found.values() if e.provenance != "documented"]
    assert undocumented, "the news and fundamentals plugins declare undocumented endpoints"
    for endpoint in undocumented:
        cited = set(re.findall(r"\[(S\d+)", endpoint.evidence))
        assert cited and cited <= sources, (
            f"{endpoint.key}: evidence must cite a source of shared/reference "
            f"(cited {sorted(cited) or 'none'})"
        )


def test_removed_and_new_paths():
    table = (ROOT / "docs" / "endpoints.md").read_text(encoding="utf-8")
    # no evidence of a single item was ever seen: not called any more (issue 17)
    assert "/iserver/marketdata/news" not in table
    assert "| GET | `/iserver/news/portfolio` | undocumented |" in table
    assert "10.46.1l" in table
