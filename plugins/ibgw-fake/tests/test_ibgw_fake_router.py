"""The fixture router: matching, specificity, placeholders, broken fixtures."""

import json
import re
import time

import pytest
from ibgw_fake.router import (
    NOT_FOUND_BODY,
    FakeRequest,
    FakeRouter,
    FixtureError,
    compile_fixture,
    secret_value,
)
from ibgw_fake.scenarios import scenario_names
from ibgw_fake_testutil import FixturePlugin, make_pm

from ibgw.declarations import FakeRoute


def get(router, path, scenario="connected", **query):
    return router.handle(FakeRequest("GET", path, query=query, scenario=scenario))


def body_of(answer):
    return json.loads(answer.body)


def fixture(*routes, scenarios=None):
    out = {"routes": list(routes)}
    if scenarios:
        out["scenarios"] = scenarios
    return out


# --------------------------------------------------------------------------- matching


def test_template_variables_match_one_segment_and_are_decoded():
    seen = []

    def handler(request):
        seen.append(dict(request.params))
        return 200, {"ok": True}

    router = FakeRouter(make_pm(FixturePlugin(FakeRoute("GET", "/x/{a}/y/{b}", handler))))
    assert get(router, "/x/A%20B/y/2").status == 200
    assert seen == [{"a": "A B", "b": "2"}]
    assert get(router, "/x/A/B/y/2").status == 404  # a variable never spans a '/'
    assert get(router, "/x//y/2").status == 404  # nor matches an empty segment
    assert get(router, "/x/a/y/2/").status == 404  # no trailing-slash leniency


def test_exact_path_beats_template():
    router = FakeRouter(
        make_pm(
            FixturePlugin(
                fixture(
                    {"method": "GET", "path": "/p/{id}/info", "response": "template"},
                    {"method": "GET", "path": "/p/1/info", "response": "exact"},
                    {"method": "GET", "path": "/p/{id}/{what}", "response": "two vars"},
                )
            )
        )
    )
    assert body_of(get(router, "/p/1/info")) == "exact"
    assert body_of(get(router, "/p/2/info")) == "template"
    assert body_of(get(router, "/p/2/other")) == "two vars"


def test_more_matched_keys_win_and_values_compare_as_strings():
    router = FakeRouter(
        make_pm(
            FixturePlugin(
                fixture(
                    {"method": "GET", "path": "/q", "response": "none"},
                    {"method": "GET", "path": "/q", "query": {"a": 1}, "response": "one"},
                    {
                        "method": "GET",
                        "path": "/q",
                        "query": {"a": "1", "b": True},
                        "response": "two",
                    },
                    {
                        "method": "GET",
                        "path": "/q",
                        "query": {"c": None, "d": "x"},
                        "response": "d without c",
                    },
                )
            )
        )
    )
    assert body_of(get(router, "/q")) == "none"
    assert body_of(get(router, "/q", a="1")) == "one"
    assert body_of(get(router, "/q", a="1", b="true", z="extra")) == "two"
    assert body_of(get(router, "/q", a="1", b="false")) == "one"
    assert body_of(get(router, "/q", d="x")) == "d without c"
    assert body_of(get(router, "/q", d="x", c="1")) == "none"


def test_body_subset_match_for_post():
    router = FakeRouter(
        make_pm(
            FixturePlugin(
                fixture(
                    {"method": "POST", "path": "/b", "response": "any"},
                    {
                        "method": "POST",
                        "path": "/b",
                        "body": {"symbol": "SPY", "name": False},
                        "response": "spy",
                    },
                    {
                        "method": "POST",
                        "path": "/b",
                        "body": {"f": {"k": [1]}},
                        "response": "nested",
                    },
                )
            )
        )
    )

    def post(body):
        return body_of(router.handle(FakeRequest("POST", "/b", body=body)))

    assert post({"symbol": "SPY", "name": False, "more": 1}) == "spy"
    assert post({"symbol": "SPY", "name": "false"}) == "spy"
    assert post({"symbol": "AAPL", "name": False}) == "any"
    assert post({"f": {"k": [1]}}) == "nested"
    assert post(None) == "any"
    assert post([1, 2]) == "any"


