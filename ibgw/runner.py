"""Running a read: the one path shared by the CLI and the MCP server.

``run_read`` validates parameters, writes the audit intent record (the read does
not happen if no sink can write it), calls the plugin's fetch function with a
:class:`ReadContext`, shapes the records through the read's schema (unknown
fields dropped), redacts them, and writes the outcome record.
"""

from __future__ import annotations

import contextvars
import re
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
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
#: Seconds between two progress updates (terminal bar, MCP notifications); the last
#: update (everything done) is always sent.
PROGRESS_INTERVAL = 0.1
MCP_PROGRESS_INTERVAL = 0.25

_PROGRESS_CHANNEL: ContextVar[ProgressChannel | None] = ContextVar(
    "ibgw_progress_channel", default=None
)


class ProgressChannel:
    """Where the progress of one read goes besides the terminal: ``report(progress,
    total, message)`` (the MCP server sends ``notifications/progress``). The values
    it gets only ever increase, across every bar the read opens; at most one
    update per ``interval`` seconds, plus the last one of each bar."""

    def __init__(self, report, interval: float = MCP_PROGRESS_INTERVAL):
        self.report, self.interval = report, interval
        self.offset = 0  # progress of the bars already closed
        self.sent: float | None = None  # the last progress value reported
        self.last = 0.0

    def update(self, done: int, total: int, label: str, force: bool = False) -> None:
        value = self.offset + done
        if self.sent is not None and value <= self.sent:
            return
        now = time.monotonic()
        if not force and self.sent is not None and now - self.last < self.interval:
            return
        self.sent, self.last = value, now
        try:
            self.report(value, self.offset + max(total, done), label)
        except Exception:  # a client that went away must not fail the read
            pass

    def finish(self, done: int, total: int) -> None:
        self.offset += max(total, done)


@contextmanager
def reporting_progress(report, interval: float = MCP_PROGRESS_INTERVAL):
    """Within this block (in this thread), reads send their progress to ``report``."""
    token = _PROGRESS_CHANNEL.set(ProgressChannel(report, interval))
    try:
        yield
    finally:
        _PROGRESS_CHANNEL.reset(token)


class Progress:
    """Progress of a long read: a bar on stderr when the CLI runs on a terminal, MCP
    progress notifications when the MCP client asked for them, nothing otherwise.
    ``advance`` may be called from several threads."""

    def __init__(
        self, total: int, label: str, enabled: bool, channel: ProgressChannel | None = None
    ):
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self.channel = channel
        self._last = 0.0
        self._lock = threading.Lock()
        self._closed = False
        if channel is not None:
            channel.update(0, total, label, force=True)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            finished = self.done >= self.total
            if self.channel is not None:
                self.channel.update(self.done, self.total, self.label, force=finished)
            if self.enabled and (time.monotonic() - self._last > PROGRESS_INTERVAL or finished):
                from .output import emit

                self._last = time.monotonic()
                width = 30
                filled = min(width, int(width * self.done / max(self.total, 1)))
                emit(
                    f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{self.done}/{self.total}",
                    err=True,
                )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.channel is not None:
                self.channel.update(self.done, self.total, self.label, force=True)
                self.channel.finish(self.done, self.total)
            if self.enabled:
                from .output import emit

                emit("\r" + " " * (len(self.label) + 50) + "\r", err=True)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _ContextHelpers:
    """The part of :class:`ReadContext` built on its other methods (no facade here)."""

    def note(self, text: str) -> None:
        self.notes.append(text)

    def progress(self, total: int, label: str = "") -> Progress:
        enabled = self.actor == "cli" and total > 1 and _stderr_is_terminal()
        channel = _PROGRESS_CHANNEL.get() if total > 0 else None
        return Progress(total, label or self.read.key, enabled, channel)

    def parallel(self, fn, items, workers: int = 4) -> list:
        """``[fn(item) for item in items]`` with up to ``workers`` calls in flight;
        the pacer keeps the rate within IBKR's limits."""
        items = list(items)
        if len(items) <= 1 or workers <= 1:
            return [fn(i) for i in items]
        # each call runs in a copy of this context (the read's refusal reporting)
        contexts = [contextvars.copy_context() for _ in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda c, i: c.run(fn, i), contexts, items))

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
        from .probe_table import probe_result_for

        allow_undoc = getattr(self.config, "allow_undocumented", True)
        known = probe_result_for(self._probe_view(), self.read)
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


