"""gateway_url validation (SECURITY.md section 2).

``ADVERSARIAL_URLS`` is the published list of hostile gateway URLs: every one must be
rejected (for the verify_tls values listed with it) and no error message may echo it.
"""

from __future__ import annotations

import urllib.parse

import pytest
import requests
import urllib3.util
from hypothesis import HealthCheck, event, example, find, given, settings
from hypothesis import strategies as st

from ibgw.errors import ConfigError
from ibgw.urlcheck import (
    LOCAL_HOSTS,
    is_local_host,
    parse_gateway_url,
    validate_gateway_url,
)

BOTH = (False, True)
OFF = (False,)

# --------------------------------------------------------------------------- adversarial URLs
# (category, url, verify_tls values for which it must be rejected)
_CASES: list[tuple[str, str, tuple[bool, ...]]] = []


def _add(category: str, urls, verify=BOTH) -> None:
    for url in urls:
        _CASES.append((category, url, verify))


_add(
    "loopback-spelling",
    [
        "https://127.0.0.2",
        "https://127.0.0.2:5000/v1/api",
        "https://127.1",
        "https://127.1:5000",
        "https://127.0.1",
        "https://0x7f.1",
        "https://0x7f.0.0.1",
        "https://0X7F.0.0.1",
        "https://0x7f000001",
        "https://0x7f",
        "https://0x",
        "https://0177.0.0.1",
        "https://0177.1",
        "https://017700000001",
        "https://2130706433",
        "https://2130706433:5000/v1/api",
        "https://127.000.000.001",
        "https://127.0.0.01",
        "https://0127.0.0.1",
        "https://127.0.0.0x1",
        "https://127.255.255.254",
        "https://127.0.0.1.1",
        "https://0.0.0.0",
        "https://0.0.0.0:5000",
        "https://0",
        "https://0.1.2.3",
        "https://00",
        "https://1.2.3.256",
        "https://1.2.3",
        "https://example.123",
        "https://foo.localhost",
        "https://localhost.localhost",
        "https://evil.com.localhost",
    ],
)
_add(
    "ipv6-trick",
    [
        "https://[::ffff:127.0.0.1]",
        "https://[::ffff:7f00:1]",
        "https://[::FFFF:127.0.0.1]",
        "https://[0:0:0:0:0:ffff:7f00:1]",
        "https://[0:0:0:0:0:0:0:1]",
        "https://[0::1]",
        "https://[::0:1]",
        "https://[::01]",
        "https://[::0001]",
        "https://[::1%25eth0]",
        "https://[::1%25lo]:5000",
        "https://[fe80::1%25eth0]",
        "https://[fe80::1%eth0]",
        "https://[::1%lo]",
        "https://[::]",
        "https://[::127.0.0.1]",
        "https://[::7f00:1]",
        "https://[::2]",
        "https://::1",
        "https://::1:5000",
        "https://[::1",
        "https://::1]",
        "https://[[::1]]",
        "https://[::1]]",
        "https://[::1]x",
        "https://[::1].",
        "https://[::1]:5000]",
        "https://[]",
        "https://[:::1]",
        "https://[1::1::1]",
        "https://[2001:DB8::1]",
        "https://[2001:db8:0:0:0:0:0:1]",
        "https://[2001:0db8::1]",
        "https://[v1.fe80::1]",
        "https://[127.0.0.1]",
        "https://[localhost]",
    ],
)
_add(
    "case-or-trailing-dot",
    [
        "https://LOCALHOST",
        "https://Localhost",
        "https://localHost:5000",
        "https://LocalHost/v1/api",
        "https://localhost.",
        "https://localhost.:5000",
        "https://localhost..",
        "https://.localhost",
        "https://LOCALHOST.",
        "https://127.0.0.1.",
        "https://Example.com",
        "https://example.com.",
        "HTTPS://localhost",
        "Https://localhost",
        "HTTP://127.0.0.1",
        "hTTps://localhost:5000/v1/api",
    ],
)
_add(
    "userinfo",
    [
        "https://user@localhost",
        "https://user:pw@localhost",
        "https://@localhost",
        "https://:@localhost",
        "https://localhost@evil.com",
        "https://localhost:5000@evil.com",
        "https://evil.com@localhost",
        "https://user@127.0.0.1:5000",
        "https://user:pass@[::1]",
        "https://a@b@localhost",
        "https://localhost:pw@evil.com:5000",
        "https://localhost@@evil.com",
        "https://user@localhost:5000/v1/api",
        "http://127.0.0.1:5000@evil.com/v1/api",
        "https://localhost/@evil.com",
        "https://localhost/v1/api@evil.com",
    ],
)
_add(
    "backslash",
    [
        "https://localhost\\@evil.com",
        "https://evil.com\\.localhost",
        "https://evil.com\\@localhost",
        "https:\\\\localhost",
        "https:/\\localhost",
        "https://localhost\\",
        "https://localhost:5000\\v1\\api",
        "https://localhost\\v1/api",
        "https://user\\:pw@localhost",
        "https://127.0.0.1\\@evil.com:5000",
    ],
)
_add(
    "percent-encoding",
    [
        "https://%6c%6fcalhost",
        "https://%6C%6F%63%61%6C%68%6F%73%74",
        "https://localhost%2eevil.com",
        "https://127.0.0.1%2f",
        "https://%31%32%37.0.0.1",
        "https://localhost%00",
        "https://localhost%0a",
        "https://localhost:%35000",
        "https://localhost/v1%2fapi",
        "https://localhost/%761/api",
        "https://[::1%25]",
        "https://localhost%2F@evil.com",
        "https://localhost%40evil.com",
        "https://evil.com%23.localhost",
        "https://localhost%3a5000",
    ],
)
_add(
    "unicode-look-alike",
    [
        "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # fullwidth
        "https://\uff4cocalhost",
        "https://\u24dbocalhost",  # circled l
        "https://l\u043ecalhost",  # cyrillic o
        "https://localh\u043est",
        "https://\u2113ocalhost",  # script l
        "https://loca\u217chost",  # roman numeral fifty
        "https://localho\u017ft",  # long s
        "https://local\u200bhost",  # zero width space
        "https://localhost\u00ad",  # soft hyphen
        "https://lo\u0301calhost",  # combining acute
        "https://\u0661\u0662\u0667.0.0.1",  # arabic-indic digits
        "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # fullwidth digits
        "https://127\u30020\u30020\u30021",  # ideographic full stop
        "https://127\uff0e0\uff0e0\uff0e1",  # fullwidth full stop
        "https://[\uff1a\uff1a1]",
        "http\u0455://localhost",  # cyrillic dze
        "https://localhost:\uff15\uff10\uff10\uff10",
        "https://xn--localhost-",  # not even a valid label
    ],
)
_add(
    "punycode",
    [
        "https://xn--lcalhost-7fg",  # punycode of a look-alike
        "https://xn--lcalhost-ne4c",
        "https://xn--80ak6aa92e.com",
    ],
    OFF,  # with verify_tls = true punycode is a plain LDH name, checked by TLS
)
_WS_CHARS = [
    " ",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\xa0",
    "\u2028",
    "\u3000",
    "\ufeff",
]
_add(
    "whitespace-control",
    [
        url
        for ch in _WS_CHARS
        for url in (
            f"{ch}https://localhost:5000/v1/api",
            f"https://localhost:5000/v1/api{ch}",
            f"https://{ch}localhost:5000",
            f"https://local{ch}host",
            f"https://localhost:5000{ch}/v1/api",
        )
    ]
    + [
        "https://localhost\r\n",
        "https://localhost:5000/v1/api\r\nHost: evil.com",
        "https: //localhost",
    ],
)
_add(
    "port",
    [
        "https://localhost:0",
        "https://localhost:65536",
        "https://localhost:99999",
        "https://localhost:+5000",
        "https://localhost:-5000",
        "https://localhost:05000",
        "https://localhost:00",
        "https://localhost:5000abc",
        "https://localhost:",
        "https://localhost:/v1/api",
        "https://localhost:5000:5000",
        "https://localhost:5_000",
        "https://localhost:0x1388",
        "https://localhost:5000.0",
        "https://localhost:5e3",
        "https://localhost:999999999999",
        "https://localhost:-1",
        "https://[::1]:",
        "https://[::1]:0",
        "https://[::1]:65536",
        "https://127.0.0.1:+1",
        "https://localhost::5000",
    ],
)
_add(
    "query-fragment-params",
    [
        "https://localhost?x=1",
        "https://localhost?",
        "https://localhost#",
        "https://localhost#frag",
        "https://localhost:5000/v1/api?x",
        "https://localhost:5000/v1/api#x",
        "https://localhost;x",
        "https://localhost/v1/api;x",
        "https://localhost/;jsessionid=1",
        "https://localhost/v1/api/?",
        "https://localhost?@evil.com",
        "https://localhost#@evil.com",
        "https://localhost;@evil.com",
        "https://localhost/v1/api?token=SECRET",
    ],
)
_add(
    "path",
    [
        "https://localhost/v1",
        "https://localhost/v1/api/iserver",
        "https://localhost/v1/api/..",
        "https://localhost/v1/api/./",
        "https://localhost/./v1/api",
        "https://localhost/v1/../v1/api",
        "https://localhost//v1/api",
        "https://localhost/v1//api",
        "https://localhost/v1/api//",
        "https://localhost/V1/API",
        "https://localhost/api",
        "https://localhost/v2/api",
        "https://localhost//evil.com",
        "https://localhost/v1/api/sso/validate",
        "https://localhost///",
    ],
)
_add(
    "scheme",
    [
        "",
        "localhost",
        "localhost:5000",
        "//localhost",
        "ftp://localhost",
        "ws://localhost",
        "wss://localhost",
        "file://localhost",
        "https:localhost",
        "https:/localhost",
        "https:///localhost",
        "https//localhost",
        "httpss://localhost",
        "xhttps://localhost",
        "http+unix://localhost",
        "javascript://localhost",
        "https://",
        "https:///v1/api",
        "https://:5000",
    ],
)
_add(
    "not-local-with-verify-off",
    [
        "https://example.com",
        "https://gateway",
        "https://10.0.0.1",
        "https://192.168.1.10:5000/v1/api",
        "https://[2001:db8::1]",
        "https://127.0.0.1.nip.io",
        "https://localhost.localdomain",
        "https://localhost4",
        "https://ip6-localhost",
        "https://loca1host",
        "https://localhos",
        "https://1.0.0.127.in-addr.arpa",
    ],
    OFF,
)
_add(
    "http-not-local",
    [
        "http://example.com",
        "http://10.0.0.1:5000",
        "http://[2001:db8::1]",
        "http://gateway.internal:5000/v1/api",
        "http://127.0.0.1.nip.io",
    ],
)
_add(
    "bad-dns-name",
    [
        "https://-evil.com",
        "https://evil-.com",
        "https://a..b",
        "https://" + "a" * 64 + ".com",
        "https://" + ".".join(["a" * 63] * 4) + ".com",
        "https://under_score.com",
        "https://*.example.com",
        "https://exa!mple.com",
        "https://ex$ample.com",
        "https://example.com'",
        'https://example.com"',
        "https://example.com<x>",
        "https://exam{ple}.com",
        "https://a|b.com",
        "https://a^b.com",
        "https://a`b.com",
    ],
)