def test_scenario_restricted_route_wins_in_its_scenario_only():
    router = FakeRouter(
        make_pm(
            FixturePlugin(
                fixture(
                    {"method": "GET", "path": "/s", "query": {"a": "1"}, "response": "general"},
                    {
                        "method": "GET",
                        "path": "/s",
                        "scenarios": ["competing-session"],
                        "response": "competing",
                    },
                )
            )
        )
    )
    assert body_of(get(router, "/s", a="1")) == "general"
    assert body_of(get(router, "/s", scenario="competing-session", a="1")) == "competing"
    assert get(router, "/s").status == 404


def test_ties_go_to_the_route_registered_first():
    first = fixture({"method": "GET", "path": "/t/{x}", "response": "first"})
    second = fixture({"method": "GET", "path": "/{y}/1", "response": "second"})
    router = FakeRouter(make_pm(FixturePlugin(first, second)))
    assert body_of(get(router, "/t/1")) == "first"


def test_method_lists_and_case():
    router = FakeRouter(
        make_pm(FixturePlugin(fixture({"method": ["get", "Post"], "path": "/m", "response": 1})))
    )
    assert router.handle(FakeRequest("get", "/m")).status == 200
    assert router.handle(FakeRequest("POST", "/m")).status == 200
    assert router.handle(FakeRequest("DELETE", "/m")).status == 404


def test_unknown_path_is_the_gateways_resource_not_found_page(fake_pm):
    answer = get(FakeRouter(fake_pm), "/iserver/fundamentals", conid="1")
    assert answer.status == 404
    assert answer.content_type == "text/html"
    assert answer.body == NOT_FOUND_BODY == b"<html><body><h1>Resource not found</h1></body></html>"


def test_raw_and_empty_responses():
    router = FakeRouter(
        make_pm(
            FixturePlugin(
                fixture(
                    {"method": "GET", "path": "/raw", "response_raw": "plain {{today}}"},
                    {
                        "method": "GET",
                        "path": "/html",
                        "response_raw": "<p>x</p>",
                        "content_type": "text/html",
                        "status": 203,
                    },
                    {"method": "GET", "path": "/empty", "status": 204},
                    {"method": "GET", "path": "/null", "response": None},
                )
            )
        )
    )
    raw = get(router, "/raw")
    assert (raw.status, raw.content_type) == (200, "text/plain")
    assert re.fullmatch(rb"plain \d{8}", raw.body)
    html = get(router, "/html")
    assert (html.status, html.content_type, html.body) == (203, "text/html", b"<p>x</p>")
    assert get(router, "/empty").body == b""
    assert get(router, "/null").body == b"null"


# --------------------------------------------------------------------------- placeholders


def placeholder_router():
    return FakeRouter(
        make_pm(
            FixturePlugin(
                fixture(
                    {
                        "method": "GET",
                        "path": "/ph",
                        "response": {
                            "session": "{{secret:session}}",
                            "mac": "{{secret:mac}}",
                            "hw": "{{secret:hardware}}",
                            "user": "{{secret:userid}}",
                            "ip": "{{secret:ip}}",
                            "name": "{{secret:username}}",
                            "ms": "{{now_ms}}",
                            "s": "{{now_s}}",
                            "day": "{{today}}",
                            "text": "at {{now_s}} for {{secret:session}}",
                            "nested": [{"v": "{{secret:session}}"}],
                        },
                    }
                )
            )
        )
    )


