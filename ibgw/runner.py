"""Running a read: the one path shared by the CLI and the MCP server.

``run_read`` validates parameters, writes the audit intent record (the read does
not happen if no sink can write it), calls the plugin's fetch function with a
:class:`ReadContext`, shapes the records through the read's schema (unknown
fields dropped), redacts them, and writes the outcome record.
"""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .declarations import Param, Read, Result, resolve
from .errors import IbgwError, NotServed, PolicyRefused, Unavailable, UsageError


@dataclass
class ReadOutcome:
    read: Read
    records: list[dict]
    single: bool = False
    provenance: str | None = None
    variant: str | None = None
    notes: list[str] = field(default_factory=list)
    varied: bool = False  # the endpoint was chosen among variants (ctx.variants)
    tried: list[str] = field(default_factory=list)  # variants that were not served first


# -- parameters ---------------------------------------------------------------
def _convert(param: Param, value):
    label = param.name.replace("_", "-")
    try:
        if param.type == "int":
            value = int(value)
        elif param.type == "float":
            value = float(value)
        elif param.type == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            else:
                value = bool(value)
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{label}: expected {param.type}", reason="invalid-parameter") from None
    if param.type == "float" and value != value:  # NaN
        raise UsageError(f"{label}: expected a number", reason="invalid-parameter")
    if param.type == "choice" and value not in param.choices:
        raise UsageError(
            f"{label}: must be one of {', '.join(param.choices)}", reason="invalid-parameter"
        )
    if param.pattern and not re.fullmatch(param.pattern, str(value)):
        shown = str(value) if len(str(value)) <= 32 and str(value).isprintable() else "value"
        raise UsageError(f"{label}: invalid value {shown!r}", reason="invalid-parameter")
    if param.minimum is not None and value < param.minimum:
        raise UsageError(f"{label}: must be at least {param.minimum:g}", reason="invalid-parameter")
    if param.maximum is not None and value > param.maximum:
        raise UsageError(f"{label}: must be at most {param.maximum:g}", reason="invalid-parameter")
    return value


def validate_params(read: Read, given: dict) -> dict:
    """Convert and check ``given`` against the read's declared parameters."""
    unknown = set(given) - {p.name for p in read.params}
    if unknown:
        raise UsageError(f"unknown parameter {sorted(unknown)[0]}", reason="invalid-parameter")
    out = {}
    for param in read.params:
        value = given.get(param.name)
        if value is None or (param.multiple and value in ((), [])):
            if param.required:
                raise UsageError(
                    f"{param.name.replace('_', '-')}: required", reason="invalid-parameter"
                )
            out[param.name] = list(param.default or ()) if param.multiple else param.default
            continue
        if param.multiple:
            values = value if isinstance(value, list | tuple) else [value]
            out[param.name] = [_convert(param, v) for v in values]
        else:
            out[param.name] = _convert(param, value)
    return out


# -- the context plugins see ----------------------------------------------------
class Progress:
    """A progress bar on stderr when stderr is a terminal; silent otherwise."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and (time.monotonic() - self._last > 0.1 or self.done >= self.total):
            self._last = time.monotonic()
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (len(self.label) + 50) + "\r")
            sys.stderr.flush()


class ReadContext:
    """What a fetch function receives: the gateway facade and helpers."""

    def __init__(self, app, gateway, read: Read, actor: str):
        self.app = app
        self._gateway = gateway
        self.read = read
        self.actor = actor
        self.notes: list[str] = []
        self.provenance: str | None = None
        self.variant: str | None = None
        self.tried: list[str] = []

    @property
    def gateway(self):
        return self._gateway

    @property
    def config(self):
        return self.app.config

    @property
    def output(self) -> str:
        """The output format the user asked for (``table``, ``json`` or ``csv``)."""
        return self.app.output

    def cache_key(self, *parts) -> str:
        """A cache key scoped to this backend, gateway and scenario."""
        return self.app.cache_key(*parts)

    def call(self, endpoint, **kw):
        return self._gateway.call(endpoint, **kw)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def progress(self, total: int, label: str = "") -> Progress:
        enabled = self.actor == "cli" and sys.stderr.isatty() and total > 1
        return Progress(total, label or self.read.key, enabled)

    def parallel(self, fn, items, workers: int = 4) -> list:
        """``[fn(item) for item in items]`` with up to ``workers`` calls in flight;
        the pacer keeps the rate within IBKR's limits."""
        items = list(items)
        if len(items) <= 1 or workers <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items))

    @property
    def cache(self):
        return self.app.cache

    def resolve_symbol(self, symbol: str, sec_type: str = "STK", exchange: str | None = None):
        from .symbols import resolve_symbol

        return resolve_symbol(self, symbol, sec_type=sec_type, exchange=exchange)

    def accounts(self) -> list[str]:
        from .symbols import account_ids

        return account_ids(self)

    def account(self, explicit: str | None = None) -> str:
        from .symbols import choose_account

        return choose_account(self, explicit)

    def variants(self, endpoints, attempt):
        """Try endpoint variants in order of preference: ``attempt(endpoint)`` returns
        the records or raises :class:`NotServed`. Undocumented variants are skipped
        when ``allow_undocumented`` is off; the variant ``ibgw probe`` found working on
        this gateway is tried first (the others still follow: a build can change after
        a probe). Raises NotServed listing every variant tried."""
        from .probe import probe_result_for

        allow_undoc = getattr(self.config, "allow_undocumented", True)
        known = probe_result_for(self.app, self.read)
        tried, last = [], None
        ordered = list(endpoints)
        if known and known.get("variant") in [e.key for e in ordered]:
            ordered.sort(key=lambda e: e.key != known["variant"])
        for endpoint in ordered:
            if endpoint.provenance == "undocumented" and not allow_undoc:
                tried.append(f"{endpoint.key} (undocumented, disabled)")
                continue
            try:
                result = attempt(endpoint)
            except NotServed as exc:
                tried.append(f"{endpoint.key} ({exc.reason})")
                last = exc
                continue
            self.provenance, self.variant, self.tried = endpoint.provenance, endpoint.key, tried
            return result
        reason = last.reason if last is not None and last.reason == "not-entitled" else "not-served"
        raise NotServed(
            f"this gateway build does not serve {self.read.key} (tried {len(tried)} variants)",
            reason=reason,
            tried=tried,
            hint="Run 'ibgw probe' to see which reads this gateway serves.",
        )


