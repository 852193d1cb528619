"""``ibgw mcp``: every installed read as a read-only MCP tool, over stdio or over the
SDK's Streamable HTTP transport on a loopback address (``--transport http``).

Tools are generated from the same :class:`ibgw.declarations.Read` declarations as the
CLI commands (``<category>_<read>``), plus ``session_status``. Every call goes through
:func:`ibgw.runner.run_read` with actor ``mcp``: audited, validated, paced, redacted.

Built on the low-level server of the official MCP Python SDK (``mcp`` 2.x,
``mcp.server.lowlevel.Server``): it lets us declare each tool's input schema,
output schema and annotations explicitly instead of deriving them from Python
signatures. This module imports the SDK at its top; only ``ibgw mcp`` imports it.

Error conventions:

* unknown tool, or arguments that violate the tool's input schema: a JSON-RPC
  error ``-32602`` (protocol error);
* malformed JSON on stdin: ``-32700`` (parse error), valid JSON that is not a
  JSON-RPC message: ``-32600``; the server keeps serving;
* a read that fails (session not usable, gateway down, not served, refused by the
  policy, audit unavailable, a bad value the schema could not catch): a tool
  result with ``isError: true`` and ``{"state", "reason", "message", "hint"}``;
* anything else: ``isError: true`` with reason ``internal-error`` and no traceback.

Results are capped (:data:`MAX_STRUCTURED_BYTES` of structured content, the text block
:data:`MAX_TEXT_CHARS`); what is left out is counted and said in the result.

Over HTTP every request needs ``Authorization: Bearer <token>`` (``IBGW_MCP_TOKEN`` or a
token generated once into the state directory) and a loopback ``Host``; an ``Origin``
header, when sent, must be the server's own (or one given with ``--allow-origin``).
Refused requests get 401 / 403 / 421 and leave a ``denied`` audit record.

Everything written to the client passes :mod:`ibgw.redact`; logs go to stderr.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import secrets
import socket
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from . import redact
from .errors import USABLE, ConfigError, IbgwError, UsageError

log = logging.getLogger("ibgw.mcp")

ACTOR = "mcp"
STATUS_TOOL = "session_status"
MAX_TEXT_ROWS = 40
MAX_TEXT_CHARS = 6000
#: The most structured content one tool result carries (compact JSON, UTF-8 bytes).
MAX_STRUCTURED_BYTES = 256 * 1024
MAX_NOTES = 20
MAX_NOTE_CHARS = 500
ANNOTATIONS = dict(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "choice": "string",
}
INSTRUCTIONS = (
    "Read-only access to an Interactive Brokers Client Portal Gateway running on this machine. "
    "Every tool only reads; none can place, change or cancel orders or move money. "
    "Call session_status first: when its state is manual_action_required, ask the user to log in "
    "(or refresh the login) in the gateway's web page; when unavailable, the gateway is not "
    "reachable. Failed calls return isError with state, reason, message and hint."
)
STATUS_DESCRIPTION = (
    "Is the broker session usable? Returns state (usable, manual_action_required or "
    "unavailable), a stable reason code, a message and a hint for the user. A session that is "
    "not usable is a normal answer here, not an error. Same as the CLI 'ibgw status'."
)


# -- schemas ---------------------------------------------------------------------------
def _param_description(p) -> str:
    parts = [p.help.rstrip()]
    if p.required:
        parts.append("Required.")
    if p.multiple:
        parts.append("A list of values.")
    if p.type == "choice":
        parts.append(f"One of: {', '.join(p.choices)}.")
    if p.pattern and p.type in ("str", "choice"):
        parts.append(f"Must fully match the regular expression {p.pattern}.")
    if p.minimum is not None:
        parts.append(f"Minimum {p.minimum:g}.")
    if p.maximum is not None:
        parts.append(f"Maximum {p.maximum:g}.")
    if p.default not in (None, (), []):
        parts.append(f"Default: {p.default}.")
    return " ".join(x for x in parts if x)


_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")
_UNPORTABLE = re.compile(r"\(\?(?![:=!]|<[=!])|\\[AZzG]|[*+?}]\+")


def _ignore_case(pattern: str) -> str | None:
    """``pattern`` with every ASCII letter matching both cases, for engines without
    inline flags (ECMA-262 has none). ``None`` when the pattern is too unusual to
    rewrite safely (escaped letters other than classes like ``\\d``, hex escapes,
    negated classes, ranges that mix letters and other characters)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt or (nxt.isalpha() and nxt not in "dDwWsSbBntrfv"):
                return None
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
                out.append(ch)
            elif pattern[i + 1 : i + 2] == "-" and pattern[i + 2 : i + 3] not in ("", "]"):
                lo, hi = ch, pattern[i + 2]
                if lo.isascii() and lo.isalpha() and hi.isascii() and hi.isalpha():
                    if lo.islower() != hi.islower():
                        return None
                    out.append(f"{lo.lower()}-{hi.lower()}{lo.upper()}-{hi.upper()}")
                elif hi == "\\" or any(c.isalpha() for c in map(chr, range(ord(lo), ord(hi) + 1))):
                    return None
                else:
                    out.append(f"{lo}-{hi}")
                i += 3
                continue
            elif ch.isascii() and ch.isalpha():
                out.append(ch.lower() + ch.upper())
            else:
                out.append(ch)
        elif ch == "[":
            if pattern[i + 1 : i + 2] == "^":
                return None  # a negated class would need the other case removed, not added
            in_class = True
            out.append(ch)
        elif ch.isascii() and ch.isalpha():
            out.append(f"[{ch.lower()}{ch.upper()}]")
        else:
            out.append(ch)
        i += 1
    return None if in_class else "".join(out)


