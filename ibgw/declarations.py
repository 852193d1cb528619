"""Declarations plugins use: ``Param``, ``Endpoint``, ``Read``, ``Category``, ``Result``,
``FakeRoute``.

This module imports nothing heavy: plugin entry modules import it at top level and
``ibgw --help`` must stay fast. A ``Read`` names its fetch function and schema as
``"module:attribute"`` strings so they are imported only when the read runs.

The declarations are dataclasses (``dataclasses.fields``, ``replace`` and ``asdict``
work) whose methods are written out here instead of generated: ``@dataclass``
compiles ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and the frozen
``__setattr__`` at every start-up, which cost ``ibgw --help`` more than the rest of
ibgw's own imports. They behave as frozen dataclasses: value equality and hashing,
a field-by-field repr, ``dataclasses.FrozenInstanceError`` on assignment.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROVENANCES = ("documented", "undocumented")
PACING_CLASSES = {
    # class name -> (requests, per seconds). "global" applies to every call as well.
    "global": (10, 1.0),
    "snapshot": (10, 1.0),
    "scanner-params": (1, 900.0),
    "scanner-run": (1, 1.0),
    "portfolio-accounts": (1, 5.0),
    "pnl": (1, 5.0),
    "trades": (1, 5.0),
    "pa": (1, 900.0),
    "fyi": (1, 1.0),
    "tickle": (1, 1.0),
    "sso-validate": (1, 60.0),
    "history": (5, 1.0),
}
# IBKR's published per-endpoint limits (reference section 13), by path template
# prefix. The gateway facade applies them to every call on these paths, whatever
# pacing class an Endpoint declares, so a plugin cannot forget or loosen them.
PUBLISHED_PACING = (
    ("/iserver/marketdata/snapshot", "snapshot"),
    ("/iserver/marketdata/history", "history"),
    ("/iserver/scanner/params", "scanner-params"),
    ("/iserver/scanner/run", "scanner-run"),
    ("/portfolio/accounts", "portfolio-accounts"),
    ("/portfolio/subaccounts", "portfolio-accounts"),
    ("/iserver/account/pnl/partitioned", "pnl"),
    ("/iserver/account/trades", "trades"),
    ("/pa/", "pa"),
    ("/fyi/", "fyi"),
    ("/tickle", "tickle"),
    ("/sso/validate", "sso-validate"),
)
PARAM_TYPES = ("str", "int", "float", "bool", "choice")
_TEMPLATE_VAR = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def pacing_classes(endpoint: Endpoint) -> list[str]:
    """The declared pacing class plus any limit IBKR publishes for the path."""
    classes = [endpoint.pacing]
    for prefix, name in PUBLISHED_PACING:
        if (endpoint.path == prefix or endpoint.path.startswith(prefix.rstrip("/") + "/")) and (
            name not in classes
        ):
            classes.append(name)
    return classes


def resolve(ref: str | Callable | type | None):
    """Import ``"package.module:attr"`` lazily; pass callables and classes through."""
    if ref is None or not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Value:
    """What ``@dataclass(frozen=True)`` would generate, for the declarations below.

    Each is decorated with ``@dataclass(init=False, repr=False, eq=False)`` (fields
    only; ``__match_args__`` lists them in order) and sets its fields in its own
    ``__init__`` with :meth:`_set`."""

    _frozen = True

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self):
        return hash(self._values())

    def __setattr__(self, name, value):
        if self._frozen:
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if self._frozen:
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


@dataclass(init=False, repr=False, eq=False)
class Endpoint(_Value):
    """One gateway endpoint a read may call.

    ``path`` is a template relative to ``/v1/api`` such as ``/portfolio/{accountId}/ledger``.
    ``params`` maps each path variable, query parameter and top-level body key the read
    may send to a regular expression its value must fully match. ``provenance`` is
    ``documented`` (the (method, path) is in IBKR's OpenAPI spec) or ``undocumented``,
    in which case ``evidence`` says which builds or sources showed it.
    """

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    pacing: str = "global"
    provenance: str = "documented"
    evidence: str = ""
    body: bool = False  # True when parameters travel as a JSON body (POST reads)

    def __init__(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        pacing: str = "global",
        provenance: str = "documented",
        evidence: str = "",
        body: bool = False,  # True when parameters travel as a JSON body (POST reads)
    ):
        self._set(
            method=method,
            path=path,
            params={} if params is None else params,
            pacing=pacing,
            provenance=provenance,
            evidence=evidence,
            body=body,
        )
        self.__post_init__()

    def __post_init__(self):
        self._set(method=self.method.upper())
        if self.method not in ("GET", "POST"):
            raise ValueError(f"endpoint {self.path}: method must be GET or POST")
        if not self.path.startswith("/") or "//" in self.path or ".." in self.path:
            raise ValueError(f"endpoint path must be an absolute template: {self.path!r}")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"endpoint {self.path}: provenance must be one of {PROVENANCES}")
        if self.provenance == "undocumented" and not self.evidence:
            raise ValueError(f"undocumented endpoint {self.path} needs evidence")
        if self.pacing not in PACING_CLASSES:
            raise ValueError(f"endpoint {self.path}: unknown pacing class {self.pacing!r}")
        for var in self.path_vars:
            if var not in self.params:
                raise ValueError(f"endpoint {self.path}: path variable {var!r} needs a pattern")

    def __hash__(self):
        return hash((self.method, self.path, self.provenance, self.pacing))

    @property
    def path_vars(self) -> tuple[str, ...]:
        return tuple(_TEMPLATE_VAR.findall(self.path))

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(init=False, repr=False, eq=False)
class Param(_Value):
    """A read parameter: becomes a CLI argument or option and an MCP input property.

    ``argument=True`` makes it positional on the CLI. ``type`` is one of
    ``str``, ``int``, ``float``, ``bool``, ``choice`` (with ``choices``).
    ``multiple=True`` accepts several values (a list). ``pattern`` is a regular
    expression every value must fully match; a mismatch is a usage error (exit 2).
    """

    name: str
    help: str
    type: str = "str"
    required: bool = False
    argument: bool = False
    default: Any = None
    choices: Sequence[str] | None = None
    multiple: bool = False
    pattern: str | None = None
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __init__(
        self,
        name: str,
        help: str,
        type: str = "str",
        required: bool = False,
        argument: bool = False,
        default: Any = None,
        choices: Sequence[str] | None = None,
        multiple: bool = False,
        pattern: str | None = None,
        metavar: str | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ):
        self._set(
            name=name,
            help=help,
            type=type,
            required=required,
            argument=argument,
            default=default,
            choices=choices,
            multiple=multiple,
            pattern=pattern,
            metavar=metavar,
            minimum=minimum,
            maximum=maximum,
        )
        self.__post_init__()

    def __post_init__(self):
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param {self.name}: type must be one of {PARAM_TYPES}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"param {self.name}: choice needs choices")

    @property
    def option_name(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(init=False, repr=False, eq=False)
class Read(_Value):
    """A read: the unit that becomes one CLI command and one MCP tool.

    ``fetch`` is ``"module:function"`` (or a callable) called as
    ``fetch(ctx, **params)`` with a :class:`ibgw.runner.ReadContext`; it returns a
    list of records, one record, or a :class:`Result`. ``schema`` is
    ``"module:Schema"`` (a marshmallow schema whose ``dump`` shapes each record;
    unknown fields are dropped) or ``None`` to keep ``columns`` only.
    ``columns`` are the table columns. ``default=True`` makes this read answer
    ``ibgw <category> ARGS``. ``session=False`` marks reads that do not need the
    broker session (local cache, configuration). ``probe`` holds the parameters
    ``ibgw probe`` runs the read with to learn whether this gateway serves it
    (``None``: the read is not probed).
    """

    category: str
    name: str
    summary: str
    fetch: str | Callable
    params: Sequence[Param] = ()
    endpoints: Sequence[Endpoint] = ()
    schema: str | type | None = None
    columns: Sequence[str] = ()
    default: bool = False
    description: str = ""
    session: bool = True
    single: bool = False  # one record, rendered as key/value pairs and a JSON object
    probe: Mapping[str, Any] | None = None  # parameters 'ibgw probe' tries this read with

    def __init__(
        self,
        category: str,
        name: str,
        summary: str,
        fetch: str | Callable,
        params: Sequence[Param] = (),
        endpoints: Sequence[Endpoint] = (),
        schema: str | type | None = None,
        columns: Sequence[str] = (),
        default: bool = False,
        description: str = "",
        session: bool = True,
        single: bool = False,  # one record, rendered as key/value pairs and a JSON object
        probe: Mapping[str, Any] | None = None,  # parameters 'ibgw probe' tries this read with
    ):
        self._set(
            category=category,
            name=name,
            summary=summary,
            fetch=fetch,
            params=params,
            endpoints=endpoints,
            schema=schema,
            columns=columns,
            default=default,
            description=description,
            session=session,
            single=single,
            probe=probe,
        )
        self.__post_init__()

    def __post_init__(self):
        for value, what in ((self.category, "category"), (self.name, "name")):
            if not re.fullmatch(r"[a-z][a-z0-9-]*", value):
                raise ValueError(f"read {what} {value!r} must be lower-case letters, digits, '-'")
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError(f"read {self.category} {self.name}: duplicate parameter")

    @property
    def key(self) -> str:
        return f"{self.category} {self.name}"

    @property
    def tool_name(self) -> str:
        return f"{self.category}_{self.name}".replace("-", "_")

    @property
    def help(self) -> str:
        return self.summary + ("\n\n" + self.description if self.description else "")


@dataclass(init=False, repr=False, eq=False)
class Category(_Value):
    """A read category's one-line help, registered beside its reads:
    ``register(Category("fx", "Exchange rates and currency pairs."))`` in
    ``ibgw_register_reads``. ``ibgw --help`` shows it next to the category."""

    name: str
    summary: str

    def __init__(self, name: str, summary: str):
        self._set(name=name, summary=summary)
        self.__post_init__()

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise ValueError(f"category {self.name!r} must be lower-case letters, digits, '-'")
        if not self.summary.strip():
            raise ValueError(f"category {self.name}: summary must not be empty")


@dataclass(init=False, repr=False, eq=False)
class Result(_Value):
    """What a fetch function may return when it has more to say than the records.

    ``provenance`` names the endpoint variant used (``documented`` or
    ``undocumented``) and ``variant`` its (method, path); ``notes`` are short
    human lines (cache age, "no data yet") shown on stderr for the CLI and in the
    MCP text.
    """

    records: Any
    provenance: str | None = None
    variant: str | None = None
    notes: list[str] = field(default_factory=list)

    _frozen = False
    __hash__ = None  # mutable: unhashable, as a dataclass with eq and without frozen

    def __init__(
        self,
        records: Any,
        provenance: str | None = None,
        variant: str | None = None,
        notes: list[str] | None = None,
    ):
        self.records = records
        self.provenance = provenance
        self.variant = variant
        self.notes = [] if notes is None else notes


@dataclass(init=False, repr=False, eq=False)
class FakeRoute(_Value):
    """A fake-backend route whose answer is computed: ``handler(request)`` returns
    ``(status, body)`` where ``body`` is JSON-able data, or ``bytes`` sent verbatim.
    ``request`` is an :class:`ibgw_fake.router.FakeRequest` (method, path, query,
    body, path params, scenario)."""

    method: str
    path: str
    handler: Callable
    source: str = ""

    def __init__(self, method: str, path: str, handler: Callable, source: str = ""):
        self._set(method=method, path=path, handler=handler, source=source)
