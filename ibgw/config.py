"""Configuration: defaults < TOML file < environment ``IBGW_*`` < flags.

``load_config(flags, environ)`` merges the sources, validates every field and
returns a frozen :class:`Config`.  Every problem raises
:class:`ibgw.errors.ConfigError` with a one-line message that starts with the
field name (``timeout: must be a number between 0.1 and 300 (from IBGW_TIMEOUT)``)
and never echoes a secret-looking value (``gateway_url`` and ``tls_fingerprint``
values are never echoed).

Only the variables listed in :data:`ENV_VARS` (plus ``IBGW_CONFIG``) are read.
Proxy and CA-bundle variables (``HTTPS_PROXY``, ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE``, ``SSL_CERT_FILE``, ...) are deliberately not read and cannot
change a ``Config``.

This module imports only the standard library at start-up; ``platformdirs`` is
imported inside the functions that need it.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from .errors import ConfigError
from .urlcheck import validate_gateway_url

__all__ = [
    "BACKENDS",
    "CONFIG_ENV_VAR",
    "ENV_VARS",
    "FILE_KEYS",
    "OUTPUTS",
    "Config",
    "default_config_path",
    "load_config",
    "user_state_dir",
]

APP_NAME = "ibgw"
BACKENDS = ("live", "fake")
OUTPUTS = ("table", "json", "csv")
CONFIG_ENV_VAR = "IBGW_CONFIG"
CONFIG_FILE_NAME = "config.toml"
MAX_CONFIG_BYTES = 1024 * 1024

#: field name -> environment variable
ENV_VARS: Mapping[str, str] = MappingProxyType(
    {
        "backend": "IBGW_BACKEND",
        "scenario": "IBGW_SCENARIO",
        "gateway_url": "IBGW_GATEWAY_URL",
        "verify_tls": "IBGW_VERIFY_TLS",
        "ca_bundle": "IBGW_CA_BUNDLE",
        "tls_fingerprint": "IBGW_TLS_FINGERPRINT",
        "output": "IBGW_OUTPUT",
        "debug": "IBGW_DEBUG",
        "timeout": "IBGW_TIMEOUT",
        "allow_undocumented": "IBGW_ALLOW_UNDOCUMENTED",
        "account": "IBGW_ACCOUNT",
        "latency_ms": "IBGW_LATENCY_MS",
        "state_dir": "IBGW_STATE_DIR",
        "audit_max_bytes": "IBGW_AUDIT_MAX_BYTES",
        "audit_keep": "IBGW_AUDIT_KEEP",
    }
)
#: keys accepted in the TOML file (top level or under ``[ibgw]``) and as flags
FILE_KEYS = tuple(ENV_VARS)
_FLAG_KEYS = frozenset(FILE_KEYS) | {"config"}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_BOOL_FIELDS = frozenset({"verify_tls", "debug", "allow_undocumented"})
_OPTIONAL_FIELDS = frozenset({"ca_bundle", "tls_fingerprint", "account"})
_PATH_FIELDS = frozenset({"ca_bundle", "state_dir"})
_SAFE_ECHO_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}", re.ASCII)
_SCENARIO_RE = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,62})", re.ASCII)
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9]{1,32}", re.ASCII)
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_INT_RE = re.compile(r"[0-9]+", re.ASCII)
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_HEXPAIRS_RE = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){31}", re.ASCII)


class _Invalid(Exception):
    """A field value is invalid; the text is the reason, without the value."""


def _user_config_dir() -> str:
    import platformdirs

    return platformdirs.user_config_dir(APP_NAME, appauthor=False)


def _platform_state_dir() -> str:
    import platformdirs

    return platformdirs.user_state_dir(APP_NAME, appauthor=False)


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def default_config_path(environ: Mapping[str, str] | None = None) -> str:
    """``$IBGW_CONFIG`` if set and non-empty, else ``<user config dir>/config.toml``."""
    value = _env(environ).get(CONFIG_ENV_VAR)
    if value:
        return _abspath(value)
    return os.path.join(_user_config_dir(), CONFIG_FILE_NAME)


def user_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$IBGW_STATE_DIR`` if set and non-empty, else the platform's user state dir for ibgw."""
    value = _env(environ).get("IBGW_STATE_DIR")
    if value:
        return _abspath(value)
    return _platform_state_dir()