#: Every hostile gateway URL tried (published in the docs as a figure).
ADVERSARIAL_URLS: list[str] = [url for _, url, _ in _CASES]
assert len(ADVERSARIAL_URLS) == len(set(ADVERSARIAL_URLS)), "duplicate adversarial URL"

_REJECT_PARAMS = [
    pytest.param(url, v, id=f"{cat}-{i}-verify{int(v)}")
    for i, (cat, url, verifies) in enumerate(_CASES)
    for v in verifies
]


@pytest.mark.parametrize(("url", "verify"), _REJECT_PARAMS)
def test_adversarial_url_rejected(url, verify):
    with pytest.raises(ConfigError) as info:
        validate_gateway_url(url, verify)
    msg = str(info.value)
    assert msg.startswith("gateway_url: ")
    assert "\n" not in msg and "\r" not in msg
    assert info.value.exit_code == 2
    # never echo the input, nor its host part (the fixed wording names the local hosts)
    msg = msg.replace("localhost, 127.0.0.1 or [::1]", "")
    host = url.split("://", 1)[-1]
    if len(url) >= 8:
        assert url not in msg
    if len(host) >= 8:
        assert host not in msg


def test_adversarial_count_is_published_size():
    assert len(ADVERSARIAL_URLS) >= 150
    categories = {cat for cat, _, _ in _CASES}
    assert {
        "loopback-spelling",
        "ipv6-trick",
        "case-or-trailing-dot",
        "userinfo",
        "backslash",
        "percent-encoding",
        "unicode-look-alike",
        "whitespace-control",
        "port",
        "query-fragment-params",
    } <= categories