def json_pattern(pattern: str) -> str | None:
    """A JSON-schema ``pattern`` (searched, ECMA-262 dialect) that accepts exactly the
    values ``re.fullmatch(pattern, value)`` accepts, or ``None`` when the Python
    pattern has no portable equivalent (the runner still checks every value)."""
    flags = _GLOBAL_FLAGS.match(pattern)
    if flags:
        if set(flags.group(1)) - {"i"}:
            return None
        pattern = pattern[flags.end() :]
    if _UNPORTABLE.search(pattern):
        return None
    if flags:
        pattern = _ignore_case(pattern)
        if pattern is None:
            return None
    anchored = f"^(?:{pattern})$"
    try:
        re.compile(anchored)
    except re.error:
        return None
    return anchored


def param_schema(p) -> dict:
    """The JSON schema of one :class:`ibgw.declarations.Param`."""
    item: dict[str, Any] = {"type": JSON_TYPES[p.type]}
    if p.type == "choice":
        item["enum"] = list(p.choices)
    if p.pattern and p.type in ("str", "choice"):
        # Param patterns must match the whole value; JSON-schema patterns search.
        portable = json_pattern(p.pattern)
        if portable is not None:
            item["pattern"] = portable
    if p.type in ("int", "float"):
        if p.minimum is not None:
            item["minimum"] = p.minimum
        if p.maximum is not None:
            item["maximum"] = p.maximum
    if p.multiple:
        schema: dict[str, Any] = {"type": "array", "items": item}
        if p.required:
            schema["minItems"] = 1
    else:
        schema = item
    schema["description"] = redact.text(_param_description(p))
    if p.default not in (None, (), []):
        schema["default"] = redact.data(list(p.default) if p.multiple else p.default)
    return schema


