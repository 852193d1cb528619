"""``App``: everything one invocation (a CLI command or the MCP server) shares.

Built cheaply: configuration, transport, pacer and audit sinks are created on first
use, so ``ibgw --help`` and ``ibgw plugins`` never touch them.
"""

from __future__ import annotations

import os
import threading

from .errors import ConfigError


class App:
    def __init__(self, pm, flags: dict | None = None, reads=None, environ=None):
        self.pm = pm
        self.flags = dict(flags or {})
        self.environ = environ
        self._reads = reads
        self._config = None
        self._transport = None
        self._pacer = None
        self._sinks = None
        self._builtin_sinks: list = []
        self._lock = threading.Lock()

    # -- configuration --------------------------------------------------------
    @property
    def config(self):
        if self._config is None:
            from .config import load_config

            self._config = load_config(self.flags, self.environ)
        return self._config

    @property
    def output(self) -> str:
        """The output format, without failing when the configuration is invalid
        (an error about the configuration must still be printed in the asked format)."""
        if self.flags.get("output"):
            return self.flags["output"]
        try:
            return self.config.output
        except Exception:
            env = os.environ.get("IBGW_OUTPUT")
            return env if env in ("table", "json", "csv") else "table"

    @property
    def reads(self):
        if self._reads is None:
            from .plugins import collect_reads

            self._reads = collect_reads(self.pm)
        return self._reads

    # -- shared services --------------------------------------------------------
    @property
    def transport(self):
        with self._lock:
            if self._transport is None:
                transport = self.pm.hook.ibgw_backend(config=self.config, pm=self.pm)
                if transport is None or (
                    self.config.backend == "fake" and transport.name != "fake"
                ):
                    raise ConfigError(
                        "backend: the fake backend needs the ibgw-fake plugin "
                        "(pip install ibgw-fake)",
                        reason="backend-missing",
                    )
                self._transport = transport
            return self._transport

    @property
    def pacer(self):
        if self._pacer is None:
            from .pacing import Pacer

            self._pacer = Pacer(self.config.state_dir)
        return self._pacer

    @property
    def guard(self):
        from .session import SessionGuard

        return SessionGuard(self.config.state_dir)

    @property
    def cache(self):
        from .cache import DiskCache

        return DiskCache(os.path.join(self.config.state_dir, "cache"))

    def cache_key(self, *parts) -> str:
        c = self.config
        return "|".join(
            [c.backend, c.gateway_url, c.scenario if c.backend == "fake" else "", *map(str, parts)]
        )

    def audit_sinks(self) -> list:
        """Every registered sink: the built-in JSONL sink and any a plugin adds."""
        if self._sinks is None:
            sinks: list = []
            builtin: list = []
            for impl in self.pm.hook.ibgw_audit_sinks.get_hookimpls():
                register = sinks.append
                if impl.plugin_name == BUILTIN_SINK_PLUGIN:

                    def register(sink, _sinks=sinks, _builtin=builtin):
                        _sinks.append(sink)
                        _builtin.append(sink)

                try:
                    impl.function(config=self.config, register=register)
                except Exception:  # a broken sink plugin must not silence the others
                    continue
            self._sinks = sinks
            self._builtin_sinks = builtin
        return self._sinks

    def auditor(self, actor: str = "cli"):
        """The auditor of one call. Fail-closed rests on the built-in JSONL sink: a
        third-party sink is additional, never a substitute, so a sink that claims
        success while storing nothing cannot let a call through when the built-in
        sink could not write the intent (exit 7)."""
        from .audit import Auditor

        sinks = self.audit_sinks()
        builtin = self._builtin_sinks
        if builtin:
            sinks = [_RequiredSinks(builtin, [s for s in sinks if s not in builtin])]
        return Auditor(sinks, self.config.state_dir, actor=actor)

    def gateway(self, read=None, auditor=None, command: str = ""):
        from .gateway import Gateway

        return Gateway(
            self.transport,
            self.config,
            pacer=self.pacer,
            guard=self.guard,
            auditor=auditor,
            allowed=None if read is None else read.endpoints,
            command=command,
            pm=self.pm,
            needs_session=True if read is None else read.session,
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


BUILTIN_SINK_PLUGIN = "ibgw.default_plugins.audit_sink"


class _RequiredSinks:
    """The sinks as the auditor sees them: one write succeeds only if every built-in
    sink stored the record; the additional sinks get it too, and a failure of theirs is
    logged (by name, as the auditor does) without failing the write."""

    name = "jsonl"

    def __init__(self, required: list, additional: list):
        self.required = list(required)
        self.additional = list(additional)

    def write(self, record: dict) -> None:
        import logging

        for sink in self.required:
            sink.write(dict(record))  # raises: the record is not stored
        for sink in self.additional:
            try:
                sink.write(dict(record))
            except Exception as exc:
                name = getattr(sink, "name", None)
                logging.getLogger("ibgw.audit").warning(
                    "audit sink %s failed: %s",
                    name if isinstance(name, str) else type(sink).__name__,
                    type(exc).__name__,
                )

    def close(self) -> None:
        for sink in self.required + self.additional:
            close = getattr(sink, "close", None)
            if callable(close):
                close()


def current_app() -> App:
    """The ``App`` of the running click command."""
    import click

    ctx = click.get_current_context()
    app = ctx.find_object(App)
    if app is None:  # pragma: no cover - only when a command runs outside create_cli
        raise RuntimeError("ibgw command invoked outside the ibgw CLI")
    return app