def test_placeholders_are_expanded_per_answer(monkeypatch):
    monkeypatch.delenv("IBGW_FAKE_CANARY", raising=False)
    router = placeholder_router()
    before = int(time.time() * 1000)
    data = body_of(get(router, "/ph"))
    assert re.fullmatch(r"[0-9a-f]{32}", data["session"])
    assert re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}", data["mac"])
    assert re.fullmatch(r"[0-9a-f]{8}\|([0-9A-F]{2}:){5}[0-9A-F]{2}", data["hw"])
    assert re.fullmatch(r"[1-9]\d{8}", data["user"])
    assert re.fullmatch(r"203\.0\.113\.\d+", data["ip"])
    assert data["name"].startswith("user")
    assert isinstance(data["ms"], int) and before <= data["ms"] <= int(time.time() * 1000)
    assert isinstance(data["s"], int)
    assert re.fullmatch(r"\d{8}", data["day"])
    assert data["text"] == f"at {data['s']} for {data['session']}" or data["text"].endswith(
        data["session"]
    )
    assert data["nested"][0]["v"] == data["session"]
    again = body_of(get(router, "/ph"))
    assert again["session"] == data["session"] == secret_value("session")  # stable per process


def test_canary_env_var_replaces_every_secret(monkeypatch):
    monkeypatch.setenv("IBGW_FAKE_CANARY", "CANARY7f3a")
    data = body_of(get(placeholder_router(), "/ph"))
    assert data["session"] == "CANARY7f3asession"
    assert data["mac"] == "CANARY7f3amac"
    assert data["user"] == "CANARY7f3auserid"
    assert data["nested"][0]["v"] == "CANARY7f3asession"
    answer = get(placeholder_router(), "/ph")
    assert answer.cookies == {"x-sess-uuid": "CANARY7f3acookie"}


def test_every_answer_carries_the_session_cookie(fake_pm):
    router = FakeRouter(fake_pm)
    for path in ("/tickle", "/nowhere"):
        answer = router.handle(FakeRequest("POST", path, body={}))
        assert answer.cookies == {"x-sess-uuid": secret_value("cookie")}


# --------------------------------------------------------------------------- broken fixtures


