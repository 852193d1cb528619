"""The declarations plugins build (``Endpoint``, ``Param``, ``Read``, ``Result``,
``FakeRoute``) behave as the frozen dataclasses the plugin guide promises, although
their methods are written by hand (``@dataclass`` would generate them at every
start-up)."""

import copy
import dataclasses
import inspect

import pytest

from ibgw import Category, Endpoint, FakeRoute, Param, Read, Result

CLASSES = [Endpoint, Param, Read, Category, Result, FakeRoute]
FROZEN = {Endpoint, Param, Read, Category, FakeRoute}
CHANGE = {
    Endpoint: {"path": "/other"},
    Param: {"help": "Other."},
    Read: {"summary": "Other."},
    Category: {"summary": "Other."},
    Result: {"variant": "GET /other"},
    FakeRoute: {"source": "other"},
}


def _handler(request):
    return 200, {}


def samples():
    endpoint = Endpoint("get", "/portfolio/{accountId}/ledger", params={"accountId": "[A-Z0-9]+"})
    param = Param("symbol", "Ticker.", argument=True, pattern="[A-Z]{1,5}")
    read = Read(
        category="demo",
        name="ledger",
        summary="A ledger.",
        fetch="demo.reads:fetch",
        params=(param,),
        endpoints=(endpoint,),
        columns=("currency",),
    )
    return {
        Endpoint: endpoint,
        Param: param,
        Read: read,
        Category: Category("demo", "Demo reads."),
        Result: Result([{"a": 1}], provenance="documented"),
        FakeRoute: FakeRoute("GET", "/x", _handler, source="demo"),
    }


def reference(cls):
    """The dataclass ``@dataclass`` would have generated from the same fields."""
    fields = [
        (f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=cls in FROZEN)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_constructor_takes_the_fields_in_order_with_their_defaults(cls):
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None, f.name  # None stands for a fresh default
        else:
            assert p.default is inspect.Parameter.empty, f.name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_behaves_like_the_generated_dataclass(cls):
    ours = samples()[cls]
    values = {f.name: getattr(ours, f.name) for f in dataclasses.fields(cls)}
    theirs = reference(cls)(**values)
    assert repr(ours) == repr(theirs)
    assert ours == cls(**values) and ours is not cls(**values)
    assert ours != dataclasses.replace(ours, **CHANGE[cls])
    assert ours.__eq__(theirs) is NotImplemented  # another class is never equal
    if cls in FROZEN:
        if cls is not Endpoint:  # Endpoint hashes its identity fields only
            assert hash(ours) == hash(theirs)
        assert hash(ours) == hash(cls(**values))
        first = dataclasses.fields(cls)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(ours, first, "changed")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(ours, first)
        assert ours == cls(**values)
    else:
        with pytest.raises(TypeError):
            hash(ours)
        ours.notes.append("changed")
        ours.variant = "GET /x"
        assert ours.notes == ["changed"] and ours.variant == "GET /x"


def test_defaults_are_fresh_and_validation_still_runs():
    assert Endpoint("GET", "/a").params == {} and Endpoint("GET", "/a").params is not (
        Endpoint("GET", "/b").params
    )
    assert Result([]).notes == [] and Result([]).notes is not Result([]).notes
    assert Endpoint("get", "/a").method == "GET"
    with pytest.raises(ValueError, match="method must be GET or POST"):
        Endpoint("DELETE", "/a")
    with pytest.raises(ValueError, match="lower-case"):
        Read(category="Demo", name="x", summary="x", fetch="m:f")
    with pytest.raises(ValueError, match="choice needs choices"):
        Param("side", "Side.", type="choice")
    with pytest.raises(ValueError, match="lower-case"):  # replace() validates as well
        dataclasses.replace(samples()[Read], name="Bad")


def test_dataclass_helpers_work():
    read = samples()[Read]
    assert dataclasses.is_dataclass(read)
    assert dataclasses.asdict(read)["params"][0]["name"] == "symbol"
    assert copy.deepcopy(read) == read and copy.copy(read) == read
    match read:
        case Read("demo", name):
            assert name == "ledger"
        case _:
            pytest.fail("positional pattern matching follows the field order")
