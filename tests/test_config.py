"""Configuration: precedence, file errors, parsing, TLS settings, isolation from proxy vars."""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
from pathlib import Path

import pytest

import ibgw.config as config_mod
from ibgw.config import (
    ENV_VARS,
    FILE_KEYS,
    Config,
    default_config_path,
    load_config,
    user_state_dir,
)
from ibgw.errors import ConfigError

FP_HEX = "ab" * 32
FP_UPPER = FP_HEX.upper()
FP_COLONS = ":".join(["AB"] * 32)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated HOME and XDG dirs so the platform defaults point into tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    for var in list(os.environ):
        if var.startswith("IBGW_"):
            monkeypatch.delenv(var)
    return home


@pytest.fixture
def cfg_file(home):
    """Write the default config file (platformdirs location) and return its path."""
    path = Path(default_config_path({}))
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(text: str) -> Path:
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _err(flags=None, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(flags, environ)
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.exit_code == 2
    return msg


# --------------------------------------------------------------------------- defaults


def test_defaults(home):
    cfg = load_config({}, {})
    assert cfg.backend == "live"
    assert cfg.scenario == "connected"
    assert cfg.gateway_url == "https://localhost:5000/v1/api"
    assert cfg.verify_tls is False
    assert cfg.ca_bundle is None and cfg.tls_fingerprint is None
    assert cfg.output == "table"
    assert cfg.debug is False
    assert cfg.timeout == 15.0
    assert cfg.allow_undocumented is True
    assert cfg.account is None
    assert cfg.latency_ms == 0
    assert cfg.state_dir == str(home / ".local" / "state" / "ibgw")
    assert cfg.config_path == str(home / ".config" / "ibgw" / "config.toml")
    assert set(cfg.sources.values()) == {"default"}
    assert set(cfg.sources) == {f.name for f in dataclasses.fields(Config)} - {"sources"}


def test_none_arguments_use_os_environ(home, monkeypatch):
    monkeypatch.setenv("IBGW_OUTPUT", "csv")
    cfg = load_config()
    assert cfg.output == "csv" and cfg.sources["output"] == "env"


def test_config_is_frozen(home):
    cfg = load_config({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.verify_tls = True
    with pytest.raises(TypeError):
        cfg.sources["output"] = "flag"


def test_direct_construction_validates():
    assert Config(state_dir="/tmp/x").gateway_url == "https://localhost:5000/v1/api"
    assert Config(gateway_url="https://localhost:5000", state_dir="/tmp/x").gateway_url == (
        "https://localhost:5000/v1/api"
    )
    with pytest.raises(ConfigError, match="^gateway_url: "):
        Config(gateway_url="https://evil.com", state_dir="/tmp/x")
    with pytest.raises(ConfigError, match="^tls_fingerprint: requires verify_tls"):
        Config(tls_fingerprint=FP_HEX, state_dir="/tmp/x")
    with pytest.raises(ConfigError, match="^timeout: "):
        Config(timeout=0, state_dir="/tmp/x")
    with pytest.raises(ConfigError, match="^sources: "):
        Config(state_dir="/tmp/x", sources={"output": "guess"})


def test_replace_is_idempotent(home):
    cfg = load_config({"verify_tls": True, "tls_fingerprint": FP_COLONS}, {})
    again = dataclasses.replace(cfg)
    assert again == cfg
    assert again.tls_fingerprint == FP_HEX


# --------------------------------------------------------------------------- precedence

PRECEDENCE = [
    # field, file (TOML literal), env text, flag value, expected file/env/flag values
    ("output", '"csv"', "json", "table", ("csv", "json", "table")),
    ("backend", '"fake"', "live", "fake", ("fake", "live", "fake")),
    ("scenario", '"down"', "expired", "rate-limited", ("down", "expired", "rate-limited")),
    ("timeout", "20", "30.5", 2.5, (20.0, 30.5, 2.5)),
    ("debug", "true", "off", True, (True, False, True)),
    ("allow_undocumented", "false", "yes", False, (False, True, False)),
    ("account", '"U1234567"', "DU7654321", "U42", ("U1234567", "DU7654321", "U42")),
    ("latency_ms", "100", "250", 5, (100, 250, 5)),
    (
        "gateway_url",
        '"https://127.0.0.1:5001"',
        "https://[::1]:5002/v1/api",
        "https://localhost:5003/",
        (
            "https://127.0.0.1:5001/v1/api",
            "https://[::1]:5002/v1/api",
            "https://localhost:5003/v1/api",
        ),
    ),
]


@pytest.mark.parametrize(("name", "file_val", "env_val", "flag_val", "expected"), PRECEDENCE)
def test_precedence_flags_env_file_default(cfg_file, name, file_val, env_val, flag_val, expected):
    default = getattr(load_config({}, {}), name)
    cfg_file(f"{name} = {file_val}\n")
    env = {ENV_VARS[name]: env_val}

    cfg = load_config({}, {})
    assert (getattr(cfg, name), cfg.sources[name]) == (expected[0], "file")
    cfg = load_config({}, env)
    assert (getattr(cfg, name), cfg.sources[name]) == (expected[1], "env")
    cfg = load_config({name: flag_val}, env)
    assert (getattr(cfg, name), cfg.sources[name]) == (expected[2], "flag")
    cfg = load_config({name: None}, env)  # None means "flag not given"
    assert (getattr(cfg, name), cfg.sources[name]) == (expected[1], "env")

    cfg_file("")
    cfg = load_config({}, {})
    assert (getattr(cfg, name), cfg.sources[name]) == (default, "default")


def test_flags_may_be_strings(home):
    cfg = load_config({"timeout": "3", "debug": "yes", "latency_ms": "7"}, {})
    assert (cfg.timeout, cfg.debug, cfg.latency_ms) == (3.0, True, 7)


def test_ibgw_table_in_file(cfg_file):
    cfg_file('[ibgw]\noutput = "json"\ntimeout = 5\n')
    cfg = load_config({}, {})
    assert (cfg.output, cfg.timeout, cfg.sources["output"]) == ("json", 5.0, "file")


def test_top_level_and_table_mixed(cfg_file):
    cfg_file('debug = true\n[ibgw]\noutput = "csv"\n')
    cfg = load_config({}, {})
    assert cfg.debug is True and cfg.output == "csv"


def test_same_key_twice_is_error(cfg_file):
    cfg_file('output = "csv"\n[ibgw]\noutput = "json"\n')
    assert _err({}, {}).startswith("output: ")


def test_state_dir_sources(home, tmp_path, cfg_file):
    cfg_file(f'state_dir = "{tmp_path / "from-file"}"\n')
    assert load_config({}, {}).state_dir == str(tmp_path / "from-file")
    cfg = load_config({}, {"IBGW_STATE_DIR": str(tmp_path / "from-env")})
    assert (cfg.state_dir, cfg.sources["state_dir"]) == (str(tmp_path / "from-env"), "env")
    cfg = load_config({"state_dir": str(tmp_path / "flag")}, {"IBGW_STATE_DIR": "x"})
    assert cfg.state_dir == str(tmp_path / "flag")
    # empty env value means "not set"
    assert load_config({}, {"IBGW_STATE_DIR": ""}).state_dir == str(tmp_path / "from-file")


def test_state_dir_tilde_expanded(home):
    cfg = load_config({}, {"IBGW_STATE_DIR": "~/st"})
    assert cfg.state_dir == str(home / "st")


def test_user_state_dir_and_default_config_path(home, tmp_path):
    assert user_state_dir({}) == str(home / ".local" / "state" / "ibgw")
    assert user_state_dir({"IBGW_STATE_DIR": str(tmp_path / "s")}) == str(tmp_path / "s")
    assert default_config_path({}) == str(home / ".config" / "ibgw" / "config.toml")
    assert default_config_path({"IBGW_CONFIG": str(tmp_path / "c.toml")}) == str(
        tmp_path / "c.toml"
    )
    assert default_config_path({"IBGW_CONFIG": ""}) == str(
        home / ".config" / "ibgw" / "config.toml"
    )


# --------------------------------------------------------------------------- config file location


def test_config_flag_and_env(home, tmp_path):
    a = tmp_path / "a.toml"
    a.write_text('output = "json"\n')
    b = tmp_path / "b.toml"
    b.write_text('output = "csv"\n')
    cfg = load_config({}, {"IBGW_CONFIG": str(a)})
    assert (cfg.output, cfg.config_path, cfg.sources["config_path"]) == ("json", str(a), "env")
    cfg = load_config({"config": str(b)}, {"IBGW_CONFIG": str(a)})
    assert (cfg.output, cfg.config_path, cfg.sources["config_path"]) == ("csv", str(b), "flag")
    cfg = load_config({"config": b}, {})  # os.PathLike accepted
    assert cfg.output == "csv"


def test_missing_default_file_is_fine(home):
    cfg = load_config({}, {})
    assert not os.path.exists(cfg.config_path)


def test_explicit_missing_file_is_error(home, tmp_path):
    missing = tmp_path / "nope.toml"
    assert _err({"config": str(missing)}, {}).startswith("config: file not found")
    assert _err({}, {"IBGW_CONFIG": str(missing)}).startswith("config: file not found")


def test_config_path_is_directory(home, tmp_path):
    assert _err({"config": str(tmp_path)}, {}).startswith("config: ")


def test_unknown_flag_key_is_programming_error(home):
    with pytest.raises(TypeError):
        load_config({"colour": "red"}, {})
    load_config({"colour": None}, {})  # unset extras are tolerated


# --------------------------------------------------------------------------- file errors


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ('colour = "red"\n', "colour: unknown key"),
        ('[ibgw]\ncolour = "red"\n', "ibgw.colour: unknown key"),
        ('[proxy]\nurl = "x"\n', "proxy: unknown key"),
        ("config_path = '/x'\n", "config_path: unknown key"),
        ("sources = 1\n", "sources: unknown key"),
        ("ibgw = 1\n", "ibgw: must be a table"),
        ('verify_tls = "yes"\n', "verify_tls: must be true or false"),
        ("debug = 1\n", "debug: must be true or false"),
        ('timeout = "15"\n', "timeout: must be a number"),
        ("timeout = true\n", "timeout: must be a number"),
        ("timeout = nan\n", "timeout: must be a number"),
        ("timeout = inf\n", "timeout: must be a number"),
        ("latency_ms = 1.5\n", "latency_ms: must be a whole number"),
        ("latency_ms = -1\n", "latency_ms: must be a whole number"),
        ("gateway_url = 5\n", "gateway_url: must be a string"),
        ("[gateway_url]\nx = 1\n", "gateway_url: must be a string"),
        ("account = 123\n", "account: must be"),
        ('output = "xml"\n', "output: must be one of table, json, csv"),
    ],
)
def test_file_value_errors_name_the_key(cfg_file, text, prefix):
    cfg_file(text)
    msg = _err({}, {})
    assert msg.startswith(prefix), msg


def test_unknown_key_message_lists_known_keys(cfg_file):
    cfg_file("colour = 1\n")
    msg = _err({}, {})
    assert "verify_tls" in msg and "config file" in msg


@pytest.mark.parametrize(
    "text",
    [
        'gateway_url = "https://user:S3cretCanary@localhost\n',  # unterminated string
        "gateway_url = https://user:S3cretCanary@localhost\n",  # bare value
        'output = "json"\noutput = "csv"\n',  # duplicate key
        "[ibgw\n",
        "= 1\n",
        'tls_fingerprint = "S3cretCanary" "x"\n',
    ],
)
def test_bad_toml_is_config_error_without_content(cfg_file, text):
    path = cfg_file(text)
    msg = _err({}, {})
    assert msg.startswith("config: ")
    assert "invalid TOML" in msg
    assert "S3cretCanary" not in msg
    assert "line" in msg
    assert str(path) not in msg  # shown as ~/...
    assert "~/.config/ibgw/config.toml" in msg


def test_non_utf8_file(cfg_file):
    path = cfg_file("")
    path.write_bytes(b'output = "\xff"\n')
    assert _err({}, {}).startswith("config: ")


def test_huge_file_rejected(cfg_file):
    cfg_file("# " + "x" * (2 * 1024 * 1024) + "\n")
    assert _err({}, {}).startswith("config: ")


# --------------------------------------------------------------------------- booleans

TRUE_TEXT = ["1", "true", "TRUE", "True", "yes", "YES", "on", "On"]
FALSE_TEXT = ["0", "false", "FALSE", "no", "No", "off", "OFF"]
BAD_BOOL = ["", "2", "y", "n", "t", "f", "tru", " true", "true ", "enable", "-1", "0.0", "nope"]


@pytest.mark.parametrize("field_name", ["debug", "allow_undocumented"])
@pytest.mark.parametrize("text", TRUE_TEXT + FALSE_TEXT)
def test_env_bool_parsing(home, field_name, text):
    cfg = load_config({}, {ENV_VARS[field_name]: text})
    assert getattr(cfg, field_name) is (text in TRUE_TEXT)


@pytest.mark.parametrize("text", BAD_BOOL)
def test_env_bool_invalid(home, text):
    msg = _err({}, {"IBGW_DEBUG": text})
    assert msg.startswith("debug: must be one of 1/0, true/false, yes/no, on/off")
    assert "(from IBGW_DEBUG)" in msg


def test_verify_tls_env_true(home):
    cfg = load_config({}, {"IBGW_VERIFY_TLS": "on", "IBGW_GATEWAY_URL": "https://example.com"})
    assert cfg.verify_tls is True and cfg.gateway_url == "https://example.com/v1/api"


# --------------------------------------------------------------------------- numbers and names


@pytest.mark.parametrize(
    "text", ["0", "0.05", "300.1", "301", "-1", "nan", "inf", "1e2", "abc", " 5", "5 ", "", "1_0"]
)
def test_timeout_invalid(home, text):
    msg = _err({}, {"IBGW_TIMEOUT": text})
    assert msg.startswith("timeout: must be a number between 0.1 and 300")


@pytest.mark.parametrize(("text", "value"), [("0.1", 0.1), ("300", 300.0), ("15", 15.0)])
def test_timeout_bounds(home, text, value):
    assert load_config({}, {"IBGW_TIMEOUT": text}).timeout == value


@pytest.mark.parametrize("value", [0, 0.0999, 300.5, float("nan"), float("inf"), True, "x"])
def test_timeout_flag_invalid(home, value):
    assert _err({"timeout": value}, {}).startswith("timeout: ")


@pytest.mark.parametrize("text", ["-1", "60001", "1.0", "abc", "", "1000000000"])
def test_latency_invalid(home, text):
    assert _err({}, {"IBGW_LATENCY_MS": text}).startswith("latency_ms: ")


@pytest.mark.parametrize("text", ["U-1", "U 1", "a" * 33, "Ü1", "U1\n", "../x"])
def test_account_invalid(home, text):
    assert _err({}, {"IBGW_ACCOUNT": text}).startswith("account: ")


def test_account_empty_env_clears_file_value(cfg_file):
    cfg_file('account = "U1"\n')
    cfg = load_config({}, {"IBGW_ACCOUNT": ""})
    assert cfg.account is None and cfg.sources["account"] == "env"


@pytest.mark.parametrize("text", ["", "Connected", "a b", "-x" * 40, "x_y", "../up"])
def test_scenario_invalid(home, text):
    assert _err({}, {"IBGW_SCENARIO": text}).startswith("scenario: ")


@pytest.mark.parametrize("text", ["", "remote", "Live", "fake "])
def test_backend_invalid(home, text):
    assert _err({}, {"IBGW_BACKEND": text}).startswith("backend: must be one of live, fake")


def test_output_error_may_echo_choice(home):
    msg = _err({"output": "xml"}, {})
    assert msg.startswith("output: must be one of table, json, csv") and "'xml'" in msg
    assert "(from command line)" in msg


# --------------------------------------------------------------------------- TLS settings


@pytest.mark.parametrize("value", [FP_HEX, FP_UPPER, FP_COLONS, FP_COLONS.lower(), "Ab" * 32])
def test_fingerprint_normalised(home, value):
    cfg = load_config({"verify_tls": True}, {"IBGW_TLS_FINGERPRINT": value})
    assert cfg.tls_fingerprint == FP_HEX


@pytest.mark.parametrize(
    "value",
    [
        "ab" * 31 + "a",  # 63 digits
        "ab" * 32 + "a",  # 65 digits
        "zz" * 32,
        ":".join(["ab"] * 20),  # SHA-1 sized
        "sha256:" + FP_HEX,
        "abc:" + FP_HEX[3:],
        FP_COLONS + ":",
        ":" + FP_COLONS,
        FP_COLONS.replace(":", "-"),
        " " + FP_HEX,
        FP_HEX + "\n",
        "AB:CD" + FP_HEX[4:],
    ],
)
def test_fingerprint_invalid_not_echoed(home, value):
    msg = _err({"verify_tls": True}, {"IBGW_TLS_FINGERPRINT": value})
    assert msg.startswith("tls_fingerprint: must be a SHA-256")
    assert value.strip() not in msg
    assert FP_HEX[:16] not in msg.lower()


def test_fingerprint_requires_verify_tls(home):
    msg = _err({}, {"IBGW_TLS_FINGERPRINT": FP_HEX})
    assert msg.startswith("tls_fingerprint: requires verify_tls")
    assert FP_HEX not in msg


def test_ca_bundle_rules(home, tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_config({"verify_tls": True, "ca_bundle": str(pem)}, {})
    assert cfg.ca_bundle == str(pem)
    msg = _err({"ca_bundle": str(pem)}, {})
    assert msg.startswith("ca_bundle: requires verify_tls")
    assert _err({"verify_tls": True, "ca_bundle": str(tmp_path / "x.pem")}, {}).startswith(
        "ca_bundle: file not found"
    )
    assert _err({"verify_tls": True, "ca_bundle": str(tmp_path)}, {}).startswith(
        "ca_bundle: is not a regular file"
    )


def test_ca_bundle_relative_to_config_file(home, tmp_path):
    d = tmp_path / "conf"
    d.mkdir()
    (d / "ca.pem").write_text("x")
    f = d / "ibgw.toml"
    f.write_text('verify_tls = true\nca_bundle = "ca.pem"\n')
    cfg = load_config({"config": str(f)}, {})
    assert cfg.ca_bundle == str(d / "ca.pem")


def test_ca_bundle_tilde_and_empty_env(home, cfg_file):
    (home / "ca.pem").write_text("x")
    cfg_file('verify_tls = true\nca_bundle = "~/ca.pem"\n')
    cfg = load_config({}, {})
    assert cfg.ca_bundle == str(home / "ca.pem")
    assert load_config({}, {"IBGW_CA_BUNDLE": ""}).ca_bundle is None


def test_verify_tls_with_remote_host_and_pin(home):
    cfg = load_config(
        {
            "gateway_url": "https://gw.example.com:5000",
            "verify_tls": True,
            "tls_fingerprint": FP_HEX,
        },
        {},
    )
    assert cfg.gateway_url == "https://gw.example.com:5000/v1/api"


# --------------------------------------------------------------------------- gateway_url errors

BAD_URLS = [
    "https://user:S3cretCanary@localhost:5000",
    "https://S3cretCanary@evil.com",
    "https://localhost:5000/v1/api?token=S3cretCanary",
    "https://evil.com/S3cretCanary",
    "http://S3cretCanary.example.com",
    "https://localhost\\S3cretCanary@evil.com",
    " https://localhost/S3cretCanary",
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_gateway_url_errors_never_echo_url(cfg_file, url, where):
    flags, env = {}, {}
    if where == "flag":
        flags = {"gateway_url": url}
    elif where == "env":
        env = {"IBGW_GATEWAY_URL": url}
    else:
        cfg_file(f"gateway_url = {url!r}\n".replace("\\", "\\\\"))
    msg = _err(flags, env)
    assert msg.startswith("gateway_url: ")
    assert "S3cretCanary" not in msg
    assert url not in msg


def test_gateway_url_error_names_source(home):
    msg = _err({}, {"IBGW_GATEWAY_URL": "https://evil.com"})
    assert msg.startswith("gateway_url: verify_tls = false is allowed only for")
    assert msg.endswith("(from IBGW_GATEWAY_URL)")


def test_remote_gateway_needs_verify_tls_even_from_file(cfg_file):
    cfg_file('gateway_url = "https://gw.example.com"\n')
    assert _err({}, {}).startswith("gateway_url: ")
    cfg = load_config({"verify_tls": True}, {})
    assert cfg.gateway_url == "https://gw.example.com/v1/api"


# --------------------------------------------------------------------------- isolation

HOSTILE_ENV = {
    "HTTPS_PROXY": "http://proxy.evil:8080",
    "https_proxy": "http://proxy.evil:8080",
    "HTTP_PROXY": "http://proxy.evil:8080",
    "ALL_PROXY": "socks5://proxy.evil:1080",
    "NO_PROXY": "*",
    "REQUESTS_CA_BUNDLE": "/etc/evil-ca.pem",
    "CURL_CA_BUNDLE": "/etc/evil-ca.pem",
    "SSL_CERT_FILE": "/etc/evil-ca.pem",
    "SSL_CERT_DIR": "/etc/evil-certs",
    "NETRC": "/tmp/evil-netrc",
    "IBGW_UNKNOWN": "whatever",
}


def test_proxy_and_ca_env_vars_do_not_influence_config(home, monkeypatch):
    base_env = {"IBGW_OUTPUT": "json"}
    clean = load_config({}, base_env)
    dirty = load_config({}, {**base_env, **HOSTILE_ENV})
    assert clean == dirty
    assert dirty.ca_bundle is None and dirty.verify_tls is False
    for key, value in HOSTILE_ENV.items():
        monkeypatch.setenv(key, value)
    assert load_config({}, base_env) == clean
    monkeypatch.setenv("IBGW_OUTPUT", "json")
    assert load_config({}, None) == clean  # read from os.environ, proxies set there too
    text = repr(dirty) + repr(dirty.public_dict())
    assert "evil" not in text


# --------------------------------------------------------------------------- public_dict


def test_public_dict_shortens_home_and_reports_sources(home, cfg_file):
    (home / "ca.pem").write_text("x")
    cfg_file('verify_tls = true\nca_bundle = "~/ca.pem"\n')
    cfg = load_config({"output": "json"}, {"IBGW_STATE_DIR": str(home / "state")})
    pub = cfg.public_dict()
    assert set(pub) == {f.name for f in dataclasses.fields(Config)} - {"sources"}
    assert pub["state_dir"] == {"value": "~/state", "source": "env"}
    assert pub["ca_bundle"] == {"value": "~/ca.pem", "source": "file"}
    assert pub["config_path"] == {"value": "~/.config/ibgw/config.toml", "source": "default"}
    assert pub["output"] == {"value": "json", "source": "flag"}
    assert pub["verify_tls"] == {"value": True, "source": "file"}
    assert pub["timeout"] == {"value": 15.0, "source": "default"}
    assert str(home) not in repr(pub)


def test_public_dict_keeps_paths_outside_home(home, tmp_path):
    outside = tmp_path / "elsewhere"
    cfg = load_config({"state_dir": str(outside)}, {})
    assert cfg.public_dict()["state_dir"]["value"] == str(outside)
    # a sibling directory whose name starts with the home path is not "under home"
    sibling = str(home) + "-other"
    cfg = load_config({"state_dir": sibling}, {})
    assert cfg.public_dict()["state_dir"]["value"] == sibling
    cfg = load_config({"state_dir": str(home)}, {})
    assert cfg.public_dict()["state_dir"]["value"] == "~"


def test_public_dict_is_json_serialisable(home):
    import json

    json.dumps(load_config({}, {}).public_dict())


# --------------------------------------------------------------------------- hygiene


def test_env_vars_cover_every_file_key():
    assert set(ENV_VARS) == set(FILE_KEYS)
    assert all(v == "IBGW_" + k.upper() for k, v in ENV_VARS.items())


@pytest.mark.parametrize("module", ["ibgw/config.py", "ibgw/urlcheck.py"])
def test_module_top_imports_only_stdlib(module):
    """CLI start-up stays fast: third-party imports only inside functions."""
    root = Path(config_mod.__file__).resolve().parent.parent
    tree = ast.parse((root / module).read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: ibgw.errors / ibgw.urlcheck only
                assert node.module in ("errors", "urlcheck"), node.module
                continue
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, name
