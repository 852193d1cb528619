"""Rendering records as table, JSON or CSV, and writing every output through redaction.

Nothing reaches stdout or stderr except through :func:`emit`; if redaction fails,
nothing is written (fail closed).
"""

from __future__ import annotations

import csv
import io
import json
import sys


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else repr(value)
    return value


def _columns(records: list[dict], columns) -> list[str]:
    if columns:
        return list(columns)
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


def render(records, columns=(), fmt: str = "table", single: bool = False) -> str:
    """Render ``records`` (a list of dicts) in ``fmt``. ``single`` renders one record
    as key/value pairs (table) or a JSON object (json)."""
    records = list(records) if isinstance(records, list | tuple) else [records]
    if fmt == "json":
        data = records[0] if single and len(records) == 1 else records
        return json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n"
    if fmt == "csv":
        cols = _columns(records, None) if records else list(columns)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for record in records:
            row = []
            for c in cols:
                v = record.get(c)
                row.append(
                    ""
                    if v is None
                    else json.dumps(v, separators=(",", ":"))
                    if isinstance(v, dict | list)
                    else v
                )
            writer.writerow(row)
        return buf.getvalue()
    from tabulate import tabulate

    if single and len(records) == 1:
        cols = _columns(records, columns)
        rows = [(c, _cell(records[0].get(c))) for c in cols]
        return tabulate(rows, tablefmt="plain", disable_numparse=True) + "\n"
    if not records:
        return "(no rows)\n"
    cols = _columns(records, columns)
    rows = [[_cell(r.get(c)) for c in cols] for r in records]
    return tabulate(rows, headers=cols, tablefmt="simple", disable_numparse=True) + "\n"


def emit(text: str, err: bool = False) -> None:
    """Write ``text`` to stdout (or stderr) after redaction; write nothing if
    redaction fails."""
    from . import redact

    try:
        safe = redact.safe_text(text)
    except Exception:
        safe = "ibgw: error: output withheld (redaction failed)\n" if err else ""
        if not err:
            sys.stderr.write("ibgw: error: output withheld (redaction failed)\n")
            return
    stream = sys.stderr if err else sys.stdout
    stream.write(safe)
    stream.flush()


def error_text(exc, fmt: str) -> str:
    """One line (or a JSON error object with ``-o json``) for an ``IbgwError``."""
    if fmt == "json":
        info = exc.as_dict()
        payload = {"error": {k: info[k] for k in ("state", "reason", "message", "hint")}}
        if info.get("tried"):
            payload["error"]["tried"] = info["tried"]
        return json.dumps(payload, ensure_ascii=False) + "\n"
    line = f"ibgw: {exc.message}"
    tried = getattr(exc, "tried", None)
    if tried:
        line += "; tried: " + ", ".join(tried)
    if exc.hint:
        line += f" ({exc.hint})"
    return line + "\n"


def emit_error(exc, fmt: str) -> None:
    emit(error_text(exc, fmt), err=True)
