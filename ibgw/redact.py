"""Redaction of every output channel: CLI output, MCP answers, logs, audit records.

One process-wide :class:`Redactor` (``REDACTOR``) knows three kinds of secrets:

* **secret keys**: JSON key names whose values are always secret (matched after
  lowercasing; a name ending in ``*`` matches as a prefix, e.g. ``xyzab*``);
* **patterns**: regular expressions whose matches are secret wherever they appear in
  text (a pattern with a named group ``secret`` replaces only that group);
* **secret values** seen at run time (cookie values, the tickle ``session``, ``userId``,
  the ``MAC``...), remembered with :func:`add_secret` or :func:`harvest` and replaced
  everywhere they appear, even inside free text, URL-encoded or JSON-escaped.

:func:`text` also shortens the user's home directory to ``~``. Callers that print use
:func:`safe_text`, which raises :class:`RedactionFailed` instead of returning anything
unredacted (fail closed). :func:`ibgw.logs.install_logging` routes every log record through the
same redaction (at record creation, so every handler sees redacted records, and again
on the final formatted line) and keeps the HTTP stack's own debug output off.

Only the standard library is imported here.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import re
import string
import threading
from collections.abc import Iterable
from functools import partial
from itertools import chain, compress
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"

# The one list of secret key names (SECURITY.md section 1, reference section 1.4).
# The default plugin ``ibgw.default_plugins.redaction`` registers exactly this list.
BUILTIN_KEYS: tuple[str, ...] = (
    "session",
    "sessionid",
    "jsessionid",
    "x-sess-uuid",
    "cp",
    "cp.qa",
    "cp.alpha",
    "cp.beta",
    "api",
    "api.nn",
    "api.alpha",
    "userid",
    "user_id",
    "user_name",
    "username",
    "credential",
    "paper_user_name",
    "ip",
    "mac",
    "hardware_info",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "oauth_token",
    "bearer_token",
    "access_token",
    "refresh_token",
    "token",
    "password",
    "passwd",
    "secret",
    "xyzab*",
)

_VALUE = r"[^\s;,&'\"<>]+"
_HEADERS = ("cookie", "authorization")
# (pattern, literals): on ASCII text a pattern runs only if one of its literals occurs
# in the lowercased text, which keeps redaction of large outputs fast.
_BUILTIN_RULES: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    # Header lines, wholesale: "Set-Cookie: ...", "Cookie: ...", "Authorization: ...".
    # Idempotent: a value already redacted (up to the end of its line or, in JSON text,
    # of its string) is left alone, so a second pass cannot eat the JSON after it.
    (
        r"(?im)\b(?:set-cookie|cookie|proxy-authorization|authorization)[ \t]*:[ \t]*+"
        r"(?!\[redacted\](?:[\"\\]|$))(?P<secret>[^\r\n]+)",
        _HEADERS,
    ),
    # The same headers inside a repr()/JSON of a header mapping: {'Cookie': '...'}.
    (
        r"(?i)(?P<q>['\"])(?:set-cookie|cookie|proxy-authorization|authorization)(?P=q)\s*:\s*"
        r"(?P<q2>['\"])(?P<secret>(?:(?!(?P=q2)).)*)(?P=q2)",
        _HEADERS,
    ),
    # The websocket cookie api={"session":"..."}.
    (r"(?i)\bapi=(?P<secret>\{[^}\r\n]*\}?)", ("api=",)),
    # Cookie pairs: JSESSIONID=..., x-sess-uuid=..., USERID=..., XYZAB...=..., cp=..., api=...
    (
        r"(?i)(?<![\w.-])(?:jsessionid|x-sess-uuid|userid|xyzab[\w.]*|sbid|tabid|device\.info|"
        r"cp(?:\.\w+)?|api(?:\.\w+)?)=(?P<secret>" + _VALUE + r")",
        (
            "jsessionid=",
            "x-sess-uuid=",
            "userid=",
            "xyzab",
            "sbid=",
            "tabid=",
            "device.info=",
            "cp=",
            "cp.",
            "api=",
            "api.",
        ),
    ),
    # Tokens and passwords in query strings or key=value text.
    (
        r"(?i)(?:[a-z_]*token|passw(?:or)?d|secret)=(?P<secret>[^\s&#;,'\"<>]+)",
        ("token=", "passwd=", "password=", "secret="),
    ),
    # Bearer credentials.
    (r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)", ("bearer",)),
    # A MAC address in a key=value or key: value slot, in any spelling (bare 12 hex
    # digits included, which free text cannot tell from a number).
    (
        r"(?i)\bmac(?:[_ -]?addr(?:ess)?)?['\"]?\s*[:=]\s*['\"]?(?P<secret>"
        r"[0-9a-f]{12}|[0-9a-f]{4}(?:\.[0-9a-f]{4}){2}|[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5})"
        r"(?![0-9a-f])",
        ("mac",),
    ),
    # MAC addresses grouped by dots (Cisco: aabb.ccdd.eeff).
    (
        r"(?<![0-9A-Fa-f.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![0-9A-Fa-f]|\.[0-9A-Fa-f])",
        None,
    ),
    # MAC addresses (xx:xx:xx:xx:xx:xx or xx-xx-xx-xx-xx-xx).
    (
        r"(?<![0-9A-Fa-f:-])[0-9A-Fa-f]{2}(?P<sep>[:-])[0-9A-Fa-f]{2}(?:(?P=sep)[0-9A-Fa-f]{2}){4}"
        r"(?![0-9A-Fa-f:-])",
        None,
    ),
)
BUILTIN_PATTERNS: tuple[str, ...] = tuple(p for p, _ in _BUILTIN_RULES)
_PREFILTER = {p: lits for p, lits in _BUILTIN_RULES}

# A sketch of a text for a pattern without literals: the text's UTF-8 bytes translated
# with ``table`` keep the shape a match needs, and ``marker`` occurs in the sketch of
# every text the pattern matches. A MAC address (hex pairs joined by five ``:`` or five
# ``-``) sketches to ``hh:hh:hh:hh:hh:hh``, which contains ``:hh:`` (the bytes of other
# characters, multi-byte ones included, all become blanks); texts without it skip the
# regex, which is slow on large outputs (it tries its lookbehind at every position).
_MAC_SKETCH = bytes(
    ord("h") if chr(b) in string.hexdigits else ord(":") if chr(b) in ":-" else ord(" ")
    for b in range(256)
)
# The dot-grouped spelling (aabb.ccdd.eeff) sketches to hhhh.hhhh.hhhh.
_DOT_MAC_SKETCH = bytes(
    ord("h") if chr(b) in string.hexdigits else ord(".") if chr(b) == "." else ord(" ")
    for b in range(256)
)
_SKETCHES = {
    BUILTIN_PATTERNS[-1]: (_MAC_SKETCH, b":hh:"),
    BUILTIN_PATTERNS[-2]: (_DOT_MAC_SKETCH, b"h.hhhh.h"),
}
_SKETCH_MIN_LEN = 256  # shorter texts run the pattern itself
# The only characters beyond ASCII that a case-insensitive pattern matches to an ASCII
# letter, with that letter (tests/test_redact_batch.py checks every code point). Once they
# are replaced, a pattern's literal occurs in the lower-cased text whenever it matches.
_CASE_TWINS = (("\u0130", "i"), ("\u0131", "i"), ("\u017f", "s"), ("\u212a", "k"))


def _literal_text(s: str) -> str:
    """The text a pattern's literals are looked for in (lower case)."""
    if not s.isascii():
        for twin, letter in _CASE_TWINS:
            if twin in s:
                s = s.replace(twin, letter)
    return s.lower()


