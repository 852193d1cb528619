"""The pytest fixtures for plugin authors: ``ibgw.testing`` (ibgw_env, ibgw_responses,
ibgw_subprocess_env) and ``ibgw_fake.testing`` (the fixtures that need the fake backend)."""

import os
import subprocess
import sys
import textwrap

import pytest
import requests

pytest.importorskip("ibgw_fake", reason="the fake backend (plugins/ibgw-fake) is not installed")

from ibgw.hookspecs import hookimpl  # noqa: E402


class LatePlugin:
    @hookimpl
    def ibgw_fake_fixtures(self, register):
        register(
            {"routes": [{"method": "GET", "path": "/iserver/late", "response": {"late": True}}]}
        )


def test_ibgw_env_isolates(monkeypatch, request):
    monkeypatch.setenv("IBGW_BACKEND", "live")
    monkeypatch.setenv("IBGW_FAKE_CANARY", "x")
    tmp = request.getfixturevalue("ibgw_env")
    assert "IBGW_BACKEND" not in os.environ and "IBGW_FAKE_CANARY" not in os.environ
    assert os.environ["IBGW_STATE_DIR"] == str(tmp / "state")
    config = os.environ["IBGW_CONFIG"]
    assert config.startswith(str(tmp)) and open(config).read() == ""


def test_ibgw_pm_has_the_builtins_and_the_fake_backend(ibgw_pm):
    from types import SimpleNamespace

    from ibgw_fake.transport import FakeTransport

    assert ibgw_pm.has_plugin("fake")
    assert ibgw_pm.has_plugin("ibgw.default_plugins.core_fixtures")
    transport = ibgw_pm.hook.ibgw_backend(
        config=SimpleNamespace(backend="fake", scenario="connected", latency_ms=0), pm=ibgw_pm
    )
    assert isinstance(transport, FakeTransport)


def test_ibgw_cli_uses_the_fake_backend(ibgw_cli):
    result = ibgw_cli("fake-gateway", "scenarios")
    assert result.exit_code == 0, result.output
    assert "slow-gateway" in result.output
    ok = ibgw_cli("status")
    assert ok.exit_code == 0, ok.output + ok.stderr
    manual = ibgw_cli("--scenario", "no-bridge", "status")
    assert manual.exit_code == 3, manual.output + manual.stderr


def test_ibgw_fake_gateway(ibgw_fake_gateway, ibgw_pm):
    gw = ibgw_fake_gateway
    assert gw.url.startswith("http://127.0.0.1:") and gw.fingerprint is None
    with requests.Session() as s:
        assert s.post(gw.url + "/tickle", json={}, timeout=5).status_code == 200
        ibgw_pm.register(LatePlugin(), name="late")  # a plugin registered after the start
        assert s.get(gw.url + "/iserver/late", timeout=5).json() == {"late": True}
        gw.scenario = "no-bridge"
        assert s.get(gw.url + "/iserver/late", timeout=5).status_code == 400
    assert gw.requests[0] == ("POST", "/tickle", {})


def test_ibgw_fake_gateway_tls(ibgw_fake_gateway_tls):
    gw = ibgw_fake_gateway_tls
    assert gw.url.startswith("https://localhost:") and len(gw.fingerprint) == 64
    r = requests.post(gw.url + "/tickle", json={}, verify=gw.cert_path, timeout=5)
    assert r.status_code == 200


def test_a_third_party_plugin_test_suite_gets_the_fixtures(tmp_path):
    """A plugin author's tests run with no conftest: the pytest11 entry point
    supplies the fixtures."""
    (tmp_path / "my_plugin.py").write_text(
        textwrap.dedent(
            """
            from ibgw import hookimpl

            @hookimpl
            def ibgw_fake_fixtures(register):
                register({"routes": [{"method": "GET", "path": "/iserver/mine", "response": [1, 2]}]})
            """
        )
    )
    (tmp_path / "test_my_plugin.py").write_text(
        textwrap.dedent(
            """
            import requests
            import my_plugin

            def test_served(ibgw_pm, ibgw_fake_gateway):
                ibgw_pm.register(my_plugin)
                r = requests.get(ibgw_fake_gateway.url + "/iserver/mine", timeout=5)
                assert r.json() == [1, 2]
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBGW_", "PYTEST_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_plugin.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def _pytest_in(tmp_path, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBGW_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_fake_plugin_a_fake_fixture_fails_with_one_clear_line(tmp_path):
    """The fake-backend fixtures ship with ibgw-fake; without its pytest plugin a test
    that asks for one is told what to install, while the core's fixtures still work."""
    (tmp_path / "test_it.py").write_text(
        textwrap.dedent(
            """
            def test_needs_the_fake(ibgw_cli):
                pass

            def test_core_only(ibgw_env, ibgw_subprocess_env):
                assert ibgw_subprocess_env["IBGW_STATE_DIR"] == str(ibgw_env / "state")
            """
        )
    )
    proc = _pytest_in(tmp_path, "-p", "no:ibgw-fake", "test_it.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed" in out and "1 error" in out, out
    assert "ibgw_cli: the fixtures that need the fake backend come with the 'ibgw-fake'" in out
    assert "fixture 'ibgw_cli' not found" not in out, out


def test_the_core_pytest_plugin_does_not_load_the_fake_backend(tmp_path):
    (tmp_path / "test_it.py").write_text(
        "import sys\n\ndef test_core(ibgw_env):\n    assert 'ibgw_fake' not in sys.modules\n"
    )
    proc = _pytest_in(tmp_path, "-p", "no:ibgw-fake", "test_it.py")
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