def _context_class():
    """``ReadContext`` and the closure that holds each context's app and facade.

    The app and the gateway facade of a context live in this closure (a weak
    mapping), not in attributes: a fetch function reaches the gateway through the
    context's methods only, never the facade, the transport, its session or its
    adapter (no ``ctx.gateway``, no ``ctx.app``). What this does and does not
    contain: docs/security.md, "Containment"."""
    bound: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    class ReadContext(_ContextHelpers):
        """What a fetch function receives: ``call()`` and helpers (docs/plugins.md)."""

        def __init__(self, app, gateway, read: Read, actor: str):
            bound[self] = (app, gateway)
            self.read = read
            self.actor = actor
            self.notes: list[str] = []
            self.provenance: str | None = None
            self.variant: str | None = None
            self.tried: list[str] = []

        @property
        def config(self):
            return bound[self][0].config

        @property
        def output(self) -> str:
            """The output format the user asked for (``table``, ``json`` or ``csv``)."""
            return bound[self][0].output

        @property
        def cache(self):
            return bound[self][0].cache

        def cache_key(self, *parts) -> str:
            """A cache key scoped to this backend, gateway and scenario."""
            return bound[self][0].cache_key(*parts)

        def call(self, endpoint, **kw):
            answer = bound[self][1].call(endpoint, **kw)
            if endpoint.path == "/tickle" and isinstance(answer, dict) and "session" in answer:
                # the tickle's session is the websocket credential: it stays in the core
                # (ctx.websocket() opens the socket with it); the plugin gets the rest
                answer = {k: v for k, v in answer.items() if k != "session"}
            return answer

        def websocket(self, timeout: float | None = None):
            """The gateway's websocket, opened by the core (:mod:`ibgw.websocket`):
            primes ``/iserver/accounts``, takes the credential from ``/tickle``
            (never shown to the plugin) and checks every message it sends."""
            from .websocket import open_for

            return open_for(bound[self][1], self.config, timeout)

        # for the core (ibgw.symbols, the accounts reads): no facade or transport leaves
        def _memo(self, name: str) -> dict:
            return bound[self][1].memo(name)

        def _mark_primed(self, name: str) -> None:
            bound[self][1].mark_primed(name)

        def _probe_view(self):
            app = bound[self][0]
            return SimpleNamespace(config=app.config, cache_key=lambda *p: app.cache_key(*p))

    return ReadContext


ReadContext = _context_class()


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


def _fetch_contained(fetch, ctx, values: dict, auditor, command: str):
    """``fetch(ctx, **values)`` with containment refusals reported: each one below
    the facade (a request that skipped its checks, a websocket message refused) is
    audited as ``denied`` at once, and a read that met one ends ``PolicyRefused``
    (exit 6) even if the plugin caught the exception and returned rows."""
    from .policy import _REFUSAL_SINK

    hits: list[str] = []

    def sink(method: str, template: str, reason: str) -> None:
        hits.append(reason)
        auditor.denied(command, method, template, reason)

    token = _REFUSAL_SINK.set(sink)
    try:
        try:
            raw = fetch(ctx, **values)
        except Exception:
            if not hits:
                raise
            raw = None
    finally:
        _REFUSAL_SINK.reset(token)
    if hits:
        raise PolicyRefused(
            f"refused: {command} tried {len(hits)} request(s) outside the read-only "
            f"facade ({hits[0]})",
            reason=hits[0],
            hint="Plugins reach the gateway through ctx.call and ctx.websocket only.",
        )
    return raw


def run_read(app, read: Read, params: dict, actor: str = "cli") -> ReadOutcome:
    from . import redact

    values = validate_params(read, params)

    def go(auditor):
        gateway = app.gateway(read=read, auditor=auditor, command=read.key)
        ctx = ReadContext(app, gateway, read, actor)
        fetch = resolve(read.fetch)
        raw: Any = _fetch_contained(fetch, ctx, values, auditor, read.key)
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