# Characters from rare to common in gateway data and rendered output: a needle is looked
# for only when its rarest character occurs in the text (one memchr-speed scan per
# character instead of one substring search per needle).
_RARITY = "=/~|@#%&;+*!?$^`\\<>[]{}()'\"zqxjkvbpygfwmucldrhsnioate_.-:, \t0123456789"

_CONTAINERS = (dict, list, tuple, set, frozenset)
_FLAT = frozenset({str, int, float, bool, type(None)})
_NUMBER_CHARS = "0123456789.-+einfa"  # every character of str() of an int or float


def _printed_as(text: str) -> list:
    """The ints and floats whose ``str()`` is ``text``."""
    found: list = []
    for kind in (int, float):
        try:
            number = kind(text)
        except (ValueError, OverflowError):
            continue
        if str(number) == text:
            found.append(number)
    return found


def _sketch_lacks(s: str, sketch) -> bool:
    """True when the sketch proves its pattern cannot match ``s``."""
    table, marker = sketch
    return marker not in s.encode("utf-8", "surrogatepass").translate(table)


_MAC_SHAPE = re.compile(
    r"[0-9A-Fa-f]{12}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2}"
    r"|[0-9A-Fa-f]{2}(?P<sep>[:-])[0-9A-Fa-f]{2}(?:(?P=sep)[0-9A-Fa-f]{2}){4}"
)