def _abspath(path: str, base: str | None = None) -> str:
    path = os.path.expanduser(path)
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return os.path.abspath(path)


def _home() -> str | None:
    home = os.path.expanduser("~")
    if not home or home == "~" or os.path.dirname(home) == home:  # unknown, or "/"
        return None
    return os.path.normpath(home)


def _shorten_home(path: str | None) -> str | None:
    """``/home/me/x`` -> ``~/x`` (also ``~`` itself); other paths unchanged."""
    if path is None:
        return None
    home = _home()
    if home is None:
        return path
    if path == home:
        return "~"
    if path.startswith(home + os.sep):
        return "~" + path[len(home) :].replace(os.sep, "/")
    return path


# --------------------------------------------------------------------------- field checks
# Each check takes an already-typed value and returns the normalised value, or raises
# _Invalid with a reason that does not contain the value.


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if type(value) is str and value in choices:
            return value
        shown = f" (got {value!r})" if type(value) is str and _SAFE_ECHO_RE.fullmatch(value) else ""
        raise _Invalid(f"must be one of {', '.join(choices)}{shown}")

    return check


def _check_scenario(value: Any) -> str:
    if type(value) is str and _SCENARIO_RE.fullmatch(value):
        return value
    raise _Invalid("must be a scenario name of lower-case letters, digits and hyphens")


def _check_url_type(value: Any) -> str:
    # The real check needs verify_tls; it happens in Config.__post_init__.
    if type(value) is not str:
        raise _Invalid("must be a string")
    return value


def _check_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _Invalid("must be true or false")


