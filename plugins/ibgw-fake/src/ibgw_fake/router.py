"""The fixture router: canned Client Portal Gateway answers, matched per request.

Plugins contribute fixtures with the ``ibgw_fake_fixtures(register)`` hook;
``register`` accepts a path to a JSON file (or an ``importlib.resources``
traversable), a fixture ``dict``, or an :class:`ibgw.declarations.FakeRoute`.

Fixture format
==============

A fixture is a JSON object::

    {
      "description": "optional, ignored",
      "routes": [
        {"method": "GET",                         # or ["GET", "POST"]
         "path": "/iserver/secdef/strikes",       # below /v1/api; may hold {var} parts
         "query": {"conid": "756733", "month": "APR26"},   # optional subset match
         "body": null,                            # optional subset match on a JSON body
         "status": 200,                           # default 200
         "response": {"call": [...], "put": [...]},        # any JSON
         "undocumented": false,                   # true: hidden in 'documented-only'
         "scenarios": null}                       # or ["competing-session", ...]
      ],
      "scenarios": {
        "no-strikes": {"description": "strikes endpoint missing on this build",
                       "base": "connected",
                       "hide": ["GET /iserver/secdef/strikes"]}
      }
    }

Matching
--------
* ``method`` is case-insensitive; a list answers each of its methods.
* ``path`` is matched against the request path below ``/v1/api``; a ``{var}``
  part matches one non-empty path segment (or the rest of a segment), and its
  decoded value is in ``request.params[var]``.
* ``query`` and ``body`` are subset matches: every key given must be present in
  the request's query string (or top-level JSON body) with the same value,
  compared as strings (``true``/``false`` for booleans, ``5`` == ``"5"``). A
  ``null`` value means the key must be absent. Lists and objects compare as JSON.
* The most specific match wins: a route restricted to the active scenario beats
  an unrestricted one; then more matched ``query``/``body`` keys beat fewer;
  then more literal path segments beat templates (an exact path beats
  ``{var}``); then the route registered first.
* No match: HTTP 404 with the gateway's own ``text/html`` page
  ``<html><body><h1>Resource not found</h1></body></html>``.

Answers
-------
* ``response`` is any JSON, sent compact as ``application/json``. Without
  ``response`` the body is empty (for a 204, say).
* ``"response_raw": "text"`` with ``"content_type": "text/plain"`` (the default
  content type for raw answers) sends the text verbatim instead.
* String placeholders inside ``response`` (and ``response_raw``) are expanded
  on every answer:

  - ``{{secret:NAME}}``: a random value made once per process and kept for the
    name (``session``/``cookie``/anything else: 32 hex characters, ``mac``: a
    MAC address, ``hardware``: ``8hex|MAC``, ``userid``: 9 digits, ``ip``: a
    TEST-NET address, ``username``/``credential``: ``user`` + hex). When the
    environment variable ``IBGW_FAKE_CANARY`` is set, the value is
    ``f"{canary}{NAME}"`` instead, so tests can plant canaries in every secret
    slot and scan output for them.
  - ``{{now_ms}}`` / ``{{now_s}}``: the current epoch time (an integer when the
    placeholder is the whole string); ``{{today}}``: ``YYYYMMDD``.

  Fixtures never contain real session material: every field that is secret in
  a real gateway answer (tickle ``session``, ``sessionId``, ``MAC``,
  ``hardware_info``, ``userId``, ``/sso/validate`` ``USER_NAME``,
  ``CREDENTIAL``, ``IP``) holds a ``{{secret:...}}`` placeholder.
* ``"scenarios": ["name", ...]`` restricts a route to those scenarios (or to
  scenarios based on them).

Computed routes
---------------
``FakeRoute(method, path, handler)`` (also allowed inside ``routes``) calls
``handler(request)`` with a :class:`FakeRequest` (``method``, ``path``,
``query`` dict, ``body`` parsed JSON or ``None``, ``params`` from the path
template, ``scenario``) and sends what it returns: ``(status, body)`` where
``body`` is JSON-able data or ``bytes`` sent verbatim as ``application/json``,
or ``(status, body, content_type)``. A handler that raises answers HTTP 500.

Scenarios
---------
``scenarios`` declares extra scenarios: ``base`` is the scenario whose
behaviour it inherits (a built-in one or another declared one; default
``connected``) and ``hide`` lists ``"METHOD /template"`` entries that answer
404 Resource not found in it. See :mod:`ibgw_fake.scenarios` for the built-ins.

Broken fixtures
---------------
A fixture that does not follow this format (unknown keys, bad JSON, a route
that duplicates another plugin's) is skipped and reported in
:attr:`FakeRouter.errors` with the plugin's name; the other fixtures still load.
A plugin whose hook raises contributes nothing and is reported the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from ibgw.declarations import FakeRoute

NOT_FOUND_BODY = b"<html><body><h1>Resource not found</h1></body></html>"
CANARY_ENV = "IBGW_FAKE_CANARY"
COOKIE_NAME = "x-sess-uuid"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

_ROUTE_KEYS = {
    "method",
    "path",
    "query",
    "body",
    "status",
    "response",
    "response_raw",
    "content_type",
    "undocumented",
    "scenarios",
    "description",
}
_SCENARIO_KEYS = {"description", "base", "hide"}
_SCENARIO_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_TEMPLATE_VAR = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\{\{(secret:[A-Za-z0-9_.-]+|now_ms|now_s|today)\}\}")


class FixtureError(ValueError):
    """A fixture that does not follow the format; the message says where."""


@dataclasses.dataclass
class FakeRequest:
    """One request as the router sees it.

    ``path`` is the path below ``/v1/api`` as sent (percent-encoded); ``query``
    maps each query parameter to its (last) value; ``body`` is the parsed JSON
    body or ``None``; ``params`` holds the decoded path-template variables of
    the matched route; ``deadline`` is a ``time.monotonic()`` instant or ``None``.
    """

    method: str
    path: str
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: Any = None
    scenario: str = "connected"
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    deadline: float | None = None
    raw_body: bytes | None = None

    def __post_init__(self):
        self.method = self.method.upper()

    @staticmethod
    def parse_body(raw: bytes | None) -> Any:
        """The JSON value of a request body, or ``None`` when empty or not JSON."""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None


class FakeAnswer(NamedTuple):
    """``(status, content_type, body_bytes, cookies)``: what the gateway would send.
    ``cookies`` maps cookie names to the values a real gateway would set."""

    status: int
    content_type: str
    body: bytes
    cookies: dict


def not_found() -> FakeAnswer:
    """The gateway's answer for a path it does not serve."""
    return FakeAnswer(404, "text/html", NOT_FOUND_BODY, {})