def mac_spellings(value: str) -> set[str]:
    """Every common spelling of ``value`` if it is a MAC address (colons, dashes,
    dot-grouped ``aabb.ccdd.eeff``, bare hex; matching ignores case), else nothing."""
    if len(value) > 17 or not _MAC_SHAPE.fullmatch(value):
        return set()
    digits = re.sub(r"[^0-9A-Fa-f]", "", value).lower()
    if len(digits) != 12 or value.isdigit():
        return set()  # twelve decimal digits alone: more likely a number than a MAC
    pairs = [digits[i : i + 2] for i in range(0, 12, 2)]
    return {
        ":".join(pairs),
        "-".join(pairs),
        ".".join(digits[i : i + 4] for i in range(0, 12, 4)),
        digits,
    }


def set_cookie_pairs(header: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` of every cookie in one ``Set-Cookie`` header value,
    including headers folded into one line with commas (``a=b, X=SECRET; Path=/``).
    Attributes (``Path``, ``Expires``...) are not cookies; the comma inside an
    ``Expires`` date does not start a new cookie (what follows it has no ``=``)."""
    pairs = []
    for cookie in _FOLD.split(str(header)):
        first = cookie.split(";", 1)[0]
        name, sep, value = first.partition("=")
        name, value = name.strip(), value.strip().strip('"')
        if sep and name and name.lower() not in _COOKIE_ATTRIBUTES:
            pairs.append((name, value))
    return pairs


_FOLD = re.compile(r",\s*(?=[^\s;,=]+=)")
_COOKIE_ATTRIBUTES = frozenset(
    {"path", "domain", "expires", "max-age", "samesite", "secure", "httponly", "priority"}
)


def _rarity(char: str) -> int:
    return _RARITY.find(char)  # -1 (rarest) for characters not listed


_TRIVIAL = frozenset({"true", "false", "null", "none", "nan", "undefined", REDACTED.lower()})
_TRIVIAL_RE = re.compile(r"^[\s0.:\-]*$")
MIN_SECRET_LEN = 4


class RedactionFailed(Exception):
    """Redaction could not be completed; the caller must print nothing."""

    def __init__(self, message: str = "redaction failed"):
        super().__init__(message)


class Redactor:
    """Secret keys, patterns and harvested values, and the functions that remove them."""

    def __init__(self):
        self._lock = threading.RLock()
        self._keys: set[str] = set()
        self._prefixes: tuple[str, ...] = ()
        self._patterns: list[re.Pattern] = []
        self._literals: list[tuple[str, ...] | None] = []
        self._sketches: list[tuple | None] = []
        self._pattern_sources: set[tuple[str, int]] = set()
        self._secrets: set[str] = set()
        self._secret_lower: frozenset[str] = frozenset()
        self._secret_fold: tuple[str, ...] = ()
        self._secret_re: re.Pattern | None = None
        self._home_key: object = object()
        self._home_re: re.Pattern | None = None
        # (home key, lower-case needles grouped by their rarest character,
        #  patterns without literals with their sketch, numeric-looking secrets)
        self._quick: tuple | None = None
        self._key_cache: dict = {}  # key -> (redacted key, is secret key); keys repeat in records
        self._text_cache: dict = {}  # short values that repeat (currencies, asset classes...)
        self.add_keys(BUILTIN_KEYS)
        self.add_patterns(BUILTIN_PATTERNS)

    # -- registration ---------------------------------------------------------
    def add_keys(self, keys: Iterable[str]) -> None:
        """Add secret key names (case-insensitive; ``name*`` matches a prefix)."""
        with self._lock:
            prefixes = set(self._prefixes)
            for key in keys:
                k = str(key).strip().lower()
                if not k:
                    continue
                if k.endswith("*"):
                    if k[:-1]:
                        prefixes.add(k[:-1])
                else:
                    self._keys.add(k)
            self._prefixes = tuple(sorted(prefixes))

    def add_patterns(self, patterns: Iterable[str | re.Pattern]) -> None:
        """Add regular expressions whose matches are secret (duplicates are ignored)."""
        with self._lock:
            for pattern in patterns:
                compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
                ident = (compiled.pattern, compiled.flags)
                if ident in self._pattern_sources:
                    continue
                self._pattern_sources.add(ident)
                self._patterns.append(compiled)
                self._literals.append(
                    _PREFILTER.get(compiled.pattern) if compiled.flags & re.UNICODE else None
                )
                self._sketches.append(
                    _SKETCHES.get(compiled.pattern) if compiled.flags == re.UNICODE else None
                )
                self._quick = None

    def register(self, keys: Iterable[str] = (), patterns: Iterable[str | re.Pattern] = ()) -> None:
        """The ``register`` callback of the ``ibgw_redaction_rules`` hook."""
        if isinstance(keys, str):
            keys = (keys,)
        if isinstance(patterns, str | re.Pattern):
            patterns = (patterns,)
        self.add_keys(keys)
        self.add_patterns(patterns)

    def is_secret_key(self, key) -> bool:
        if not isinstance(key, str):
            return False
        k = key.lower()
        return k in self._keys or (bool(self._prefixes) and k.startswith(self._prefixes))

    def add_secret(self, value) -> None:
        """Remember a secret value; it is replaced wherever it appears from now on."""
        if value is None or isinstance(value, bool):
            return
        s = str(value)
        stripped = s.strip()
        if (
            len(stripped) < MIN_SECRET_LEN
            or stripped.lower() in _TRIVIAL
            or _TRIVIAL_RE.match(stripped)
        ):
            return
        variants = {s, stripped}
        try:
            variants.add(json.dumps(stripped, ensure_ascii=False)[1:-1])
            variants.add(json.dumps(stripped, ensure_ascii=True)[1:-1])
        except (TypeError, ValueError):  # pragma: no cover - str always encodes
            pass
        variants.add(quote(stripped, safe=""))
        variants.add(quote_plus(stripped, safe=""))
        variants |= mac_spellings(stripped)
        home_short = self._shorten_home(stripped)
        if home_short != stripped:
            variants.add(home_short)
        variants = {v for v in variants if len(v.strip()) >= MIN_SECRET_LEN}
        with self._lock:
            new = variants - self._secrets
            if not new:
                return
            self._secrets |= new
            self._secret_lower = frozenset(v.lower() for v in self._secrets)
            self._secret_fold = tuple({v.casefold() for v in self._secrets})
            self._secret_re = None  # rebuilt on next use
            self._quick = None

    def harvest(self, obj) -> None:
        """Remember every value found under a secret key anywhere in ``obj``."""
        # Level by level: each distinct key is checked once per answer (a 5,000 position
        # answer has 180,000 values under a few dozen keys), and outside the subtrees of
        # secret keys only containers matter; they are picked out of each level's values
        # at C speed, by type.
        seen: dict = {}  # key -> is a secret key
        level = [obj] if isinstance(obj, _CONTAINERS) else []
        depth = 0
        while level and depth <= 200:
            dicts = [x for x in level if isinstance(x, dict)]
            values = list(chain.from_iterable(x for x in level if not isinstance(x, dict)))
            if dicts:
                keys = set().union(*dicts)
                for key in keys - seen.keys():
                    seen[key] = self.is_secret_key(key)
                secret = {key for key in keys if seen[key]}
                for d in dicts:
                    if not secret or secret.isdisjoint(d):
                        values.extend(d.values())
                        continue
                    for key, value in d.items():
                        if seen[key]:
                            self._harvest_all(value, depth + 1)
                        else:
                            values.append(value)
            types = list(map(type, values))
            found = {t for t in set(types) if issubclass(t, _CONTAINERS)}
            level = list(compress(values, map(found.__contains__, types)))
            depth += 1

    def _harvest_all(self, obj, depth: int) -> None:
        """Remember every value in ``obj`` (found under a secret key)."""
        if isinstance(obj, dict):
            obj = obj.values()
        elif not isinstance(obj, _CONTAINERS):
            if obj is not None and not isinstance(obj, bool):
                self.add_secret(obj)
            return
        if depth > 200:
            return
        for value in obj:
            self._harvest_all(value, depth + 1)

    def harvest_text(self, s: str) -> None:
        """Remember the secret parts of pattern matches in ``s`` (e.g. header values)."""
        if not isinstance(s, str):
            return
        for pattern in list(self._patterns):
            for m in pattern.finditer(s):
                if "secret" in pattern.groupindex and m.group("secret"):
                    value = m.group("secret")
                    self.add_secret(value)
                    for _name, cookie in set_cookie_pairs(value):
                        self.add_secret(cookie)
                    for part in re.split(r"[;,]\s*", value):
                        if "=" in part:
                            self.add_secret(part.split("=", 1)[1])

    def reset(self) -> None:
        """Forget harvested secrets and plugin rules; keep the built-ins (tests)."""
        with self._lock:
            self._keys = set()
            self._prefixes = ()
            self._patterns = []
            self._literals = []
            self._sketches = []
            self._pattern_sources = set()
            self._secrets = set()
            self._secret_lower = frozenset()
            self._secret_fold = ()
            self._secret_re = None
            self._quick = None
            self._home_key = object()
            self._home_re = None
            self.add_keys(BUILTIN_KEYS)
            self.add_patterns(BUILTIN_PATTERNS)

    # -- redaction ---------------------------------------------------------------
    def _secrets_regex(self) -> re.Pattern | None:
        rx = self._secret_re
        if rx is None and self._secrets:
            with self._lock:
                if self._secret_re is None and self._secrets:
                    alts = sorted(self._secrets, key=lambda v: (-len(v), v))
                    # A lookahead finds every (possibly overlapping) occurrence.
                    self._secret_re = re.compile(
                        "(?=(" + "|".join(re.escape(a) for a in alts) + "))", re.IGNORECASE
                    )
                rx = self._secret_re
        return rx

    def _home_regex(self) -> re.Pattern | None:
        key = (os.environ.get("HOME"), os.environ.get("USERPROFILE"))
        if key == self._home_key:
            return self._home_re
        homes = set()
        for h in (os.path.expanduser("~"), os.environ.get("HOME")):
            if h:
                h = h.rstrip("/\\") if len(h) > 1 else h
                if h and h not in ("/", "\\") and h != "~":
                    homes.add(h)
        rx = None
        if homes:
            alts = sorted(homes, key=lambda v: (-len(v), v))
            rx = re.compile("(?:" + "|".join(re.escape(a) for a in alts) + r")(?![\w-]|\.[\w-])")
        self._home_re = rx
        self._home_key = key
        return rx

    def _shorten_home(self, s: str) -> str:
        rx = self._home_regex()
        return rx.sub("~", s) if rx is not None else s

    def _quick_check(self):
        """What finds anything :meth:`text` could change in an ASCII string: lower-case
        needles (a known secret, a pattern's literal, the home directory) grouped by their
        rarest character, and the patterns without literals, each with its sketch (see
        ``_SKETCHES``). Most values contain none and skip the full pass."""
        home_key = os.environ.get("HOME")
        quick = self._quick
        if quick is None or quick[0] != home_key:
            with self._lock:
                needles = {v.lower() for v in self._secrets}
                plain = []
                for pattern, literals, sketch in zip(
                    self._patterns, self._literals, self._sketches, strict=False
                ):
                    if literals is None:
                        plain.append((pattern, sketch))
                    else:
                        needles |= {lit.lower() for lit in literals}
                homes = {os.path.expanduser("~"), home_key or ""} - {"", "/", "~"}
                needles |= {h.rstrip("/").lower() for h in homes if h.rstrip("/")}
                groups: dict[str, list[str]] = {}
                for needle in sorted(needles):
                    groups.setdefault(min(needle, key=_rarity), []).append(needle)
                numeric = frozenset(v for v in self._secret_lower if not v.strip(_NUMBER_CHARS))
                quick = self._quick = (
                    home_key,
                    tuple((c, tuple(ns)) for c, ns in sorted(groups.items())),
                    tuple(plain),
                    numeric,
                )
                self._key_cache = {}
                self._text_cache = {}
        return quick

    @staticmethod
    def _may_change(s: str, quick) -> bool:
        """False only if :meth:`text` returns the ASCII string ``s`` unchanged."""
        low = s.lower()
        for char, needles in quick[1]:
            if char in low:
                for needle in needles:
                    if needle in low:
                        return True
        for pattern, sketch in quick[2]:
            if sketch is not None and len(s) >= _SKETCH_MIN_LEN and _sketch_lacks(s, sketch):
                continue
            if pattern.search(s):
                return True
        return False

    def text(self, s) -> str:
        """``s`` with secret values, pattern matches and the home directory removed."""
        if not isinstance(s, str):
            s = str(s)
        if not s:
            return s
        if s.isascii():
            quick = self._quick_check()
            cache = self._text_cache
            if s in cache:
                return s  # seen before, clean, and nothing learnt since (the cache resets)
            if not self._may_change(s, quick):
                if len(s) <= 64 and len(cache) < 20000:
                    cache[s] = None
                return s
        fold = self._secret_fold
        # Fast path: str.casefold is a per-character mapping, so an occurrence of a
        # secret in ``s`` is always an occurrence of its casefold in ``s.casefold()``.
        rx = None
        if fold:
            folded = s.casefold()
            if any(f in folded for f in fold):
                rx = self._secrets_regex()
        if rx is not None:
            spans: list[list[int]] = []
            for m in rx.finditer(s):
                start, end = m.start(), m.start() + len(m.group(1))
                if spans and start <= spans[-1][1]:
                    if end > spans[-1][1]:
                        spans[-1][1] = end
                else:
                    spans.append([start, end])
            if spans:
                out, pos = [], 0
                for start, end in spans:
                    out.append(s[pos:start])
                    out.append(REDACTED)
                    pos = end
                out.append(s[pos:])
                s = "".join(out)
        low = _literal_text(s)
        for pattern, literals, sketch in zip(
            self._patterns, self._literals, self._sketches, strict=False
        ):
            if literals is not None and not any(lit in low for lit in literals):
                continue
            if sketch is not None and len(s) >= _SKETCH_MIN_LEN and _sketch_lacks(s, sketch):
                continue
            if "secret" in pattern.groupindex:
                s = pattern.sub(_replace_secret_group, s)
            else:
                s = pattern.sub(REDACTED, s)
        return self._shorten_home(s)

    def safe_text(self, s) -> str:
        """Like :meth:`text`, but any failure raises :class:`RedactionFailed`."""
        try:
            return self.text(s)
        except Exception:
            raise RedactionFailed() from None

    def data(self, obj):
        """A deep copy of ``obj`` with secret-keyed values replaced and strings scrubbed."""
        copy = self._clean_records(obj)
        if copy is not None:
            return copy
        return self._data(obj, 0)

    def _clean_records(self, obj) -> list | None:
        """The copy :meth:`data` makes of a list of flat records (dicts of strings,
        numbers, booleans and None) when it can prove nothing in them would change; None
        when it cannot (then the walk decides, value by value).

        The proof looks at each distinct key and value once, and at all strings together:
        a needle (see :meth:`_quick_check`) that occurs in one string occurs in the
        strings joined, and so does a sketch marker; only patterns without a sketch run
        string by string."""
        if type(obj) is not list or not obj or set(map(type, obj)) != {dict}:
            return None
        quick = self._quick_check()  # refreshes the key cache when secrets or home changed
        cache = self._key_cache
        for key in set().union(*obj):
            known = cache.get(key) if type(key) is str else None
            if known is None:
                if type(key) is not str:
                    return None
                known = (self.text(key), self.is_secret_key(key))
                if len(cache) < 4096:
                    cache[key] = known
            if known[1] or known[0] != key:
                return None
        values = list(chain.from_iterable(map(dict.values, obj)))
        types = list(map(type, values))
        if not set(types) <= _FLAT:
            return None
        for secret in quick[3]:  # secrets that str() of a number prints
            # ``in`` compares by value (5 == 5.0 == True): a match may be a false alarm,
            # which only sends the records to the walk.
            if any(number in values for number in _printed_as(secret)):
                return None
        strings = list(set(compress(values, map(partial(operator.is_, str), types))))
        joined = "\x00".join(strings)
        if not joined.isascii():
            ascii_only = [v for v in strings if v.isascii()]
            if any(self.text(v) != v for v in strings if not v.isascii()):
                return None
            strings, joined = ascii_only, "\x00".join(ascii_only)
        low = joined.lower()
        for char, needles in quick[1]:
            if char in low and any(needle in low for needle in needles):
                return None
        for pattern, sketch in quick[2]:
            if sketch is not None and _sketch_lacks(joined, sketch):
                continue
            if any(map(pattern.search, strings)):
                return None
        return list(map(dict, obj))

    def safe_data(self, obj):
        try:
            return self.data(obj)
        except Exception:
            raise RedactionFailed() from None

    def _data(self, obj, depth: int):
        if depth > 500:
            return REDACTED
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, int | float):
            if self._secret_lower and str(obj).lower() in self._secret_lower:
                return REDACTED
            return obj
        if isinstance(obj, dict):
            out = {}
            self._quick_check()  # refreshes the key cache when secrets or home changed
            cache = self._key_cache
            for key, value in obj.items():
                known = cache.get(key) if isinstance(key, str) else None
                if known is None:
                    known = (
                        self.text(key) if isinstance(key, str) else key,
                        self.is_secret_key(key),
                    )
                    if isinstance(key, str) and len(cache) < 4096:
                        cache[key] = known
                new_key, secret_key = known
                if secret_key and value is not None:
                    out[new_key] = REDACTED
                elif value is None or value.__class__ is bool:
                    out[new_key] = value
                elif value.__class__ is str:
                    out[new_key] = self.text(value)
                else:
                    out[new_key] = self._data(value, depth + 1)
            return out
        if isinstance(obj, list | tuple | set | frozenset):
            return [self._data(v, depth + 1) for v in obj]
        return self.text(str(obj))


def _replace_secret_group(m: re.Match) -> str:
    start, end = m.span("secret")
    if start < 0:
        return REDACTED
    whole = m.group(0)
    base = m.start()
    return whole[: start - base] + REDACTED + whole[end - base :]


REDACTOR = Redactor()


def add_keys(keys: Iterable[str]) -> None:
    REDACTOR.add_keys(keys)


def add_patterns(patterns: Iterable[str | re.Pattern]) -> None:
    REDACTOR.add_patterns(patterns)


def register(keys: Iterable[str] = (), patterns: Iterable[str | re.Pattern] = ()) -> None:
    """Pass as the ``register`` callback of ``pm.hook.ibgw_redaction_rules``."""
    REDACTOR.register(keys=keys, patterns=patterns)


def load_plugin_rules(pm) -> list[str]:
    """Call every ``ibgw_redaction_rules`` implementation, each isolated from the
    others. Returns the names of plugins whose rules failed (a bad pattern, say)."""
    failed = []
    for impl in pm.hook.ibgw_redaction_rules.get_hookimpls():
        try:
            impl.function(register=register)
        except Exception:
            failed.append(impl.plugin_name)
    return failed


def is_secret_key(key) -> bool:
    return REDACTOR.is_secret_key(key)


def add_secret(value) -> None:
    REDACTOR.add_secret(value)


def harvest(obj) -> None:
    REDACTOR.harvest(obj)


def harvest_text(s: str) -> None:
    REDACTOR.harvest_text(s)


def harvest_set_cookie(headers) -> None:
    """Remember the value of every cookie in ``headers`` (``Set-Cookie`` values), each
    cookie on its own, folded headers split: a value that later appears alone is
    redacted, not only the folded whole."""
    for header in headers:
        for _name, value in set_cookie_pairs(header):
            if value:
                add_secret(value)


def text(s) -> str:
    return REDACTOR.text(s)


def safe_text(s) -> str:
    return REDACTOR.safe_text(s)


def data(obj):
    return REDACTOR.data(obj)


def safe_data(obj):
    return REDACTOR.safe_data(obj)


def reset() -> None:
    REDACTOR.reset()


# -- logging -------------------------------------------------------------------------

_WITHHELD = "log record withheld (redaction failed)"
_QUIET_LOGGERS = (
    "urllib3",
    "requests",
    "http.client",
    "charset_normalizer",
    "hpack",
    "httpx",
    "httpcore",
)


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so that every handler after it sees redacted text:
    the merged message, the formatted exception (and its chain) and the stack."""

    _fmt = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_ibgw_redacted", False):
            return True
        try:
            msg = REDACTOR.text(record.getMessage())
            exc_text = None
            if record.exc_info:
                exc_text = REDACTOR.text(self._fmt.formatException(record.exc_info))
            elif record.exc_text:
                exc_text = REDACTOR.text(record.exc_text)
            stack = REDACTOR.text(record.stack_info) if record.stack_info else None
            pathname = REDACTOR.text(record.pathname) if record.pathname else record.pathname
        except Exception:
            msg, exc_text, stack, pathname = _WITHHELD, None, None, ""
        record.msg = msg
        record.args = None
        record.exc_info = None
        record.exc_text = exc_text
        record.stack_info = stack
        record.pathname = pathname
        record._ibgw_redacted = True
        return True


class RedactingFormatter(logging.Formatter):
    """Redacts the final formatted line (message, exception text, stack)."""

    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR.safe_text(super().format(record))

    def formatException(self, ei) -> str:  # noqa: N802 - logging API
        # Standard traceback (never frame locals), redacted.
        return REDACTOR.safe_text(super().formatException(ei))
