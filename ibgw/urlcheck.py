"""Strict validation of ``gateway_url`` (SECURITY.md section 2).

The URL is parsed here with a small grammar of our own, never with a general URL
parser alone, because general parsers disagree about userinfo, backslashes,
percent-encoding, numeric hosts and unicode.  From the validated parts a canonical
URL is rebuilt::

    {scheme}://{host}[:{port}]/v1/api

and only that string is given to the HTTP client.  Before returning it, the
canonical URL is parsed again by ``urllib.parse.urlsplit`` and by urllib3 (the
parser ``requests`` uses); both must report exactly the host and port validated
here, or the URL is rejected.

Rules:

* scheme ``https`` (lower case), or ``http`` only on an exact local host;
* exact local hosts are ``localhost``, ``127.0.0.1`` and ``[::1]``; only these
  may be used with ``verify_tls = false``;
* with ``verify_tls = true`` another host is allowed over https: a lower-case
  ASCII DNS name (LDH labels), a canonical dotted-quad IPv4 address, or a
  canonical (compressed, lower-case) bracketed IPv6 address.  Other loopback or
  unspecified addresses, IPv4-mapped/compatible IPv6 addresses and names under
  ``.localhost`` are rejected as look-alikes of the local hosts;
* no userinfo, backslash, percent-encoding, whitespace, control or non-ASCII
  characters, query, fragment or ``;`` parameters anywhere;
* port, when given, is 1..65535 written without sign or leading zero;
* path is empty, ``/``, ``/v1/api`` or ``/v1/api/``.

Error messages start with ``gateway_url:`` and never contain the input, which
may carry a password.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from .errors import ConfigError

__all__ = [
    "LOCAL_HOSTS",
    "GatewayURL",
    "is_local_host",
    "parse_gateway_url",
    "validate_gateway_url",
]

#: The only hosts that may be used with ``verify_tls = false`` (IPv6 without brackets).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

API_PATH = "/v1/api"
MAX_URL_LENGTH = 2048

_ALLOWED_PATHS = ("", "/", API_PATH, API_PATH + "/")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://", re.ASCII)
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?", re.ASCII)
# A last label that an IPv4 parser (inet_aton, WHATWG URL) would read as a number.
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII)
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)
_IPV6_CHARS_RE = re.compile(r"[0-9a-f:]+", re.ASCII)
# Belt and braces: the canonical URL must match this grammar as a whole.
_CANONICAL_RE = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>\[[0-9a-f:]{2,39}\]|[a-z0-9](?:[a-z0-9.\-]{0,251}[a-z0-9])?)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"/v1/api",
    re.ASCII,
)

_LOCAL_NAMES = "localhost, 127.0.0.1 or [::1]"


class GatewayURL(NamedTuple):
    """A validated gateway URL: its parts and the canonical string."""

    scheme: str
    host: str  # as validated; IPv6 without brackets
    port: int | None
    url: str  # canonical: {scheme}://{host}[:{port}]/v1/api

    @property
    def is_local(self) -> bool:
        return is_local_host(self.host)


def is_local_host(host: object) -> bool:
    """True only for the exact strings ``localhost``, ``127.0.0.1``, ``::1`` or ``[::1]``."""
    return type(host) is str and (host in LOCAL_HOSTS or host == "[::1]")


def _fail(reason: str) -> ConfigError:
    # Never include the URL (or any part of it) in the message: it may carry a password.
    return ConfigError(f"gateway_url: {reason}", reason="invalid-gateway-url")


def validate_gateway_url(url: str, verify_tls: bool) -> str:
    """Validate *url* and return the canonical URL rebuilt from its parts.

    Raises :class:`ibgw.errors.ConfigError` (message starting ``gateway_url:``,
    never echoing the input) when the URL is not acceptable.
    """
    return parse_gateway_url(url, verify_tls).url


def parse_gateway_url(url: str, verify_tls: bool) -> GatewayURL:
    """Like :func:`validate_gateway_url` but returns the validated parts as well."""
    if type(verify_tls) is not bool:
        raise _fail("verify_tls must be true or false")
    if not isinstance(url, str):
        raise _fail("must be a string")
    if not url:
        raise _fail("is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _fail(f"is longer than {MAX_URL_LENGTH} characters")
    if any(not ("\x21" <= ch <= "\x7e") for ch in url):
        raise _fail("must not contain whitespace, control or non-ASCII characters")

    m = _SCHEME_RE.match(url)
    if m is None:
        raise _fail("must start with https:// (or http:// for a local gateway)")
    scheme = m.group(1)
    if scheme not in ("https", "http"):
        if scheme.lower() in ("https", "http"):
            raise _fail("scheme must be written in lower case")
        raise _fail("scheme must be https (or http for a local gateway)")
    if "\\" in url:
        raise _fail("must not contain backslashes")
    if "%" in url:
        raise _fail("must not contain percent-encoding")

    rest = url[m.end() :]
    cut = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            cut = min(cut, i)
    authority, tail = rest[:cut], rest[cut:]

    if "@" in authority:
        raise _fail("must not contain user info (user@ or user:password@)")
    if not authority:
        raise _fail("has no host")

    host, port = _split_authority(authority)
    _check_tail(tail)
    _check_host(host, scheme, verify_tls)

    shown_host = f"[{host}]" if ":" in host else host
    canonical = f"{scheme}://{shown_host}{'' if port is None else f':{port}'}{API_PATH}"
    _cross_check(canonical, scheme, host, port)
    return GatewayURL(scheme, host, port, canonical)


def _split_authority(authority: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (host possibly bracketed IPv6); host returned without brackets."""
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            raise _fail("IPv6 address is missing its closing bracket")
        host = authority[1:end]
        after = authority[end + 1 :]
        if after and not after.startswith(":"):
            raise _fail("unexpected characters after the IPv6 address")
        if "[" in host or "]" in after:
            raise _fail("host contains stray brackets")
        port_text = after[1:] if after else None
        host = _check_ipv6(host)
    else:
        if "[" in authority or "]" in authority:
            raise _fail("host contains stray brackets")
        host, sep, port_text = authority.partition(":")
        if not sep:
            port_text = None
        elif ":" in port_text:
            raise _fail("IPv6 addresses must be written in brackets, like [::1]")
        if not host:
            raise _fail("has no host")
    if port_text is None:
        return host, None
    if not port_text:
        raise _fail("port is empty")
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise _fail("port must be a number from 1 to 65535, without sign or leading zero")
    return host, int(port_text)


