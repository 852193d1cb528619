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

# -- gateway text on a terminal and in a spreadsheet ------------------------------------
# Escape sequences first (CSI, OSC, DCS/SOS/PM/APC strings, two-byte ESC sequences, and
# their 8-bit C1 forms), so that no parameter bytes are left behind; then every other
# C0/C1 control: line breaks and tabs become a space (a cell stays one line), the rest
# is dropped.
_ESCAPE = re.compile(
    "(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI
    "|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\\\|\x9c)?"  # OSC...
    "|\x1b[ -/]*[0-~]?"  # other ESC sequences (and a lone ESC)
)
_BREAKS = re.compile("[\t\n\x0b\x0c\r\x85]")
_RAW_IN_JSON = re.compile("[\x7f-\x9f]")


def clean_text(text: str) -> str:
    """``text`` without terminal escape sequences and C0/C1 control characters (line
    breaks and tabs become spaces). Gateway text in table output, one-line errors and
    notes passes through this, so an answer cannot move the cursor, retitle the
    terminal, hide text or forge lines."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub("", _BREAKS.sub(" ", _ESCAPE.sub("", text)))


def _clean_cell(value):
    return clean_text(value) if isinstance(value, str) else value


# Spreadsheet formula injection (OWASP "CSV Injection"): a cell that starts with one of
# these is taken as a formula by Excel, LibreOffice and Google Sheets. Such text cells
# get a leading ``'`` (shown as text, not evaluated). Numbers stay numbers: an int or
# float is never prefixed, and neither is a string that is a plain decimal number
# ("-3.5", "+2", "-1e-3"), which spreadsheets read as that number, not a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def csv_cell(value):
    """A CSV cell for ``value``: formula-looking text is prefixed with ``'``; a carriage
    return becomes a line feed (the writer, ending lines with ``\\n``, would leave a lone
    ``\\r`` unquoted, and readers take it for the end of the row)."""
    if isinstance(value, str):
        if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
            value = "'" + value
        if "\r" in value:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value


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
        columns.append(texts)
    if _CONTROL.search(" ".join(chain(headers, *columns))):
        headers = list(map(clean_text, headers))
        columns = [list(map(clean_text, texts)) for texts in columns]
    columns = [list(map(str.strip, texts)) for texts in columns]
    everything = " ".join(chain(headers, *columns))
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
        text = _json(data)
        if _RAW_IN_JSON.search(text):
            # the encoder escapes C0 controls but writes DEL and C1 (U+009B is a CSI to
            # some terminals) as they are; they can only be inside strings, so escaping
            # them keeps the JSON the same value
            text = _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return text + "\n"
    if fmt == "csv":
        cols = _columns(records, None) if records else list(columns)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(list(map(csv_cell, cols)))
        for record in records:
            row = []
            for c in cols:
                v = record.get(c)
                row.append(
                    ""
                    if v is None
                    else json.dumps(v, separators=(",", ":"))
                    if isinstance(v, dict | list)
                    else csv_cell(v)
                )
            writer.writerow(row)
        return buf.getvalue()
    if single and len(records) == 1:
        from tabulate import tabulate

        cols = _columns(records, columns)
        rows = [(_clean_cell(c), _clean_cell(_cell(records[0].get(c)))) for c in cols]
        return tabulate(rows, tablefmt="plain", disable_numparse=True) + "\n"
    if not records:
        return "(no rows)\n"
    cols = _columns(records, columns)
    if cols and all(type(c) is str for c in cols):
        table = _plain_table(records, cols)
        if table is not None:
            return table + "\n"
    rows = [[_clean_cell(_cell(r.get(c))) for c in cols] for r in records]
    from tabulate import tabulate

    headers = [_clean_cell(c) for c in cols]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True) + "\n"


WITHHELD = "ibgw: error: output withheld (redaction failed)\n"


class OutputClosed(SystemExit):
    """stdout went away (the reader closed the pipe, or it was never open): ibgw stops
    quietly with exit 0, as ``head`` expects of the command before it."""

    def __init__(self):
        super().__init__(0)


def _silence_stdout() -> None:
    # Python flushes stdout once more at exit; on a broken pipe that flush prints
    # "Exception ignored ... BrokenPipeError". Point the descriptor at /dev/null.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, ValueError, OSError):
        pass


def _write(text: str, err: bool) -> None:
    """Write ``text`` to the current stdout/stderr, whatever its encoding and state."""
    stream = sys.stderr if err else sys.stdout
    try:
        if stream is None:
            raise ValueError("no stream")
        try:
            stream.write(text)
        except UnicodeEncodeError:
            # An ASCII-only or legacy-encoded stream: show what it cannot encode as
            # \\xNN / \\uNNNN escapes instead of failing.
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))
        stream.flush()
    except (BrokenPipeError, ValueError, OSError) as exc:
        closed = isinstance(exc, BrokenPipeError | ValueError) or getattr(exc, "errno", 0) in (
            32,  # EPIPE
            9,  # EBADF
        )
        if not closed:
            raise
        if err:
            return  # nowhere left to report anything
        _silence_stdout()
        raise OutputClosed() from None


def emit(text: str, err: bool = False) -> None:
    """The one place ibgw writes to stdout (or stderr with ``err``): ``text`` exactly
    (add the newline yourself), after redaction. If redaction fails, ``text`` is
    withheld and one line says so on stderr (fail closed). A closed stdout ends the
    process quietly (:class:`OutputClosed`, exit 0); a stream that cannot encode a
    character gets an escape for it."""
    from . import redact

    try:
        safe = redact.safe_text(text)
    except Exception:
        _write(WITHHELD, True)
        return
    if safe:
        _write(safe, err)


# Warnings about this invocation (a plugin that failed to register its reads, a
# duplicate command). With table/CSV output each is one ``ibgw: warning:`` line on
# stderr; with ``-o json`` stderr carries at most one JSON object, so they are held here
# and go into the error object's ``warnings`` list if the command fails (on success they
# are not printed: ``ibgw plugins`` and ``ibgw doctor`` list every load error).
DEFERRED_WARNINGS: list[str] = []
MAX_DEFERRED = 50  # a long-running command (the MCP server) must not grow without end


def defer_warning(text: str) -> None:
    if len(DEFERRED_WARNINGS) < MAX_DEFERRED:
        DEFERRED_WARNINGS.append(text)


def warn(text: str, fmt: str) -> None:
    """Report one warning in the way ``fmt`` allows (see ``DEFERRED_WARNINGS``)."""
    if fmt == "json":
        defer_warning(text)
    else:
        emit(f"ibgw: warning: {clean_text(text)}\n", err=True)


def json_error(error: dict) -> str:
    """The one JSON object ``-o json`` writes to stderr for a failed command."""
    from . import redact

    payload = {"error": dict(error)}
    if DEFERRED_WARNINGS:
        payload["error"]["warnings"] = list(DEFERRED_WARNINGS)
    try:
        # value by value first: the text pass of emit then finds nothing to change
        # (a header pattern run over JSON text would eat the rest of its line)
        payload = redact.safe_data(payload)
    except redact.RedactionFailed:
        payload = {"error": {"state": None, "reason": "redaction-failed", "message": ""}}
    return json.dumps(payload, ensure_ascii=False) + "\n"


def error_text(exc, fmt: str) -> str:
    """One line (or a JSON error object with ``-o json``) for an ``IbgwError``."""
    if fmt == "json":
        info = exc.as_dict()
        error = {k: info[k] for k in ("state", "reason", "message", "hint")}
        if info.get("tried"):
            error["tried"] = info["tried"]
        return json_error(error)
    line = f"ibgw: {exc.message}"
    tried = getattr(exc, "tried", None)
    if tried:
        line += "; tried: " + ", ".join(tried)
    if exc.hint:
        line += f" ({exc.hint})"
    return clean_text(line) + "\n"


def emit_error(exc, fmt: str) -> None:
    emit(error_text(exc, fmt), err=True)