# -- shaping --------------------------------------------------------------------
_SCHEMAS: dict = {}  # schema class -> its many=True instance (dumping keeps no state)


def _schema(schema_cls):
    schema = _SCHEMAS.get(schema_cls)
    if schema is None:
        # Building a marshmallow schema deep-copies its fields: once per class, not per read.
        schema = _SCHEMAS[schema_cls] = schema_cls(many=True)
    return schema


_SHAPE_CHUNK = 1000  # records shaped between two looks at the deadline


def _past(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        from .gateway import error_for

        raise error_for("timeout")


def _shape(read: Read, raw, deadline: float | None = None) -> list[dict]:
    """The records of ``raw`` through the read's schema (or its columns), done by
    ``deadline`` (a ``time.monotonic()`` instant: the read's last call's deadline,
    so ``--timeout`` bounds parsing and shaping too) or ``Unavailable``/``timeout``."""
    records = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    schema_cls = resolve(read.schema)
    _past(deadline)
    if schema_cls is not None:
        from marshmallow import ValidationError

        schema = _schema(schema_cls)
        try:
            if len(records) <= _SHAPE_CHUNK:
                shaped = schema.dump(records)
            else:
                shaped = []
                for start in range(0, len(records), _SHAPE_CHUNK):
                    shaped += schema.dump(records[start : start + _SHAPE_CHUNK])
                    _past(deadline)
        except (ValueError, TypeError, AttributeError, ValidationError):
            raise Unavailable(
                "the gateway's answer did not have the expected shape",
                reason="malformed-response",
                hint="Run 'ibgw probe' and report the gateway build.",
            ) from None
        _past(deadline)
        return shaped
    if read.columns:
        return [{c: r.get(c) for c in read.columns} for r in records if isinstance(r, dict)]
    return [r for r in records if isinstance(r, dict)]


def _audit_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if v not in (None, [], ())}


def run_audited(app, command: str, params: dict, actor: str, fn):
    """Run ``fn(auditor)`` between an audit intent and an outcome record."""
    auditor = app.auditor(actor)
    call_id = auditor.intent(command, _audit_params(params))
    started = time.monotonic()
    try:
        result = fn(auditor)
    except IbgwError as exc:
        outcome = "denied" if isinstance(exc, PolicyRefused) else "error"
        auditor.outcome(
            call_id,
            command,
            outcome,
            state=exc.state,
            reason=exc.reason,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        raise
    except BaseException as exc:
        auditor.outcome(
            call_id,
            command,
            "error",
            reason=type(exc).__name__,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        raise
    rows = len(result.records) if isinstance(result, ReadOutcome) else None
    provenance = result.provenance if isinstance(result, ReadOutcome) else None
    auditor.outcome(
        call_id,
        command,
        "ok",
        state="usable",
        rows=rows,
        provenance=provenance,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    return result


def run_read(app, read: Read, params: dict, actor: str = "cli") -> ReadOutcome:
    from . import redact

    values = validate_params(read, params)

    def go(auditor):
        gateway = app.gateway(read=read, auditor=auditor, command=read.key)
        ctx = ReadContext(app, gateway, read, actor)
        fetch = resolve(read.fetch)
        raw: Any = fetch(ctx, **values)
        notes = list(ctx.notes)
        provenance, variant = ctx.provenance, ctx.variant
        varied = ctx.variant is not None
        if isinstance(raw, Result):
            notes += raw.notes
            provenance = raw.provenance or provenance
            variant = raw.variant or variant
            raw = raw.records
        if provenance is None and len(read.endpoints) == 1:
            provenance, variant = read.endpoints[0].provenance, read.endpoints[0].key
        elif (
            provenance is None
            and read.endpoints
            and all(e.provenance == "documented" for e in read.endpoints)
        ):
            provenance = "documented"
        deadline = getattr(gateway, "last_deadline", None)
        if deadline is None:  # no gateway call (an answer from the cache, say)
            deadline = time.monotonic() + float(getattr(app.config, "timeout", 15.0))
        records = redact.data(_shape(read, raw, deadline))
        return ReadOutcome(
            read,
            records,
            read.single,
            provenance,
            variant,
            [redact.text(n) for n in notes],
            varied,
            list(ctx.tried),
        )

    return run_audited(app, read.key, values, actor, go)


def not_entitled(what: str, hint: str = "") -> NotServed:
    return NotServed(
        f"not entitled: {what}",
        reason="not-entitled",
        hint=hint or "Check your market-data subscriptions in Client Portal.",
    )
