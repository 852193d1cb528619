"""No invented endpoints: every endpoint a read declares (built-in or any installed
plugin) is either in IBKR's OpenAPI spec v2.29.0 as ``documented``, or
``undocumented`` with evidence, and none is refused by the read-only policy."""

import json
import re
from pathlib import Path

import pytest

from ibgw import endpoints as core_endpoints
from ibgw.plugins import collect_reads, get_plugin_manager
from ibgw.policy import is_denied

SPEC = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "ibkr-cpapi-openapi-2.29.0.json"
)


def _norm(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


@pytest.fixture(scope="module")
def spec_pairs():
    if not SPEC.exists():
        pytest.fail(f"the IBKR spec is expected beside the repository at {SPEC}")
    paths = json.loads(SPEC.read_text())["paths"]
    return {
        (method.upper(), _norm(path))
        for path, ops in paths.items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }


def all_endpoints():
    pm = get_plugin_manager(load_entrypoints=True)
    reads = collect_reads(pm)
    found = {(e.key, e) for e in core_endpoints.ALL}
    for read in reads:
        found |= {(e.key, e) for e in read.endpoints}
    return sorted(found, key=lambda pair: pair[0])


ENDPOINTS = all_endpoints()


def test_every_installed_read_declares_endpoints():
    pm = get_plugin_manager(load_entrypoints=True)
    for read in collect_reads(pm):
        assert read.endpoints, f"{read.key} declares no endpoints"


@pytest.mark.parametrize("key,endpoint", ENDPOINTS, ids=[k for k, _ in ENDPOINTS])
def test_endpoint_provenance(key, endpoint, spec_pairs):
    in_spec = (endpoint.method, _norm(endpoint.path)) in spec_pairs
    if endpoint.provenance == "documented":
        assert in_spec, f"{key} is declared documented but is not in IBKR's spec"
    else:
        assert not in_spec, f"{key} is in the spec: declare it documented"
        assert len(endpoint.evidence) >= 20, f"{key} needs evidence (which source showed it)"
    assert is_denied(endpoint.method, endpoint.path) is None, f"{key} is a write the policy refuses"