# --------------------------------------------------------------------------- accepted URLs

ACCEPTED = [
    # (url, verify_tls, canonical)
    ("https://localhost", False, "https://localhost/v1/api"),
    ("https://localhost/", False, "https://localhost/v1/api"),
    ("https://localhost:5000", False, "https://localhost:5000/v1/api"),
    ("https://localhost:5000/", False, "https://localhost:5000/v1/api"),
    ("https://localhost:5000/v1/api", False, "https://localhost:5000/v1/api"),
    ("https://localhost:5000/v1/api/", False, "https://localhost:5000/v1/api"),
    ("https://localhost:5000/v1/api", True, "https://localhost:5000/v1/api"),
    ("http://localhost:5000", False, "http://localhost:5000/v1/api"),
    ("http://localhost:5000", True, "http://localhost:5000/v1/api"),
    ("https://127.0.0.1:5000/v1/api", False, "https://127.0.0.1:5000/v1/api"),
    ("http://127.0.0.1", False, "http://127.0.0.1/v1/api"),
    ("https://127.0.0.1:1", False, "https://127.0.0.1:1/v1/api"),
    ("https://127.0.0.1:65535/", False, "https://127.0.0.1:65535/v1/api"),
    ("https://[::1]", False, "https://[::1]/v1/api"),
    ("https://[::1]:5000/v1/api/", False, "https://[::1]:5000/v1/api"),
    ("http://[::1]:5000", False, "http://[::1]:5000/v1/api"),
    ("https://localhost:443", False, "https://localhost:443/v1/api"),
    ("https://example.com", True, "https://example.com/v1/api"),
    ("https://gw.example.org:5000/v1/api", True, "https://gw.example.org:5000/v1/api"),
    ("https://gateway", True, "https://gateway/v1/api"),
    ("https://a-b.c-d.example", True, "https://a-b.c-d.example/v1/api"),
    ("https://1.example.com", True, "https://1.example.com/v1/api"),
    ("https://xn--80ak6aa92e.com", True, "https://xn--80ak6aa92e.com/v1/api"),
    ("https://10.0.0.1:5000", True, "https://10.0.0.1:5000/v1/api"),
    ("https://192.168.1.10/", True, "https://192.168.1.10/v1/api"),
    ("https://[2001:db8::1]:5000", True, "https://[2001:db8::1]:5000/v1/api"),
    ("https://[fe80::1]", True, "https://[fe80::1]/v1/api"),
    ("https://" + "a" * 63 + ".com", True, "https://" + "a" * 63 + ".com/v1/api"),
]


