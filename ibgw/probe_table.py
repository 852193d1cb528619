"""The probe table: which endpoint variant of each read ``ibgw probe`` found working,
kept per gateway and build in the state directory.

:mod:`ibgw.probe` writes it; the read context (:meth:`ibgw.runner.ReadContext.variants`)
and ``ibgw doctor`` read it. It lives below both so that neither imports the other.
"""

from __future__ import annotations

import json
import os
import time

PROBE_FILE = "probe.json"


def _path(app) -> str:
    return os.path.join(app.config.state_dir, PROBE_FILE)


def _load(app) -> dict:
    try:
        with open(_path(app), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def probe_result_for(app, read) -> dict | None:
    """The probe row of ``read`` for this gateway, or ``None`` if never probed."""
    entry = _load(app).get(app.cache_key())
    if not isinstance(entry, dict):
        return None
    result = (entry.get("reads") or {}).get(read.key)
    return result if isinstance(result, dict) else None


def last_probe(app) -> dict | None:
    """The last probe of this gateway: ``{"build", "time", "reads": {key: row}}``."""
    entry = _load(app).get(app.cache_key())
    return entry if isinstance(entry, dict) else None


def save_probe(app, build, rows: list[dict]) -> None:
    """Record ``rows`` as this gateway's probe table (atomically replaces the file)."""
    data = _load(app)
    data[app.cache_key()] = {
        "build": build,
        "time": int(time.time()),
        "reads": {r["read"]: r for r in rows},
    }
    os.makedirs(app.config.state_dir, mode=0o700, exist_ok=True)
    tmp = _path(app) + f".{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, _path(app))