# --------------------------------------------------------------------------- placeholders

_secrets: dict[str, str] = {}
_secrets_lock = threading.Lock()


def _random_mac() -> str:
    return ":".join(f"{b:02X}" for b in secrets.token_bytes(6))


def _make_secret(name: str) -> str:
    low = name.lower()
    if low.startswith("mac"):
        return _random_mac()
    if low.startswith("hardware"):
        return f"{secrets.token_hex(4)}|{_random_mac()}"
    if low in ("userid", "user_id", "user-id"):
        return str(100_000_000 + secrets.randbelow(900_000_000))
    if low == "ip":
        return f"203.0.113.{1 + secrets.randbelow(254)}"
    if low.startswith("user") or low.startswith("credential"):
        return "user" + secrets.token_hex(6)
    return secrets.token_hex(16)


def secret_value(name: str) -> str:
    """The value of ``{{secret:NAME}}`` for this process (or the canary form)."""
    canary = os.environ.get(CANARY_ENV)
    if canary:
        return f"{canary}{name}"
    with _secrets_lock:
        value = _secrets.get(name)
        if value is None:
            value = _secrets[name] = _make_secret(name)
        return value


def secret_values() -> list[str]:
    """Every random secret value this process has handed out so far (for leak tests)."""
    with _secrets_lock:
        return list(_secrets.values())