@pytest.mark.parametrize(("url", "verify", "canonical"), ACCEPTED)
def test_accepted_url_canonical(url, verify, canonical):
    assert validate_gateway_url(url, verify) == canonical
    # canonical form is a fixed point
    assert validate_gateway_url(canonical, verify) == canonical


def test_parse_gateway_url_parts():
    gw = parse_gateway_url("https://[::1]:5000", False)
    assert (gw.scheme, gw.host, gw.port, gw.url) == (
        "https",
        "::1",
        5000,
        "https://[::1]:5000/v1/api",
    )
    assert gw.is_local
    gw = parse_gateway_url("https://example.com/", True)
    assert (gw.host, gw.port, gw.is_local) == ("example.com", None, False)


def test_local_hosts_and_is_local_host():
    assert LOCAL_HOSTS == ("localhost", "127.0.0.1", "::1")
    for h in ("localhost", "127.0.0.1", "::1", "[::1]"):
        assert is_local_host(h)
    for h in ("LOCALHOST", "localhost.", "127.0.0.2", "::ffff:127.0.0.1", "", None, b"localhost"):
        assert not is_local_host(h)


def test_verify_tls_must_be_bool():
    with pytest.raises(ConfigError):
        validate_gateway_url("https://localhost", 0)
    with pytest.raises(ConfigError):
        validate_gateway_url("https://localhost", "false")