def _check_tail(tail: str) -> None:
    if "?" in tail:
        raise _fail("must not have a query")
    if "#" in tail:
        raise _fail("must not have a fragment")
    if ";" in tail:
        raise _fail("must not have ;parameters")
    if "@" in tail:
        raise _fail("path must not contain @")
    if tail not in _ALLOWED_PATHS:
        raise _fail(f"path must be {API_PATH} (or empty)")


def _check_ipv6(text: str) -> str:
    if not text:
        raise _fail("IPv6 address is empty")
    if not _IPV6_CHARS_RE.fullmatch(text):
        if any("A" <= c <= "F" for c in text):
            raise _fail("IPv6 address must be written in lower case")
        raise _fail("IPv6 address must be plain hexadecimal groups (no zone id or IPv4 part)")
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise _fail("host is not a valid IPv6 address") from None
    if addr.compressed != text:
        raise _fail("IPv6 address must be written in compressed form, like [::1]")
    if addr.ipv4_mapped is not None:
        raise _fail("IPv4-mapped IPv6 addresses are not allowed")
    if text != "::1" and (
        addr.is_loopback or addr.is_unspecified or int(addr) >> 32 == 0  # IPv4-compatible ::/96
    ):
        raise _fail(f"loopback look-alike; use exactly {_LOCAL_NAMES}")
    return text


def _check_host(host: str, scheme: str, verify_tls: bool) -> None:
    if ":" not in host:  # not IPv6 (already checked); DNS name or IPv4
        _check_name_or_ipv4(host)
    local = host in LOCAL_HOSTS
    if not local and scheme != "https":
        raise _fail(f"http is allowed only for {_LOCAL_NAMES}; use https")
    if not local and not verify_tls:
        raise _fail(
            f"verify_tls = false is allowed only for {_LOCAL_NAMES}; "
            "set verify_tls = true (with ca_bundle or tls_fingerprint if needed)"
        )


def _check_name_or_ipv4(host: str) -> None:
    if len(host) > 253:
        raise _fail("host name is longer than 253 characters")
    if host.lower() != host:
        raise _fail("host must be written in lower case")
    if host.endswith("."):
        raise _fail("host must not end with a dot")
    labels = host.split(".")
    if any(not label for label in labels):
        raise _fail("host has an empty label")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise _fail(
                "host must be a DNS name of letters, digits and inner hyphens, "
                "or a dotted-quad IPv4 address"
            )
    if _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
        # Would be read as a number by inet_aton / WHATWG: only canonical dotted quads.
        try:
            addr = ipaddress.IPv4Address(host)
        except ValueError:
            raise _fail("numeric host must be a dotted-quad IPv4 address like 127.0.0.1") from None
        if str(addr) != host:
            raise _fail("IPv4 address must be a canonical dotted quad without leading zeros")
        if host != "127.0.0.1" and (addr.is_loopback or addr.is_unspecified or labels[0] == "0"):
            raise _fail(f"loopback look-alike; use exactly {_LOCAL_NAMES}")
        return
    if host != "localhost" and host.endswith(".localhost"):
        raise _fail(f"names under .localhost are loopback look-alikes; use exactly {_LOCAL_NAMES}")


def _cross_check(canonical: str, scheme: str, host: str, port: int | None) -> None:
    """The HTTP stack's own parsers must see exactly what we validated."""
    m = _CANONICAL_RE.fullmatch(canonical)
    if m is None or m.group("host").strip("[]") != host:
        raise _fail("could not be rebuilt into a canonical URL")

    from urllib.parse import urlsplit

    try:
        parts = urlsplit(canonical)
        split_port = parts.port
    except ValueError:
        raise _fail("is not understood by urllib.parse") from None
    if (
        parts.scheme != scheme
        or parts.hostname != host
        or split_port != port
        or parts.username is not None
        or parts.password is not None
        or parts.path != API_PATH
        or parts.query
        or parts.fragment
    ):
        raise _fail("urllib.parse disagrees about the host or port")

    try:
        from urllib3.util import parse_url
    except ImportError:  # fail closed: requests (and so urllib3) is a core dependency
        raise _fail("cannot be cross-checked: urllib3 is not installed") from None
    try:
        u = parse_url(canonical)
    except Exception:
        raise _fail("is not understood by urllib3") from None
    u_host = u.host or ""
    if u_host.startswith("[") and u_host.endswith("]"):
        u_host = u_host[1:-1]
    if (
        u.scheme != scheme
        or u_host != host
        or u.port != port
        or u.auth is not None
        or u.path != API_PATH
        or u.query is not None
        or u.fragment is not None
    ):
        raise _fail("urllib3 disagrees about the host or port")