def input_schema(read) -> dict:
    """The tool input schema of a read: one property per parameter."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: param_schema(p) for p in read.params},
        "additionalProperties": False,
    }
    required = [p.name for p in read.params if p.required]
    if required:
        schema["required"] = required
    return schema


_META_PROPERTIES = {
    "provenance": {
        "type": ["string", "null"],
        "description": "documented or undocumented: where the endpoint used is described.",
    },
    "variant": {
        "type": ["string", "null"],
        "description": "The gateway endpoint (method and path) used.",
    },
    "session_state": {"type": "string", "enum": [USABLE]},
    "notes": {"type": "array", "items": {"type": "string"}},
}


def output_schema(read) -> dict:
    record = {"type": "object", "properties": {c: {} for c in read.columns}}
    if read.single:
        props = {"record": {**record, "type": ["object", "null"]}}
    else:
        props = {"records": {"type": "array", "items": record}, "count": {"type": "integer"}}
    extra = {
        "truncated": {
            "type": "boolean",
            "description": f"true when the answer was larger than the {_cap_text()} cap "
            "and records were left out (see total, omitted and notes).",
        },
        "total": {"type": "integer", "description": "Records the read produced."},
        "omitted": {"type": "integer", "description": "Records left out by the cap."},
    }
    return {
        "type": "object",
        "properties": {**props, **extra, **_META_PROPERTIES},
        "required": [*props, "session_state"],
    }


STATUS_OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["usable", "manual_action_required", "unavailable"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "hint": {"type": "string"},
        "build": {"type": ["string", "null"]},
        "backend": {"type": ["string", "null"]},
        "session_state": {"type": "string"},
    },
    "required": ["state", "reason", "message", "hint", "session_state"],
}


def tool_description(read) -> str:
    text = read.summary.rstrip()
    if read.description:
        text += "\n\n" + read.description.strip()
    shape = (
        "one record (structuredContent.record)"
        if read.single
        else "a list of records (structuredContent.records)"
    )
    if read.columns:
        shape += " with fields " + ", ".join(read.columns)
    text += f"\n\nRead-only. Returns {shape}. CLI equivalent: ibgw {read.category} {read.name}."
    return text


# -- the tool table ------------------------------------------------------------------------
class ToolTable:
    """The tools, built once at startup: MCP ``Tool`` objects, compiled argument
    validators and the read behind each tool."""

    def __init__(self, reads):
        from jsonschema import Draft202012Validator

        self.tools: list[types.Tool] = []
        self.reads: dict[str, Any] = {}
        self.validators: dict[str, Any] = {}
        self.schemas: dict[str, dict] = {}
        self.skipped: list[str] = []

        status_schema = {"type": "object", "properties": {}, "additionalProperties": False}
        self._add(
            STATUS_TOOL,
            "Session status",
            STATUS_DESCRIPTION,
            status_schema,
            STATUS_OUTPUT_SCHEMA,
            None,
            Draft202012Validator,
        )
        for read in sorted(reads, key=lambda r: r.tool_name):
            name = read.tool_name
            if name in self.schemas:
                self.skipped.append(f"{read.key}: tool name {name} is already taken")
                continue
            try:
                self._add(
                    name,
                    read.summary.rstrip("."),
                    tool_description(read),
                    input_schema(read),
                    output_schema(read),
                    read,
                    Draft202012Validator,
                )
            except Exception as exc:  # one odd declaration must not hide the others
                self.skipped.append(f"{read.key}: {type(exc).__name__}")
        self.result = types.ListToolsResult(tools=self.tools)

    def _add(self, name, title, description, schema, out_schema, read, validator_cls):
        # The schemas are generated here, valid by construction, and their patterns were
        # compiled by json_pattern: no metaschema check (it costs ~20 ms per tool).
        validator = validator_cls(_python_anchored(schema))
        self.tools.append(
            types.Tool(
                name=name,
                title=redact.text(title),
                description=redact.text(description),
                input_schema=schema,
                output_schema=out_schema,
                annotations=types.ToolAnnotations(title=redact.text(title), **ANNOTATIONS),
            )
        )
        self.validators[name] = validator
        self.schemas[name] = schema
        self.reads[name] = read

    def check_arguments(self, name: str, arguments: dict) -> dict:
        """Validate ``arguments`` against the tool's input schema; a violation is a
        JSON-RPC ``-32602`` error. ``null`` for an optional parameter means "not given"."""
        read = self.reads.get(name)
        if read is not None:
            required = {p.name for p in read.params if p.required}
            arguments = {k: v for k, v in arguments.items() if v is not None or k in required}
        error = next(
            iter(
                sorted(
                    self.validators[name].iter_errors(arguments),
                    key=lambda e: (len(e.path), str(e.validator)),
                )
            ),
            None,
        )
        if error is not None:
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=_safe_line(f"Invalid arguments for tool {name}: {_describe(error)}"),
            )
        return arguments


def _python_anchored(schema):
    """A copy of ``schema`` for our own (Python ``re``) validator: ``$`` also matches
    before a final newline in Python, not in JSON schema's ECMA-262 dialect, so the
    published ``^(?:...)$`` is checked as ``^(?:...)\\Z``."""
    if isinstance(schema, dict):
        out = {k: _python_anchored(v) for k, v in schema.items()}
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and pattern.endswith(")$"):
            out["pattern"] = pattern[:-1] + "\\Z"
        return out
    if isinstance(schema, list):
        return [_python_anchored(v) for v in schema]
    return schema


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.path) or "arguments"
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        missing = [
            k for k in expected if isinstance(error.instance, dict) and k not in error.instance
        ]
        return f"missing required argument {missing[0] if missing else ''}".rstrip()
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = (
            sorted(k for k in error.instance if k not in known)
            if isinstance(error.instance, dict)
            else []
        )
        allowed = ", ".join(sorted(known)) or "none"
        return f"unknown argument {_short(extra[0]) if extra else ''} (allowed: {allowed})"
    if kind == "type":
        return (
            f"{where}: expected {expected if isinstance(expected, str) else ' or '.join(expected)}"
        )
    if kind == "enum":
        return f"{where}: must be one of {', '.join(map(str, expected))}"
    if kind == "pattern":
        shown = expected[:-2] + "$" if str(expected).endswith("\\Z") else expected
        return f"{where}: does not match {shown}"
    if kind in ("minimum", "maximum"):
        return f"{where}: must be {'at least' if kind == 'minimum' else 'at most'} {expected}"
    if kind == "minItems":
        return f"{where}: needs at least {expected} value(s)"
    return f"{where}: invalid ({kind})"


def _short(value: Any, limit: int = 40) -> str:
    s = str(value)
    s = s if s.isprintable() else repr(s)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _safe_line(text: str, limit: int = 300) -> str:
    try:
        text = redact.safe_text(text)
    except Exception:
        return "invalid request"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- results ---------------------------------------------------------------------------------
def scrub(obj):
    """``obj`` after redaction, fail closed (raises ``RedactionFailed``).

    One text pass over the compact JSON finds any secret value or pattern; only when
    it finds one does the structural (slower, per-string) ``redact.data`` pass run.
    Secret *keys* are dropped by ``run_read`` already; ``redact.data`` re-checks them
    whenever anything looked secret."""
    try:
        dumped = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return redact.safe_data(obj)
    if redact.safe_text(dumped) == dumped:
        return obj
    return redact.safe_data(obj)


def _text_block(text: str) -> list:
    return [types.TextContent(type="text", text=text)]


def _cap_text() -> str:
    return f"{MAX_STRUCTURED_BYTES // 1024} KiB"


def _json_size(obj) -> int:
    return len(
        json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode(
            "utf-8", "surrogatepass"
        )
    )


def cap_records(records: list, budget: int) -> list:
    """The longest prefix of ``records`` whose compact JSON fits in ``budget`` bytes."""
    if _json_size(records) <= budget:
        return records
    size = 2  # the brackets
    for i, record in enumerate(records):
        size += _json_size(record) + (1 if i else 0)
        if size > budget:
            return records[:i]
    return records  # pragma: no cover - the whole list fitted after all


def _narrowing_hint(read) -> str:
    optional = [p.name for p in read.params if not p.required]
    how = (
        f"narrow the request with its parameters ({', '.join(optional)})"
        if optional
        else "narrow the request"
    )
    return f"{how}, or run 'ibgw {read.category} {read.name} -o json' for the whole answer"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def success_result(read, outcome) -> types.CallToolResult:
    from .output import render

    records = list(outcome.records)
    notes = [_clip(str(n), MAX_NOTE_CHARS) for n in outcome.notes]
    if outcome.provenance == "undocumented":
        notes.append(f"served by an undocumented endpoint ({outcome.variant})")
    if len(notes) > MAX_NOTES:
        notes = notes[: MAX_NOTES - 1] + [f"{len(notes) - MAX_NOTES + 1} more notes left out"]

    meta: dict[str, Any] = dict(
        provenance=outcome.provenance, variant=outcome.variant, session_state=USABLE
    )
    # room for the envelope (metadata, notes, the cap note) inside the cap
    budget = MAX_STRUCTURED_BYTES - _json_size({**meta, "notes": notes}) - 1024
    total = 1 if read.single and records else len(records)
    kept = cap_records(records[:1] if read.single else records, budget)
    omitted = total - len(kept)
    structured: dict[str, Any]
    if read.single:
        structured = {"record": kept[0] if kept else None}
    else:
        structured = {"records": kept, "count": len(kept)}
    if omitted:
        if read.single:
            cap_note = (
                f"the record was larger than the {_cap_text()} result cap and was left out; "
                + _narrowing_hint(read)
            )
        else:
            cap_note = (
                f"result capped at {_cap_text()}: {len(kept):,} of {total:,} records returned, "
                f"{omitted:,} left out; " + _narrowing_hint(read)
            )
        notes.append(cap_note)
        structured.update(truncated=True, total=total, omitted=omitted)
    structured.update(meta)
    if notes:
        structured["notes"] = notes

    shown = kept if read.single else kept[:MAX_TEXT_ROWS]
    text = render(shown, read.columns, "table", single=read.single).rstrip("\n")
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS].rsplit("\n", 1)[0] + "\n..."
    if not read.single and len(kept) > len(shown):
        text += (
            f"\n({len(shown)} of {len(kept)} rows shown; all {len(kept)} returned rows are "
            "in structuredContent.records)"
        )
    for note in notes:
        text += f"\nnote: {note}"
    return types.CallToolResult(
        content=_text_block(redact.safe_text(text)), structured_content=scrub(structured)
    )


def status_result(app, status) -> types.CallToolResult:
    record = {
        k: v
        for k, v in status.as_dict().items()
        if k in ("state", "reason", "message", "hint", "build")
    }
    try:
        record["backend"] = app.config.backend
    except Exception:
        record["backend"] = None
    record["session_state"] = status.state
    line = f"{status.state} ({status.reason}): {status.message}"
    if status.hint:
        line += f"\nhint: {status.hint}"
    return types.CallToolResult(
        content=_text_block(redact.safe_text(line)), structured_content=scrub(record)
    )


def error_result(state, reason, message, hint, extra: dict | None = None) -> types.CallToolResult:
    payload = {"state": state, "reason": reason, "message": message, "hint": hint or ""}
    if extra:
        payload.update(extra)
    line = f"{state or 'error'} ({reason}): {message}"
    if hint:
        line += f"\nhint: {hint}"
    try:
        payload, line = redact.safe_data(payload), redact.safe_text(line)
    except Exception:
        payload = {
            "state": None,
            "reason": "redaction-failed",
            "message": "output withheld (redaction failed)",
            "hint": "",
        }
        line = "error (redaction-failed): output withheld"
    return types.CallToolResult(
        content=_text_block(line), structured_content=payload, is_error=True
    )


def ibgw_error_result(exc: IbgwError) -> types.CallToolResult:
    tried = getattr(exc, "tried", None)
    hint = exc.hint
    if not hint and isinstance(exc, UsageError):
        hint = "Correct the argument (see the tool's input schema) and call again."
    return error_result(
        exc.state, exc.reason, exc.message, hint, {"tried": list(tried)} if tried else None
    )


def internal_error_result(exc: BaseException) -> types.CallToolResult:
    return error_result(
        None,
        "internal-error",
        f"internal error ({type(exc).__name__})",
        "See the server's stderr log; run 'ibgw --debug mcp' for details.",
    )


# -- the server ------------------------------------------------------------------------------
class IbgwMcp:
    """One MCP server over one :class:`ibgw.app.App` (shared transport, pacer, sinks)."""

    def __init__(self, app):
        self.app = app
        self.table = ToolTable(app.reads)
        from . import __version__

        self.server = Server(
            "ibgw",
            version=__version__,
            title="ibgw (IBKR gateway, read-only)",
            instructions=INSTRUCTIONS,
            get_tool_input_schema=self.table.schemas.get,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        # No tracing exporter here; skip the per-message OpenTelemetry span.
        self.server.middleware = []
        self._ready: anyio.Event | None = None
        self.token: str | None = None  # the bearer token (HTTP transport only)

    async def list_tools(self, ctx, params) -> types.ListToolsResult:
        return self.table.result

    async def call_tool(self, ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        name = params.name
        if name not in self.table.schemas:
            raise MCPError(
                code=types.INVALID_PARAMS, message=_safe_line(f"Unknown tool: {_short(name, 64)}")
            )
        arguments = self.table.check_arguments(name, dict(params.arguments or {}))
        if self._ready is not None:
            await self._ready.wait()
        try:
            if _progress_token(ctx, params) is None:
                return await anyio.to_thread.run_sync(self._call_sync, name, arguments)
            return await self._call_with_progress(ctx, name, arguments)
        except Exception as exc:  # pragma: no cover - _call_sync already catches
            return internal_error_result(exc)

    async def _call_with_progress(self, ctx, name: str, arguments: dict) -> types.CallToolResult:
        """Run the call in a worker thread while its progress (reported from that thread,
        or from the read's own worker threads) is sent to the client in order, as
        ``notifications/progress`` for the request's ``progressToken``."""
        send, receive = anyio.create_memory_object_stream[tuple](math.inf)
        loop = anyio.lowlevel.current_token()

        def report(progress, total, label) -> None:
            try:
                anyio.from_thread.run_sync(
                    send.send_nowait, (progress, total, label or None), token=loop
                )
            except Exception:  # the call is over, or the loop is closing
                pass

        result: list[types.CallToolResult] = []

        async def work() -> None:
            with send:
                result.append(
                    await anyio.to_thread.run_sync(self._call_sync, name, arguments, report)
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            async with receive:
                async for progress, total, label in receive:
                    try:
                        message = _safe_line(label, 120) if label else None
                        await ctx.session.report_progress(progress, total, message)
                    except Exception as exc:
                        log.debug("progress notification not sent (%s)", type(exc).__name__)
        return result[0]

    def _call_sync(self, name: str, arguments: dict, report=None) -> types.CallToolResult:
        read = self.table.reads[name]
        try:
            if read is None:
                from .status import check_status

                return status_result(self.app, check_status(self.app, actor=ACTOR))
            from .runner import reporting_progress, run_read

            if report is None:
                outcome = run_read(self.app, read, arguments, actor=ACTOR)
            else:
                with reporting_progress(report):
                    outcome = run_read(self.app, read, arguments, actor=ACTOR)
            return success_result(read, outcome)
        except IbgwError as exc:
            return ibgw_error_result(exc)
        except redact.RedactionFailed:
            return error_result(None, "redaction-failed", "output withheld (redaction failed)", "")
        except Exception as exc:
            log.error(
                "tool %s failed: internal error (%s)",
                name,
                type(exc).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return internal_error_result(exc)

    def warm_up(self) -> None:
        """Create the shared services once, before the first call: configuration,
        transport, pacer, audit sinks. A failure here is reported by every call."""
        try:
            self.app.config  # noqa: B018 - resolves and validates the configuration
            self.app.transport  # noqa: B018
            self.app.pacer  # noqa: B018
            self.app.audit_sinks()
        except IbgwError as exc:
            log.warning("ibgw mcp: %s", exc.message)
        except Exception as exc:
            log.warning("ibgw mcp: could not prepare the gateway (%s)", type(exc).__name__)

    async def run(self) -> None:
        """Serve stdio; the shared services warm up in a worker thread meanwhile, so the
        handshake and the tool list do not wait for them (tool calls do)."""
        self._ready = anyio.Event()

        async def warm_up() -> None:
            try:
                await anyio.to_thread.run_sync(self.warm_up)
            finally:
                self._ready.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(warm_up)
            async with stdio_server() as (read_stream, write_stream):
                await self.server.run(
                    _ErrorReplyingStream(read_stream, write_stream),
                    write_stream,
                    self.server.create_initialization_options(),
                )

    async def run_http(self, listener: HttpListener) -> None:
        """Serve Streamable HTTP on ``listener`` (uvicorn, the SDK's session manager)
        until interrupted; the shared services warm up meanwhile, as over stdio."""
        import uvicorn

        self._ready = anyio.Event()

        async def warm_up() -> None:
            try:
                await anyio.to_thread.run_sync(self.warm_up)
            finally:
                self._ready.set()

        config = uvicorn.Config(
            http_app(self, listener),
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(warm_up)
            await server.serve(sockets=[listener.sock])
            tg.cancel_scope.cancel()


def _progress_token(ctx, params):
    for meta in (getattr(ctx, "meta", None), getattr(params, "meta", None)):
        if isinstance(meta, dict):
            token = meta.get("progress_token", meta.get("progressToken"))
        else:
            token = getattr(meta, "progress_token", None)
        if token is not None:
            return token
    return None


# -- Streamable HTTP ------------------------------------------------------------------------
HTTP_PATH = "/mcp"
DEFAULT_PORT = 8931
TOKEN_ENV = "IBGW_MCP_TOKEN"
TOKEN_FILE = "mcp.token"
MIN_TOKEN_CHARS = 24
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]{" + str(MIN_TOKEN_CHARS) + ",512}")
_ORIGIN_RE = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:]{2,39}\])(?::[1-9][0-9]{0,4})?"
)
REFUSED_COMMAND = "mcp-http"