def test_broken_fixtures_are_reported_and_skipped(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"routes": [', encoding="utf-8")
    good_file = tmp_path / "good.json"
    good_file.write_text(
        json.dumps(fixture({"method": "GET", "path": "/good-file", "response": 1}))
    )
    typo = fixture({"method": "GET", "path": "/typo", "respone": 1})
    good = fixture({"method": "GET", "path": "/good", "response": 2})
    plugin_a = FixturePlugin(typo, good, bad_json, good_file, str(tmp_path / "missing.json"), 42)
    plugin_b = FixturePlugin(
        fixture({"method": "GET", "path": "/b", "response": 3}), raises=RuntimeError("boom")
    )
    router = FakeRouter(make_pm(plugin_a, plugin_b))

    errors = router.errors
    assert any("plugin0" in e and "unknown key(s) 'respone'" in e for e in errors), errors
    assert any("plugin0" in e and "bad.json" in e and "not valid JSON" in e for e in errors), errors
    assert any("plugin0" in e and "missing.json" in e and "cannot read" in e for e in errors), (
        errors
    )
    assert any("plugin0" in e and "int" in e for e in errors), errors
    assert any("plugin1" in e and "RuntimeError" in e and "boom" in e for e in errors), errors
    assert len(errors) == 5
    assert body_of(get(router, "/good")) == 2
    assert body_of(get(router, "/good-file")) == 1
    assert get(router, "/typo").status == 404
    assert get(router, "/b").status == 404  # a raising plugin contributes nothing
    assert get(router, "/tickle").status == 200  # the core fixtures still load


def test_duplicate_route_from_another_plugin_is_skipped():
    route = {"method": "GET", "path": "/iserver/accounts", "response": {"mine": True}}
    router = FakeRouter(make_pm(FixturePlugin(fixture(route))))
    assert any("duplicates one from ibgw.default_plugins.core_fixtures" in e for e in router.errors)
    assert "accounts" in body_of(get(router, "/iserver/accounts"))


@pytest.mark.parametrize(
    "route, message",
    [
        ({"path": "/x"}, "missing 'method'"),
        ({"method": "GET"}, "missing 'path'"),
        ({"method": "FETCH", "path": "/x"}, "unknown method"),
        ({"method": [], "path": "/x"}, "'method'"),
        ({"method": "GET", "path": "x"}, "starting with '/'"),
        ({"method": "GET", "path": "/x?a=1"}, "put query parameters in 'query'"),
        ({"method": "GET", "path": "/x/{a}/{a}"}, "appears twice"),
        ({"method": "GET", "path": "/x/{a"}, "malformed"),
        ({"method": "GET", "path": "/x", "status": 99}, "'status'"),
        ({"method": "GET", "path": "/x", "status": "200"}, "'status'"),
        ({"method": "GET", "path": "/x", "response": 1, "response_raw": "1"}, "not both"),
        ({"method": "GET", "path": "/x", "response_raw": 5}, "'response_raw'"),
        ({"method": "GET", "path": "/x", "query": ["a"]}, "'query'"),
        ({"method": "GET", "path": "/x", "query": {"a": [1]}}, "query value"),
        ({"method": "GET", "path": "/x", "body": "a=1"}, "'body'"),
        ({"method": "GET", "path": "/x", "scenarios": "connected"}, "'scenarios'"),
        ({"method": "GET", "path": "/x", "undocumented": "yes"}, "'undocumented'"),
        (
            {"method": "GET", "path": "/x", "response_raw": "", "content_type": "a\r\nb"},
            "'content_type'",
        ),
        ("not a route", "must be an object"),
    ],
)
def test_route_validation(route, message):
    with pytest.raises(FixtureError, match=re.escape(message)):
        compile_fixture({"routes": [route]}, "p")


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "cannot register a list"),
        ({"routes": [], "scenarios": []}, "'scenarios' an object"),
        ({"routes": {}}, "'routes' must be a list"),
        ({"routes": [], "extra": 1}, "unknown key(s) 'extra'"),
        ({"scenarios": {"Bad Name": {}}}, "lower-case"),
        ({"scenarios": {"x": {"hide": ["/path"]}}}, "not 'METHOD /template'"),
        ({"scenarios": {"x": {"hide": "GET /a"}}}, "'hide' must be a list"),
        ({"scenarios": {"x": {"bse": "connected"}}}, "unknown key(s) 'bse'"),
    ],
)
def test_fixture_validation(data, message):
    with pytest.raises(FixtureError, match=re.escape(message)):
        compile_fixture(data, "p")


def test_comment_keys_are_allowed():
    routes, _ = compile_fixture(
        {
            "$comment": "x",
            "description": "d",
            "routes": [{"_note": 1, "method": "GET", "path": "/c", "description": "x"}],
        },
        "p",
    )
    assert routes[0].path == "/c"


# --------------------------------------------------------------------------- computed routes


def test_fakeroute_handlers():
    def json_handler(request):
        return 201, {
            "q": dict(request.query),
            "scenario": request.scenario,
            "id": "{{secret:session}}",
        }

    routes = [
        FakeRoute("GET", "/h/json", json_handler),
        FakeRoute("GET", "/h/bytes", lambda r: (200, b"{not json")),
        FakeRoute("GET", "/h/typed", lambda r: (200, b"hello", "text/plain")),
        FakeRoute("GET", "/h/raise", lambda r: 1 / 0),
        FakeRoute("GET", "/h/wrong", lambda r: "nonsense"),
    ]
    plugin = FixturePlugin(routes[0], fixture(*routes[1:]))
    router = FakeRouter(make_pm(plugin))
    answer = get(router, "/h/json", a="1")
    assert answer.status == 201
    assert body_of(answer) == {
        "q": {"a": "1"},
        "scenario": "connected",
        "id": secret_value("session"),
    }
    assert get(router, "/h/bytes").body == b"{not json"
    typed = get(router, "/h/typed")
    assert (typed.content_type, typed.body) == ("text/plain", b"hello")
    for path in ("/h/raise", "/h/wrong"):
        broken = get(router, path)
        assert broken.status == 500
        assert body_of(broken) == {"error": "fake route handler failed", "statusCode": 500}
    assert any("/h/raise raised ZeroDivisionError" in e for e in router.errors)