@pytest.mark.parametrize("value", [None, b"https://localhost", 5, ["https://localhost"]])
def test_non_string_rejected(value):
    with pytest.raises(ConfigError):
        validate_gateway_url(value, False)


def test_overlong_url_rejected():
    with pytest.raises(ConfigError):
        validate_gateway_url("https://" + "a." * 1100 + "com", True)


def test_password_never_echoed():
    canary = "Canary-Pw-7f3e9"
    for url in (
        f"https://user:{canary}@localhost:5000",
        f"https://{canary}@evil.com",
        f"https://localhost/v1/api?token={canary}",
        f"https://localhost\\{canary}@evil.com",
        f"https://localhost:5000/{canary}",
    ):
        for verify in BOTH:
            with pytest.raises(ConfigError) as info:
                validate_gateway_url(url, verify)
            assert canary not in str(info.value)
            assert canary not in repr(info.value.as_dict())
            assert info.value.__cause__ is None


# --------------------------------------------------------------------------- property tests

_GOOD_HOSTS = [
    "localhost",
    "127.0.0.1",
    "[::1]",
    "example.com",
    "gw.example.org",
    "10.1.2.3",
    "[2001:db8::1]",
    "xn--80ak6aa92e.com",
]
_TRICKY_HOSTS = [
    "LOCALHOST",
    "localhost.",
    "localhost..",
    "127.0.0.2",
    "127.1",
    "0x7f.1",
    "0177.0.0.1",
    "2130706433",
    "[::ffff:127.0.0.1]",
    "[0:0:0:0:0:0:0:1]",
    "[fe80::1%25eth0]",
    "[::1%lo]",
    "%6c%6fcalhost",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
    "\u24dbocalhost",
    "l\u043ecalhost",
    "localhost\\@evil.com",
    "evil.com\\.localhost",
    "evil.com#.localhost",
    "evil.com?.localhost",
    "evil.com/.localhost",
    "localhost@evil.com",
    "[::1]@evil.com",
    "evil.com@[::1]",
    "::1",
    "[::1",
    "",
    "foo.localhost",
    "localhost\u3002",
]


@st.composite
def _mostly(draw, good, bad):
    """Usually a well-formed piece, sometimes a hostile one (keeps acceptance frequent)."""
    return draw(bad) if draw(st.sampled_from((False, False, False, True))) else draw(good)


_SCHEMES = _mostly(
    st.sampled_from(["https", "http"]),
    st.sampled_from(["HTTPS", "Http", "ftp", "", "https:", "ws", "http\u0455", "https "]),
)
_SEPS = _mostly(st.just("://"), st.sampled_from([":/", ":///", ":\\\\", "//", ":", "://\\"]))
_HOSTS = _mostly(
    st.sampled_from(_GOOD_HOSTS),
    st.one_of(
        st.sampled_from(_TRICKY_HOSTS),
        st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True),
        st.text(
            alphabet=st.sampled_from(list("abclo0x17.:-[]@%\\/#?;") + ["\u043e", "\uff4c"]),
            max_size=12,
        ),
    ),
)
_USERINFO = _mostly(
    st.just(""),
    st.sampled_from(["user@", "user:pw@", "@", ":@", "localhost@", "evil.com@", "a\\@", "u%40@"]),
)
_PORTS = _mostly(
    st.sampled_from(["", ":5000", ":1", ":65535", ":443"]),
    st.one_of(
        st.sampled_from([":0", ":65536", ":", ":05000", ":+1"]),
        st.integers(min_value=-10, max_value=70000).map(lambda n: f":{n}"),
        st.text(alphabet="0123456789:+-x ", max_size=7).map(lambda t: ":" + t),
    ),
)
_PATHS = _mostly(
    st.sampled_from(["", "/", "/v1/api", "/v1/api/"]),
    st.sampled_from(
        [
            "/v1",
            "?x",
            "#x",
            ";x",
            "/v1/api?x",
            "\\@evil.com",
            "@evil.com",
            "/..",
            "/v1/api/..",
            "//evil.com",
            "/%2e%2e",
        ]
    ),
)
_ODD = _mostly(
    st.just(""),
    st.sampled_from(
        [
            " ",
            "\t",
            "\n",
            "\r",
            "\x00",
            "\\",
            "@",
            "%40",
            ":",
            "[",
            "]",
            ".",
            "#",
            "?",
            "/",
            "\u200b",
            "\uff4c",
            "\x7f",
        ]
    ),
)