def check_http_host(host: str) -> str:
    """``host`` when it is an exact loopback name (the gateway URL's local hosts:
    ``127.0.0.1``, ``localhost``, ``::1``); a usage error otherwise, before any bind."""
    from .urlcheck import is_local_host

    if not is_local_host(host):
        raise UsageError(
            "mcp: --host must be 127.0.0.1, localhost or ::1 (the HTTP transport serves "
            "loopback only)",
            reason="invalid-host",
        )
    return "::1" if host == "[::1]" else host


def check_origins(origins) -> list[str]:
    """Extra allowed ``Origin`` values: exact ``scheme://host[:port]`` origins."""
    out = []
    for origin in origins or ():
        if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
            raise UsageError(
                "mcp: --allow-origin must be an exact origin such as http://localhost:3000 "
                "(scheme, lower-case host, optional port; no path)",
                reason="invalid-origin",
            )
        out.append(origin)
    return out


class HttpListener:
    """The bound loopback socket and what the server answers to on it."""

    def __init__(self, host: str, port: int, allow_origins=()):
        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        address = "::1" if host == "::1" else "127.0.0.1"  # 'localhost' binds 127.0.0.1
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise UsageError(
                f"mcp: cannot listen on {host} port {port} ({_os_error(exc)})",
                reason="cannot-listen",
                hint="Choose another --port (0 picks a free one).",
            ) from None
        sock.setblocking(False)
        self.sock = sock
        self.host = host
        self.port = sock.getsockname()[1]
        shown = "[::1]" if host == "::1" else host
        self.url = f"http://{shown}:{self.port}{HTTP_PATH}"
        names = ["localhost", "[::1]" if host == "::1" else "127.0.0.1"]
        self.allowed_hosts = [f"{n}:{self.port}" for n in names]
        self.allowed_origins = [f"http://{n}:{self.port}" for n in names] + list(allow_origins)

    def close(self) -> None:
        self.sock.close()