# --------------------------------------------------------------------------- declared scenarios


def test_declared_scenarios_hide_routes_and_inherit_behaviour():
    data = fixture(
        {"method": "GET", "path": "/iserver/extra", "response": "extra"},
        {"method": "GET", "path": "/portfolio/extra", "response": "pextra"},
        scenarios={
            "no-extra": {"description": "extra missing", "hide": ["GET /iserver/extra"]},
            "no-extra-no-bridge": {"base": "no-bridge", "hide": ["GET /portfolio/{x}"]},
            "child": {"base": "no-extra", "description": "inherits hiding"},
            "orphan": {"base": "does-not-exist"},
            "loop-a": {"base": "loop-b"},
            "loop-b": {"base": "loop-a"},
        },
    )
    router = FakeRouter(make_pm(FixturePlugin(data)))
    names = scenario_names(router)
    assert {"no-extra", "no-extra-no-bridge", "child"} <= set(names)
    assert not {"orphan", "loop-a", "loop-b"} & set(names)
    assert any("'orphan' has unknown base 'does-not-exist'" in e for e in router.errors)
    assert any("'loop-a' has a cycle" in e for e in router.errors)

    assert body_of(get(router, "/iserver/extra")) == "extra"
    assert get(router, "/iserver/extra", scenario="no-extra").body == NOT_FOUND_BODY
    assert get(router, "/iserver/extra", scenario="child").status == 404
    assert get(router, "/iserver/accounts", scenario="child").status == 200
    assert get(router, "/iserver/accounts", scenario="no-extra-no-bridge").status == 400
    assert get(router, "/portfolio/extra", scenario="no-extra-no-bridge").status == 404
    assert get(router, "/portfolio/accounts", scenario="no-extra-no-bridge").status == 404


def test_a_scenario_may_not_redefine_a_builtin():
    router = FakeRouter(make_pm(FixturePlugin(fixture(scenarios={"connected": {"hide": []}}))))
    assert any("scenario 'connected' is already defined" in e for e in router.errors)


def test_documented_only_hides_undocumented_routes():
    data = fixture(
        {"method": "GET", "path": "/iserver/news/x", "response": "undoc", "undocumented": True},
        {"method": "GET", "path": "/iserver/doc", "response": "doc"},
    )
    router = FakeRouter(make_pm(FixturePlugin(data)))
    assert body_of(get(router, "/iserver/news/x")) == "undoc"
    assert get(router, "/iserver/news/x", scenario="documented-only").body == NOT_FOUND_BODY
    assert body_of(get(router, "/iserver/doc", scenario="documented-only")) == "doc"


def test_router_picks_up_plugins_registered_later(fake_pm):
    router = FakeRouter(fake_pm)
    assert get(router, "/late").status == 404
    fake_pm.register(
        FixturePlugin(fixture({"method": "GET", "path": "/late", "response": "here"})), name="late"
    )
    assert body_of(get(router, "/late")) == "here"
    fake_pm.unregister(name="late")
    assert get(router, "/late").status == 404


def test_router_without_plugin_manager_serves_the_core_fixtures():
    router = FakeRouter(None)
    assert router.errors == []
    assert get(router, "/portfolio/accounts").status == 200


def test_duplicate_routes_within_one_fixture_skip_that_fixture():
    route = {"method": "GET", "path": "/twice", "response": 1}
    router = FakeRouter(make_pm(FixturePlugin(fixture(route, route))))
    assert any("route GET /twice duplicates one from plugin0:<dict>" in e for e in router.errors)
    assert get(router, "/twice").status == 404
