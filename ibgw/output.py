"""Rendering records as table, JSON or CSV, and writing every output through redaction.

Nothing reaches stdout or stderr except through :func:`emit`; if redaction fails,
nothing is written (fail closed).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from itertools import chain


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else repr(value)
    return value


# -- JSON ------------------------------------------------------------------------------
# json.dumps(indent=2) runs the pure-Python encoder; the C encoder runs only without
# indent. For flat records (str keys; str, int, float, bool or None values) the indented
# layout is fixed, so each record is C-encoded with the separators the indented encoder
# would write between its items, and only the braces are placed by hand.
_FLAT = frozenset({str, int, float, bool, type(None)})
_RECORD_IN_LIST = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",\n    ", ": ")
)
_RECORD_ALONE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",\n  ", ": "))


def _flat_records(records) -> bool:
    """True if every record is a non-empty dict with str keys and flat values."""
    return (
        set(map(type, records)) == {dict}
        and all(records)
        and set(map(type, set().union(*records))) == {str}
        and set(map(type, chain.from_iterable(map(dict.values, records)))) <= _FLAT
    )


def _json(data) -> str:
    """``json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False)``."""
    try:
        if type(data) is list and data and _flat_records(data):
            encode = _RECORD_IN_LIST.encode
            body = ",\n  ".join(["{\n    " + encode(r)[1:-1] + "\n  }" for r in data])
            return "[\n  " + body + "\n]"
        if type(data) is dict and data and _flat_records([data]):
            return "{\n  " + _RECORD_ALONE.encode(data)[1:-1] + "\n}"
    except ValueError:  # NaN or infinity: the encoder below raises its own error
        pass
    return json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False)


# -- table -----------------------------------------------------------------------------
# tabulate spends microseconds on every cell (type inference, ANSI stripping, padding
# through str.format). With disable_numparse every column of the "simple" format is a
# left-aligned text column, so for cells that are plain text (no control characters, hence
# no ANSI codes, line breaks or tabulate's separating line; one column per character, or
# wide-character support off) the layout is fixed: each column as wide as its widest
# stripped cell or its header plus two, cells left-justified, two spaces between columns,
# trailing spaces cut. Anything else goes to tabulate.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _cell_text(value) -> str | None:
    """What tabulate prints for the cell ``_cell(value)`` in a text column, or None
    for a value of another type (tabulate then formats it)."""
    kind = value.__class__
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is float:
        return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else repr(value)
    if kind is int or kind is bool:
        return str(value)
    if kind is dict or kind is list:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return None


def _plain_table(records: list[dict], headers: list[str]) -> str | None:
    """``tabulate(rows, headers, tablefmt="simple", disable_numparse=True)`` of the
    rows ``render`` builds from ``records``, or None when a cell or header is not plain
    text (then tabulate lays the table out)."""
    columns = []
    for header in headers:
        texts = list(map(_cell_text, [r.get(header) for r in records]))
        if None in texts:
            return None
        columns.append(list(map(str.strip, texts)))
    everything = " ".join(chain(headers, *columns))  # stripping removes no control character
    if _CONTROL.search(everything):
        return None
    if not everything.isascii():
        import tabulate

        if tabulate.wcwidth is not None and tabulate.WIDE_CHARS_MODE:
            return None
    widths = [
        max(len(header) + 2, max(map(len, texts)))
        for header, texts in zip(headers, columns, strict=True)
    ]
    line = "  ".join(f"%-{w}s" for w in widths)
    lines = [(line % tuple(headers)).rstrip(), "  ".join("-" * w for w in widths).rstrip()]
    lines += map(str.rstrip, map(line.__mod__, zip(*columns, strict=True)))
    return "\n".join(lines)


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
        return _json(data) + "\n"
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
    if single and len(records) == 1:
        from tabulate import tabulate

        cols = _columns(records, columns)
        rows = [(c, _cell(records[0].get(c))) for c in cols]
        return tabulate(rows, tablefmt="plain", disable_numparse=True) + "\n"
    if not records:
        return "(no rows)\n"
    cols = _columns(records, columns)
    if cols and all(type(c) is str for c in cols):
        table = _plain_table(records, cols)
        if table is not None:
            return table + "\n"
    rows = [[_cell(r.get(c)) for c in cols] for r in records]
    from tabulate import tabulate

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