def _expand_str(text: str) -> Any:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole and whole.group(1) in ("now_ms", "now_s"):
        return int(time.time() * 1000) if whole.group(1) == "now_ms" else int(time.time())

    def sub(m: re.Match) -> str:
        token = m.group(1)
        if token.startswith("secret:"):
            return secret_value(token[len("secret:") :])
        if token == "now_ms":
            return str(int(time.time() * 1000))
        if token == "now_s":
            return str(int(time.time()))
        return datetime.date.today().strftime("%Y%m%d")

    return _PLACEHOLDER.sub(sub, text)


def expand_placeholders(value: Any) -> Any:
    """A copy of ``value`` with every string placeholder expanded."""
    if isinstance(value, str):
        return _expand_str(value) if "{{" in value else value
    if isinstance(value, list):
        return [expand_placeholders(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_placeholders(v) for k, v in value.items()}
    return value


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_PLACEHOLDER.search(value))
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(_has_placeholder(v) for v in value.values())
    return False


def dump_json(value: Any) -> bytes:
    """Compact JSON, as the gateway sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- templates


class PathTemplate:
    """A compiled path template such as ``/portfolio/{accountId}/positions/{pageId}``."""

    def __init__(self, template: str):
        if not isinstance(template, str) or not template.startswith("/"):
            raise FixtureError(f"path must be a string starting with '/': {template!r}")
        if "?" in template or "#" in template:
            raise FixtureError(f"path {template!r}: put query parameters in 'query'")
        self.template = template
        pattern, pos = [], 0
        names = []
        for m in _TEMPLATE_VAR.finditer(template):
            pattern.append(re.escape(template[pos : m.start()]))
            if m.group(1) in names:
                raise FixtureError(f"path {template!r}: variable {m.group(1)!r} appears twice")
            names.append(m.group(1))
            pattern.append(f"(?P<{m.group(1)}>[^/]+)")
            pos = m.end()
        pattern.append(re.escape(template[pos:]))
        rest = _TEMPLATE_VAR.sub("", template)
        if "{" in rest or "}" in rest:
            raise FixtureError(f"path {template!r}: malformed {{variable}}")
        self.regex = re.compile("".join(pattern))
        self.literal_segments = sum(1 for s in template.split("/") if s and "{" not in s)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items()}


# --------------------------------------------------------------------------- routes


def _as_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _value_matches(expected: Any, actual: Any) -> bool:
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if isinstance(expected, (dict, list)) or isinstance(actual, (dict, list)):
        return expected == actual
    return _as_str(expected) == _as_str(actual)


@dataclasses.dataclass
class Route:
    """One compiled route. ``source`` names the plugin and fixture it came from."""

    methods: frozenset
    template: PathTemplate
    source: str
    query: dict | None = None
    body: dict | None = None
    status: int = 200
    response: Any = None
    has_response: bool = False
    raw: str | None = None
    content_type: str = "application/json"
    undocumented: bool = False
    scenarios: frozenset | None = None
    handler: Any = None
    index: int = 0
    _static: bytes | None = None

    @property
    def path(self) -> str:
        return self.template.template

    @property
    def key(self) -> tuple:
        """What makes two routes the same: they could never both win."""
        return (
            self.methods,
            self.path,
            _as_str(self.query) if self.query is not None else None,
            _as_str(self.body) if self.body is not None else None,
            self.scenarios,
        )

    def describe(self) -> str:
        return f"{'|'.join(sorted(self.methods))} {self.path}"

    def match(self, request: FakeRequest) -> tuple[int, dict] | None:
        """``(matched_key_count, params)`` when this route answers ``request``."""
        if request.method not in self.methods:
            return None
        params = self.template.match(request.path)
        if params is None:
            return None
        count = 0
        if self.query:
            for k, v in self.query.items():
                if not _value_matches(v, request.query.get(k)):
                    return None
            count += len(self.query)
        if self.body:
            body = request.body if isinstance(request.body, dict) else {}
            for k, v in self.body.items():
                if not _value_matches(v, body.get(k)):
                    return None
            count += len(self.body)
        return count, params

    def answer(self, request: FakeRequest, errors: list) -> FakeAnswer:
        if self.handler is not None:
            return self._call_handler(request, errors)
        if self._static is not None:
            return FakeAnswer(self.status, self.content_type, self._static, {})
        if self.raw is not None:
            return FakeAnswer(
                self.status, self.content_type, expand_placeholders(self.raw).encode("utf-8"), {}
            )
        body = dump_json(expand_placeholders(self.response)) if self.has_response else b""
        return FakeAnswer(self.status, self.content_type, body, {})

    def _call_handler(self, request: FakeRequest, errors: list) -> FakeAnswer:
        try:
            result = self.handler(request)
            status, body, *rest = result
            ctype = rest[0] if rest else "application/json"
            if not isinstance(status, int) or len(rest) > 1 or not isinstance(ctype, str):
                raise TypeError(
                    "handler must return (status, body) or (status, body, content_type)"
                )
            if isinstance(body, bytes | bytearray):
                data = bytes(body)
            else:
                data = dump_json(expand_placeholders(body))
            return FakeAnswer(status, ctype, data, {})
        except Exception as exc:  # a broken handler is the plugin's bug, not a crash
            errors.append(
                f"{self.source}: handler for {self.describe()} raised {type(exc).__name__}"
            )
            return FakeAnswer(
                500,
                "application/json",
                b'{"error":"fake route handler failed","statusCode":500}',
                {},
            )


def _check_methods(raw: Any) -> frozenset:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise FixtureError("'method' must be a method name or a non-empty list of them")
    methods = set()
    for m in items:
        if not isinstance(m, str) or m.upper() not in METHODS:
            raise FixtureError(f"unknown method {m!r}")
        methods.add(m.upper())
    return frozenset(methods)


def _check_match(raw: Any, what: str) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise FixtureError(f"'{what}' must be an object of key/value pairs")
    for k, v in raw.items():
        if what == "query" and isinstance(v, dict | list):
            raise FixtureError(f"query value for {k!r} must be a string, number, boolean or null")
    return dict(raw)


def compile_route(raw: Any, source: str) -> Route:
    """Validate one route of a fixture (a dict or a :class:`FakeRoute`)."""
    if isinstance(raw, FakeRoute):
        if not callable(raw.handler):
            raise FixtureError(f"FakeRoute {raw.path}: handler is not callable")
        return Route(
            methods=_check_methods(raw.method),
            template=PathTemplate(raw.path),
            source=f"{source} {raw.source}".strip(),
            handler=raw.handler,
        )
    if not isinstance(raw, dict):
        raise FixtureError(f"a route must be an object, not {type(raw).__name__}")
    unknown = sorted(k for k in raw if k not in _ROUTE_KEYS and not k.startswith(("_", "$")))
    if unknown:
        raise FixtureError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    for required in ("method", "path"):
        if required not in raw:
            raise FixtureError(f"missing {required!r}")
    if "response" in raw and "response_raw" in raw:
        raise FixtureError("give 'response' or 'response_raw', not both")
    status = raw.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise FixtureError(f"'status' must be an HTTP status code, not {status!r}")
    scen = raw.get("scenarios")
    if scen is not None:
        if not isinstance(scen, list) or not all(isinstance(s, str) for s in scen) or not scen:
            raise FixtureError("'scenarios' must be null or a non-empty list of scenario names")
        scen = frozenset(scen)
    undocumented = raw.get("undocumented", False)
    if not isinstance(undocumented, bool):
        raise FixtureError("'undocumented' must be true or false")
    raw_text = raw.get("response_raw")
    if raw_text is not None and not isinstance(raw_text, str):
        raise FixtureError("'response_raw' must be a string")
    default_ctype = "text/plain" if raw_text is not None else "application/json"
    ctype = raw.get("content_type", default_ctype)
    if not isinstance(ctype, str) or not ctype or any(c in ctype for c in "\r\n"):
        raise FixtureError("'content_type' must be a one-line string")
    route = Route(
        methods=_check_methods(raw["method"]),
        template=PathTemplate(raw["path"]),
        source=source,
        query=_check_match(raw.get("query"), "query"),
        body=_check_match(raw.get("body"), "body"),
        status=status,
        response=raw.get("response"),
        has_response="response" in raw,
        raw=raw_text,
        content_type=ctype,
        undocumented=undocumented,
        scenarios=scen,
    )
    if raw_text is not None and not _has_placeholder(raw_text):
        route._static = raw_text.encode("utf-8")
    elif raw_text is None and route.has_response and not _has_placeholder(route.response):
        route._static = dump_json(route.response)
    elif raw_text is None and not route.has_response:
        route._static = b""
    return route


@dataclasses.dataclass
class CustomScenario:
    name: str
    description: str
    base: str
    hide: list  # [(methods frozenset, PathTemplate)]
    source: str


def _compile_scenario(name: Any, raw: Any, source: str) -> CustomScenario:
    if not isinstance(name, str) or not _SCENARIO_NAME.fullmatch(name):
        raise FixtureError(f"scenario name {name!r} must be lower-case letters, digits and '-'")
    if not isinstance(raw, dict):
        raise FixtureError(f"scenario {name!r} must be an object")
    unknown = sorted(k for k in raw if k not in _SCENARIO_KEYS and not k.startswith(("_", "$")))
    if unknown:
        raise FixtureError(f"scenario {name!r}: unknown key(s) {', '.join(map(repr, unknown))}")
    description = raw.get("description", "")
    base = raw.get("base", "connected")
    if not isinstance(description, str) or not isinstance(base, str):
        raise FixtureError(f"scenario {name!r}: 'description' and 'base' must be strings")
    hide = []
    entries = raw.get("hide", [])
    if not isinstance(entries, list):
        raise FixtureError(f"scenario {name!r}: 'hide' must be a list of 'METHOD /template'")
    for entry in entries:
        parts = entry.split() if isinstance(entry, str) else []
        if len(parts) != 2:
            raise FixtureError(f"scenario {name!r}: hide entry {entry!r} is not 'METHOD /template'")
        hide.append((_check_methods(parts[0]), PathTemplate(parts[1])))
    return CustomScenario(name, description, base, hide, source)


def load_fixture(fixture: Any) -> tuple[str, dict | FakeRoute]:
    """``(name, data)`` for anything ``register`` accepts; raises :class:`FixtureError`."""
    if isinstance(fixture, FakeRoute | dict):
        name = fixture.path if isinstance(fixture, FakeRoute) else "<dict>"
        return name, fixture
    if isinstance(fixture, str | os.PathLike) or hasattr(fixture, "read_text"):
        name = getattr(fixture, "name", None) or os.path.basename(os.fspath(fixture))
        try:
            if hasattr(fixture, "read_text"):
                text = fixture.read_text(encoding="utf-8")
            else:
                with open(fixture, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as exc:
            raise FixtureError(f"fixture {name}: cannot read ({type(exc).__name__})") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FixtureError(
                f"fixture {name}: not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
        return name, data
    raise FixtureError(f"cannot register a {type(fixture).__name__} as a fixture")


def compile_fixture(fixture: Any, plugin: str) -> tuple[list[Route], list[CustomScenario]]:
    """Routes and declared scenarios of one fixture; raises :class:`FixtureError`."""
    name, data = load_fixture(fixture)
    source = f"{plugin}:{name}"
    if isinstance(data, FakeRoute):
        return [compile_route(data, source)], []
    if not isinstance(data, dict):
        raise FixtureError(f"fixture {name}: must be a JSON object with 'routes'")
    unknown = sorted(
        k
        for k in data
        if k not in ("routes", "scenarios", "description") and not k.startswith(("_", "$"))
    )
    if unknown:
        raise FixtureError(f"fixture {name}: unknown key(s) {', '.join(map(repr, unknown))}")
    raw_routes = data.get("routes", [])
    raw_scen = data.get("scenarios")
    raw_scen = {} if raw_scen is None else raw_scen
    if not isinstance(raw_routes, list) or not isinstance(raw_scen, dict):
        raise FixtureError(f"fixture {name}: 'routes' must be a list and 'scenarios' an object")
    routes = []
    for i, raw in enumerate(raw_routes):
        try:
            routes.append(compile_route(raw, source))
        except FixtureError as exc:
            where = f"{raw.get('method')} {raw.get('path')}" if isinstance(raw, dict) else ""
            raise FixtureError(
                f"fixture {name}: route {i} {where}: {exc}".replace("  ", " ")
            ) from None
    scenarios = []
    for sname, sraw in raw_scen.items():
        try:
            scenarios.append(_compile_scenario(sname, sraw, source))
        except FixtureError as exc:
            raise FixtureError(f"fixture {name}: {exc}") from None
    return routes, scenarios


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# --------------------------------------------------------------------------- router


@dataclasses.dataclass
class _State:
    routes: list
    scenarios: dict
    errors: list
    snapshot: tuple


def _own_fixtures():
    from importlib.resources import files

    folder = files("ibgw_fake") / "fixtures"
    return sorted((e for e in folder.iterdir() if e.name.endswith(".json")), key=lambda e: e.name)


def _core_fixtures_pm():
    from ibgw.default_plugins import core_fixtures
    from ibgw.plugins import PluginManager

    pm = PluginManager()
    pm.register(core_fixtures, name="ibgw.default_plugins.core_fixtures")
    return pm


class FakeRouter:
    """Routes requests to the fixtures of every plugin of ``pm``.

    ``pm`` is an ibgw plugin manager; ``None`` uses only the core fixtures. The
    fake backend's own scenario fixtures are always loaded first. The router
    collects fixtures again when the set of ``ibgw_fake_fixtures``
    implementations changes (a plugin registered after the router was built).
    It is safe to use from several threads.
    """

    def __init__(self, pm=None):
        self.pm = pm if pm is not None else _core_fixtures_pm()
        self._lock = threading.Lock()
        self._state = self._collect()

    # -- collection -------------------------------------------------------------------------

    def _impls(self):
        return self.pm.hook.ibgw_fake_fixtures.get_hookimpls()

    def _collect(self) -> _State:
        from .scenarios import SCENARIOS

        impls = self._impls()
        routes: list[Route] = []
        scenarios: dict[str, CustomScenario] = {}
        errors: list[str] = []
        keys: dict[tuple, str] = {}

        def add(fixtures: list, plugin: str) -> None:
            for fx in fixtures:
                try:
                    new_routes, new_scen = compile_fixture(fx, plugin)
                except FixtureError as exc:
                    errors.append(f"{plugin}: {exc}")
                    continue
                own: dict[tuple, str] = {}
                clash = None
                for r in new_routes:
                    if r.key in keys or r.key in own:
                        clash = r
                        break
                    own[r.key] = r.source
                clash_s = next(
                    (s for s in new_scen if s.name in scenarios or s.name in SCENARIOS), None
                )
                if clash is not None:
                    errors.append(
                        f"{plugin}: route {clash.describe()} duplicates one from "
                        f"{keys.get(clash.key, clash.source)}; skipped"
                    )
                    continue
                if clash_s is not None:
                    errors.append(
                        f"{plugin}: scenario {clash_s.name!r} is already defined; skipped"
                    )
                    continue
                for r in new_routes:
                    r.index = len(routes)
                    keys[r.key] = r.source
                    routes.append(r)
                for s in new_scen:
                    scenarios[s.name] = s

        try:
            add(_own_fixtures(), "ibgw-fake")
        except OSError as exc:  # pragma: no cover - a broken install
            errors.append(f"ibgw-fake: cannot list its fixtures ({type(exc).__name__})")
        for impl in impls:
            staged: list = []
            try:
                impl.function(register=staged.append)
            except Exception as exc:  # one broken plugin must not break the fake backend
                errors.append(
                    f"{impl.plugin_name}: ibgw_fake_fixtures raised {type(exc).__name__}: {_first_line(exc)}; skipped"
                )
                continue
            add(staged, impl.plugin_name)

        # declared scenarios: the base chain must end in a built-in scenario
        broken = []
        for name in scenarios:
            seen, cur = [name], scenarios[name].base
            while cur in scenarios and cur not in seen:
                seen.append(cur)
                cur = scenarios[cur].base
            if cur not in SCENARIOS:
                what = "a cycle" if cur in seen else f"unknown base {cur!r}"
                errors.append(f"{scenarios[name].source}: scenario {name!r} has {what}; skipped")
                broken.append(name)
        for name in broken:
            del scenarios[name]
        return _State(routes, scenarios, errors, tuple(id(i.function) for i in impls))

    def _current(self) -> _State:
        state = self._state
        snapshot = tuple(id(i.function) for i in self._impls())
        if snapshot != state.snapshot:
            with self._lock:
                if self._state.snapshot != snapshot:
                    self._state = self._collect()
                state = self._state
        return state

    def reload(self) -> None:
        """Collect every plugin's fixtures again."""
        with self._lock:
            self._state = self._collect()

    @property
    def routes(self) -> list[Route]:
        return list(self._current().routes)

    @property
    def errors(self) -> list[str]:
        """One line per skipped fixture, naming the plugin that contributed it."""
        return list(self._current().errors)

    @property
    def scenarios(self) -> dict[str, CustomScenario]:
        """Scenarios declared by fixtures (the built-ins are in :mod:`ibgw_fake.scenarios`)."""
        return dict(self._current().scenarios)

    # -- answering --------------------------------------------------------------------------

    def find(self, request: FakeRequest, chain: tuple[str, ...] = ("connected",)):
        """The winning :class:`Route` and its path params for ``request`` when the
        active scenario chain is ``chain``, or ``(None, {})``."""
        state = self._current()
        names = set(chain)
        for name in chain:
            custom = state.scenarios.get(name)
            if custom is None:
                continue
            for methods, template in custom.hide:
                if request.method in methods and template.match(request.path) is not None:
                    return None, {}
        hide_undocumented = "documented-only" in names
        best, best_key, best_params = None, None, {}
        for route in state.routes:
            if route.scenarios is not None and not (route.scenarios & names):
                continue
            m = route.match(request)
            if m is None:
                continue
            count, params = m
            key = (
                route.scenarios is not None,
                count,
                route.template.literal_segments,
                -route.index,
            )
            if best_key is None or key > best_key:
                best, best_key, best_params = route, key, params
        if best is not None and hide_undocumented and best.undocumented:
            return None, {}
        return best, best_params

    def route(self, request: FakeRequest, chain: tuple[str, ...] = ("connected",)) -> FakeAnswer:
        """The fixture answer for ``request`` (no scenario behaviour applied)."""
        route, params = self.find(request, chain)
        if route is None:
            return not_found()
        state = self._state
        return route.answer(dataclasses.replace(request, params=params), state.errors)

    def handle(self, request: FakeRequest) -> FakeAnswer:
        """The answer of the whole fake gateway in ``request.scenario``.

        Raises :class:`ibgw_fake.scenarios.ScenarioFault` for scenarios that give
        no HTTP answer (``gateway-down``, ``slow-gateway``); the transport and
        the server turn it into a refused connection or a dripping body.
        """
        from .scenarios import respond

        status, ctype, body, cookies = respond(self, request)
        cookies = {**cookies, COOKIE_NAME: secret_value("cookie")}
        return FakeAnswer(status, ctype, body, cookies)