def _check_ca_bundle(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is not str or not value or "\x00" in value:
        raise _Invalid("must be the path of a PEM file")
    path = _abspath(value)
    if not os.path.exists(path):
        raise _Invalid("file not found")
    if not os.path.isfile(path):
        raise _Invalid("is not a regular file")
    return path


def _check_fingerprint(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str and (_HEX64_RE.fullmatch(value) or _HEXPAIRS_RE.fullmatch(value)):
        return value.replace(":", "").lower()
    raise _Invalid(
        "must be a SHA-256 certificate fingerprint: 64 hex digits, "
        "optionally as 32 colon-separated pairs"
    )


def _check_timeout(value: Any) -> float:
    if type(value) in (int, float) and math.isfinite(value) and 0.1 <= value <= 300:
        return float(value)
    raise _Invalid("must be a number between 0.1 and 300")


def _check_account(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str and _ACCOUNT_RE.fullmatch(value):
        return value
    raise _Invalid("must be 1 to 32 letters or digits")


def _check_latency(value: Any) -> int:
    if type(value) is int and 0 <= value <= 60000:
        return value
    raise _Invalid("must be a whole number of milliseconds between 0 and 60000")


def _check_audit_max_bytes(value: Any) -> int:
    if type(value) is int and 8192 <= value <= 1 << 40:
        return value
    raise _Invalid("must be a whole number of bytes between 8192 and 2**40")


def _check_audit_keep(value: Any) -> int:
    if type(value) is int and 1 <= value <= 100000:
        return value
    raise _Invalid("must be a whole number of segments between 1 and 100000")


def _check_state_dir(value: Any) -> str:
    if type(value) is not str or not value or "\x00" in value:
        raise _Invalid("must be a directory path")
    return _abspath(value)


def _check_optional_path(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is not str or "\x00" in value:
        raise _Invalid("must be a file path")
    return _abspath(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "backend": _choice(BACKENDS),
    "scenario": _check_scenario,
    "gateway_url": _check_url_type,
    "verify_tls": _check_bool,
    "ca_bundle": _check_ca_bundle,
    "tls_fingerprint": _check_fingerprint,
    "output": _choice(OUTPUTS),
    "debug": _check_bool,
    "timeout": _check_timeout,
    "allow_undocumented": _check_bool,
    "account": _check_account,
    "latency_ms": _check_latency,
    "state_dir": _check_state_dir,
    "audit_max_bytes": _check_audit_max_bytes,
    "audit_keep": _check_audit_keep,
    "config_path": _check_optional_path,
}

_SOURCE_VALUES = frozenset({"default", "file", "env", "flag"})


# --------------------------------------------------------------------------- Config


@dataclass(frozen=True)
class Config:
    """Validated settings for one invocation.  Construction validates (also when direct)."""

    backend: str = "live"
    scenario: str = "connected"
    gateway_url: str = "https://localhost:5000/v1/api"
    verify_tls: bool = False
    ca_bundle: str | None = None
    tls_fingerprint: str | None = None
    output: str = "table"
    debug: bool = False
    timeout: float = 15.0
    allow_undocumented: bool = True
    account: str | None = None
    latency_ms: int = 0
    state_dir: str = field(default_factory=user_state_dir)
    audit_max_bytes: int = 16 << 20
    audit_keep: int = 30
    config_path: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            try:
                value = check(getattr(self, name))
            except _Invalid as exc:
                raise ConfigError(f"{name}: {exc}") from None
            object.__setattr__(self, name, value)
        if self.ca_bundle is not None and not self.verify_tls:
            raise ConfigError("ca_bundle: requires verify_tls = true")
        if self.tls_fingerprint is not None and not self.verify_tls:
            raise ConfigError("tls_fingerprint: requires verify_tls = true")
        object.__setattr__(
            self, "gateway_url", validate_gateway_url(self.gateway_url, self.verify_tls)
        )
        if not isinstance(self.sources, Mapping):
            raise ConfigError("sources: must be a mapping")
        known = [f.name for f in fields(self) if f.name != "sources"]
        srcs = dict.fromkeys(known, "default")
        for key, src in self.sources.items():
            if key not in known or src not in _SOURCE_VALUES:
                raise ConfigError("sources: unknown field or source")
            srcs[key] = src
        object.__setattr__(self, "sources", MappingProxyType(srcs))

    def public_dict(self) -> dict[str, dict[str, Any]]:
        """Every setting with its source, for ``ibgw config show``.

        ``{"backend": {"value": "live", "source": "default"}, ...}``; paths under the
        user's home directory are shown as ``~/...``.  Nothing here is secret.
        """
        out: dict[str, dict[str, Any]] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name in ("ca_bundle", "state_dir", "config_path"):
                value = _shorten_home(value)
            out[f.name] = {"value": value, "source": self.sources.get(f.name, "default")}
        return out


# --------------------------------------------------------------------------- loading


def _where(source: str, name: str) -> str:
    if source == "env":
        return ENV_VARS.get(name, CONFIG_ENV_VAR)
    if source == "file":
        return "config file"
    return "command line"


def _parse_bool_text(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _Invalid("must be one of 1/0, true/false, yes/no, on/off")


def _from_text(name: str, text: str) -> Any:
    """Convert a string from the environment or a string flag to the field's type."""
    if name in _OPTIONAL_FIELDS and text == "":
        return None
    if name in _BOOL_FIELDS:
        return _parse_bool_text(text)
    if name == "timeout":
        if not _NUMBER_RE.fullmatch(text):
            raise _Invalid("must be a number between 0.1 and 300")
        return float(text)
    if name == "latency_ms":
        if not _INT_RE.fullmatch(text) or len(text) > 6:
            raise _Invalid("must be a whole number of milliseconds between 0 and 60000")
        return int(text)
    if name in ("audit_max_bytes", "audit_keep"):
        if not _INT_RE.fullmatch(text) or len(text) > 14:
            raise _CHECKS[name](None)  # raises _Invalid with the field's reason
        return int(text)
    return text


def _coerce(name: str, value: Any, source: str, file_dir: str | None) -> Any:
    """Type-convert and check one raw value from *source*; returns the normalised value."""
    if source == "env" or (source == "flag" and type(value) is str):
        value = _from_text(name, value)
    elif source == "file":
        if name in ("timeout",) and type(value) is int:
            value = float(value)
    if name in _PATH_FIELDS and type(value) is str and value:
        # Relative paths in the config file are relative to the file's directory.
        value = _abspath(value, file_dir if source == "file" else None)
    return _CHECKS[name](value)


def _read_file(path: str) -> dict[str, Any]:
    shown = _shorten_home(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError(f"config: {shown} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {shown} ({exc.strerror or 'error'})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config: {shown} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config: {shown} is not valid UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message is a fixed phrase plus a position; keep only the position.
        m = re.search(r"at line (\d+), column (\d+)", str(exc))
        where = f" at line {m.group(1)}, column {m.group(2)}" if m else ""
        raise ConfigError(f"config: {shown}: invalid TOML{where}") from None

    merged: dict[str, Any] = {}
    table = doc.pop("ibgw", None)
    if table is not None and not isinstance(table, dict):
        raise ConfigError("ibgw: must be a table ([ibgw]) in the config file")
    for key, value in doc.items():
        _check_file_key(key)
        merged[key] = value
    for key, value in (table or {}).items():
        _check_file_key(key, prefix="ibgw.")
        if key in merged:
            raise ConfigError(f"{key}: set both at top level and under [ibgw] in the config file")
        merged[key] = value
    return merged


def _check_file_key(key: str, prefix: str = "") -> None:
    if key not in FILE_KEYS:
        shown = key if _SAFE_ECHO_RE.fullmatch(key) else "(unprintable key)"
        raise ConfigError(
            f"{prefix}{shown}: unknown key in the config file (known keys: {', '.join(FILE_KEYS)})"
        )


def _config_location(flags: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, str]:
    """Return (path, source) of the config file to consult."""
    flag = flags.get("config")
    if flag is not None:
        if type(flag) is not str and not isinstance(flag, os.PathLike):
            raise ConfigError("config: must be a file path")
        flag = os.fspath(flag)
        if not flag or "\x00" in flag:
            raise ConfigError("config: must be a file path")
        return _abspath(flag), "flag"
    env = environ.get(CONFIG_ENV_VAR)
    if env:
        if "\x00" in env:
            raise ConfigError(f"config: {CONFIG_ENV_VAR} must be a file path")
        return _abspath(env), "env"
    return default_config_path({}), "default"


def load_config(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge defaults < config file < environment < *flags* and validate.

    *flags* keys are field names (plus ``config`` for ``--config PATH``); a value of
    ``None`` means "not given".  *environ* defaults to ``os.environ``.
    """
    flags = dict(flags or {})
    environ = _env(environ)
    unknown = sorted(k for k, v in flags.items() if k not in _FLAG_KEYS and v is not None)
    if unknown:
        raise TypeError(f"load_config: unknown flag keys {unknown}")

    path, path_source = _config_location(flags, environ)
    if os.path.exists(path) or path_source != "default":
        if not os.path.exists(path):
            raise ConfigError(f"config: file not found: {_shorten_home(path)}")
        file_values = _read_file(path)
    else:
        file_values = {}
    file_dir = os.path.dirname(path)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {"config_path": path_source}
    for name in FILE_KEYS:
        env_name = ENV_VARS[name]
        if flags.get(name) is not None:
            source, raw = "flag", flags[name]
        elif env_name in environ and not (name == "state_dir" and environ[env_name] == ""):
            source, raw = "env", environ[env_name]
        elif name in file_values:
            source, raw = "file", file_values[name]
        else:
            continue
        try:
            values[name] = _coerce(name, raw, source, file_dir)
        except _Invalid as exc:
            raise ConfigError(f"{name}: {exc} (from {_where(source, name)})") from None
        sources[name] = source

    if "state_dir" not in values:
        values["state_dir"] = user_state_dir({})
    try:
        return Config(**values, config_path=path, sources=sources)
    except ConfigError as exc:
        # Cross-field checks (gateway_url against verify_tls, ca_bundle/tls_fingerprint
        # needing verify_tls): say where the offending field was set.
        name = exc.message.partition(":")[0]
        source = sources.get(name, "default")
        if source == "default" or name == "config_path":
            raise
        raise ConfigError(
            f"{exc.message} (from {_where(source, name)})", reason=exc.reason, hint=exc.hint
        ) from None