@st.composite
def gateway_urls(draw):
    url = (
        draw(_SCHEMES) + draw(_SEPS) + draw(_USERINFO) + draw(_HOSTS) + draw(_PORTS) + draw(_PATHS)
    )
    odd = draw(_ODD)
    if odd:
        pos = draw(st.integers(min_value=0, max_value=len(url)))
        url = url[:pos] + odd + url[pos:]
    return url


def _host_of(netloc_host: str | None) -> str | None:
    if netloc_host and netloc_host.startswith("[") and netloc_host.endswith("]"):
        return netloc_host[1:-1]
    return netloc_host


def _assert_parsers_agree(url: str, verify: bool) -> None:
    gw = parse_gateway_url(url, verify)
    event(f"accepted verify={verify}")
    for text in (gw.url, url):  # both the canonical URL and the accepted input
        split = urllib.parse.urlsplit(text)
        assert split.hostname == gw.host
        assert split.port == gw.port
        assert split.username is None and split.password is None
        u3 = urllib3.util.parse_url(text)
        assert _host_of(u3.host) == gw.host
        assert u3.port == gw.port
        assert u3.auth is None
    # requests' own URL preparation keeps the host too
    prepared = requests.Request("GET", gw.url + "/tickle").prepare()
    assert urllib.parse.urlsplit(prepared.url).hostname == gw.host
    assert gw.url == f"{gw.scheme}://{'[' + gw.host + ']' if ':' in gw.host else gw.host}" + (
        f":{gw.port}/v1/api" if gw.port is not None else "/v1/api"
    )
    if not verify:
        assert gw.host in LOCAL_HOSTS
    if gw.scheme == "http":
        assert gw.host in LOCAL_HOSTS
    assert validate_gateway_url(gw.url, verify) == gw.url


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=gateway_urls(), verify=st.booleans())
@example(url="https://localhost:5000/v1/api", verify=False)
@example(url="https://localhost\\@evil.com", verify=False)
@example(url="https://evil.com\\.localhost", verify=True)
def test_property_accepted_urls_parse_to_claimed_host(url, verify):
    try:
        parse_gateway_url(url, verify)
    except ConfigError as exc:
        event("rejected")
        msg = str(exc)
        assert msg.startswith("gateway_url: ")
        assert "\n" not in msg
        if len(url) >= 10:
            assert url not in msg
        return
    _assert_parsers_agree(url, verify)


def test_property_strategy_is_not_vacuous():
    """The URL strategy does produce accepted URLs, local and remote."""

    def accepted(url, verify):
        try:
            validate_gateway_url(url, verify)
        except ConfigError:
            return False
        return True

    find(
        gateway_urls(),
        lambda u: accepted(u, False) and "[" in u,
        settings=settings(database=None, max_examples=5000),
    )
    find(
        gateway_urls(),
        lambda u: accepted(u, True) and ".com" in u,
        settings=settings(database=None, max_examples=5000),
    )


@settings(max_examples=1000, deadline=None)
@given(url=st.text(max_size=60), verify=st.booleans())
def test_property_arbitrary_text_only_config_error(url, verify):
    """Any string either yields a self-consistent URL or a ConfigError; nothing else escapes."""
    try:
        parse_gateway_url(url, verify)
    except ConfigError as exc:
        assert str(exc).startswith("gateway_url: ")
        return
    _assert_parsers_agree(url, verify)


@settings(max_examples=300, deadline=None)
@given(
    password=st.from_regex(r"[A-Za-z0-9]{12,24}", fullmatch=True),
    host=st.sampled_from(_GOOD_HOSTS + ["evil.com"]),
    verify=st.booleans(),
)
def test_property_password_never_in_message(password, host, verify):
    url = f"https://user:{password}@{host}:5000/v1/api"
    with pytest.raises(ConfigError) as info:
        validate_gateway_url(url, verify)
    assert password not in str(info.value)