def _os_error(exc: OSError) -> str:
    import errno

    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def load_token(app) -> tuple[str, bool]:
    """The bearer token and whether it was generated just now. ``IBGW_MCP_TOKEN`` wins;
    otherwise ``mcp.token`` in the state directory (0600, never through a symlink),
    created with a fresh random token on first start."""
    env = (getattr(app, "environ", None) or os.environ).get(TOKEN_ENV)
    if env is not None:
        if not _TOKEN_RE.fullmatch(env):
            raise ConfigError(
                f"mcp: {TOKEN_ENV} must be {MIN_TOKEN_CHARS} to 512 characters of "
                "A-Z a-z 0-9 . _ ~ + / = -",
                reason="invalid-token",
            )
        return env, False
    from .audit import AuditError, _open_dir, _open_file

    def fail(message: str) -> ConfigError:
        return ConfigError(
            f"mcp: {message.removeprefix('audit unavailable: ')}",
            reason="token-unavailable",
            hint=f"Check the state directory (ibgw config show), or set {TOKEN_ENV}.",
        )

    try:
        dir_fd = _open_dir(app.config.state_dir, create=True)
    except AuditError as exc:
        raise fail(exc.message) from None
    try:
        try:
            fd = _open_file(dir_fd, TOKEN_FILE, os.O_RDONLY, "mcp token file")
        except FileNotFoundError:
            fd = None
        except AuditError as exc:
            raise fail(exc.message) from None
        if fd is not None:
            try:
                raw = os.read(fd, 1024).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            if not _TOKEN_RE.fullmatch(raw):
                raise ConfigError(
                    f"mcp: the token file {TOKEN_FILE} in the state directory is not valid",
                    reason="invalid-token",
                    hint="Delete it to have a new token generated, or set " + TOKEN_ENV + ".",
                )
            return raw, False
        token = secrets.token_urlsafe(32)
        try:
            fd = _open_file(
                dir_fd, TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "mcp token file"
            )
        except FileExistsError:  # another server created it meanwhile: use that one
            os.close(dir_fd)
            dir_fd = None
            return load_token(app)
        except AuditError as exc:
            raise fail(exc.message) from None
        try:
            os.write(fd, token.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return token, True
    except OSError as exc:
        raise fail(f"cannot use the token file ({_os_error(exc)})") from None
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


class BearerGuard:
    """ASGI middleware in front of the MCP endpoint: a loopback ``Host`` and a known
    ``Origin`` (DNS rebinding), then the bearer token (compared in constant time).
    A refusal is answered (421 / 403 / 401, a JSON-RPC error body the SDK client
    shows) and audited as a ``denied`` record without the token or any header."""

    def __init__(self, inner, token: str, security, auditor):
        from mcp.server.transport_security import TransportSecurityMiddleware

        self.inner = inner
        self._token = token.encode("ascii")
        self._security = TransportSecurityMiddleware(security)
        self.auditor = auditor

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.inner(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets: not served
            await send({"type": "websocket.close", "code": 1008})
            return
        from starlette.requests import Request

        refused = await self._security.validate_request(Request(scope), is_post=False)
        if refused is not None:
            reason = "foreign-host" if refused.status_code == 421 else "foreign-origin"
            await self._refuse(scope, receive, send, refused.status_code, reason)
            return
        reason = self._check_token(scope)
        if reason is not None:
            await self._refuse(scope, receive, send, 401, reason)
            return
        await self.inner(scope, receive, send)

    def _check_token(self, scope) -> str | None:
        given = [v for k, v in scope.get("headers", ()) if k == b"authorization"]
        if not given:
            return "missing-token"
        scheme, _, credential = given[0].strip().partition(b" ")
        ok = len(given) == 1 and scheme.lower() == b"bearer"
        # compare_digest even when the scheme is wrong: no early exit
        same = hmac.compare_digest(credential.strip(), self._token)
        return None if ok and same else "invalid-token"

    async def _refuse(self, scope, receive, send, status: int, reason: str) -> None:
        from starlette.responses import Response

        path = HTTP_PATH if scope.get("path") == HTTP_PATH else "(other)"
        method = scope.get("method", "")
        method = method if method in ("GET", "POST", "DELETE", "PUT", "OPTIONS", "HEAD") else "?"
        try:
            await anyio.to_thread.run_sync(
                self.auditor.denied, REFUSED_COMMAND, method, path, reason
            )
        except Exception as exc:  # pragma: no cover - denied() never raises
            log.warning("ibgw mcp: refusal not audited (%s)", type(exc).__name__)
        messages = {
            "missing-token": "unauthorized: this server needs 'Authorization: Bearer <token>'",
            "invalid-token": "unauthorized: the bearer token is not this server's",
            "foreign-origin": "forbidden: requests from this Origin are refused",
            "foreign-host": "misdirected: the Host header is not this loopback server",
        }
        body = types.JSONRPCError(
            jsonrpc="2.0",
            id=None,
            error=types.ErrorData(code=types.INVALID_REQUEST, message=messages[reason]),
        )
        headers = {"WWW-Authenticate": 'Bearer realm="ibgw"'} if status == 401 else None
        log.warning("ibgw mcp: refused an HTTP request (%s)", reason)
        response = Response(
            body.model_dump_json(by_alias=True, exclude_unset=True),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )
        await response(scope, receive, send)


def http_app(mcp: IbgwMcp, listener: HttpListener):
    """The ASGI application: the SDK's Streamable HTTP session manager at ``/mcp``
    (its own Host/Origin check on too), behind :class:`BearerGuard`."""
    import contextlib

    from mcp.server.streamable_http_manager import (
        StreamableHTTPASGIApp,
        StreamableHTTPSessionManager,
    )
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Route

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(listener.allowed_hosts),
        allowed_origins=list(listener.allowed_origins),
    )
    manager = StreamableHTTPSessionManager(app=mcp.server, security_settings=security)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with manager.run():
            yield

    starlette = Starlette(
        routes=[Route(HTTP_PATH, endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan
    )
    return BearerGuard(starlette, mcp.token, security, mcp.app.auditor(ACTOR))


class _ErrorReplyingStream:
    """The stdio read stream, answering what the SDK would silently drop: a line that is
    not JSON gets ``-32700``, JSON that is not a JSON-RPC message gets ``-32600``."""

    def __init__(self, inner, write_stream):
        self._inner = inner
        self._write = write_stream

    @property
    def last_context(self):
        return getattr(self._inner, "last_context", None)

    async def receive(self):
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            await self._reply(item)

    async def _reply(self, exc: Exception) -> None:
        parse = any(e.get("type") == "json_invalid" for e in _errors_of(exc))
        code, message = (
            (types.PARSE_ERROR, "Parse error")
            if parse
            else (types.INVALID_REQUEST, "Invalid Request")
        )
        error = types.JSONRPCError(
            jsonrpc="2.0", id=None, error=types.ErrorData(code=code, message=message)
        )
        try:
            await self._write.send(SessionMessage(error))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.aclose()
        return None


def _errors_of(exc: Exception) -> list[dict]:
    try:
        return list(exc.errors())  # pydantic ValidationError
    except Exception:
        return []


def build(app) -> IbgwMcp:
    """The server for ``app`` with its tool table built (used by ``serve`` and tests)."""
    return IbgwMcp(app)


def _prepare(app) -> None:
    from .logs import install_logging

    install_logging(bool(app.flags.get("debug")))
    redact.load_plugin_rules(app.pm)


def serve(app) -> None:
    """Run ``ibgw mcp`` on stdin/stdout until the client closes stdin."""
    _prepare(app)
    mcp = build(app)
    for message in mcp.table.skipped:
        log.warning("ibgw mcp: tool not served: %s", message)
    try:
        anyio.run(mcp.run)
    except KeyboardInterrupt:
        pass


def serve_http(app, host: str, port: int, allow_origins=()) -> None:
    """Run ``ibgw mcp --transport http`` on a loopback address until interrupted.
    Host, port and origins are checked (usage errors, exit 2) before anything binds;
    the URL is printed on stderr, and the token too when it was generated just now."""
    from .output import emit

    host = check_http_host(host)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError("mcp: --port must be 0 to 65535", reason="invalid-port")
    origins = check_origins(allow_origins)
    _prepare(app)
    app.config  # noqa: B018 - a configuration error is reported before anything binds
    listener = HttpListener(host, port, origins)
    try:
        token, fresh = load_token(app)
        if fresh:
            emit(
                "ibgw mcp: a bearer token was generated for this server and stored in the "
                f"state directory; it is shown only now:\n  {token}\n",
                err=True,
            )
        redact.add_secret(token)
        mcp = build(app)
        mcp.token = token
        for message in mcp.table.skipped:
            log.warning("ibgw mcp: tool not served: %s", message)
        emit(f"ibgw mcp: serving MCP (Streamable HTTP) at {listener.url}\n", err=True)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal;
        # ending with KeyboardInterrupt there makes a stop by SIGTERM exit 0 like Ctrl-C,
        # with the interpreter's exit handlers run (the audit log is synced at exit).
        previous = _set_sigterm(_interrupt)
        try:
            anyio.run(mcp.run_http, listener)
        except KeyboardInterrupt:
            pass
        except BaseExceptionGroup as group:  # the interrupt, raised inside the task group
            _, rest = group.split(KeyboardInterrupt)
            if rest is not None:
                raise
        finally:
            _set_sigterm(previous)
    finally:
        listener.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _set_sigterm(handler):
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    if handler is None:
        return None
    return signal.signal(signal.SIGTERM, handler)


__all__ = [
    "ANNOTATIONS",
    "IbgwMcp",
    "build",
    "input_schema",
    "output_schema",
    "param_schema",
    "serve",
    "serve_http",
]
