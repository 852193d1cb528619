"""The core's canned gateway answers for the fake backend.

Every ``*.json`` file of the package ``ibgw.fixtures`` (the top-level
``fixtures/`` folder of the source tree): session and auth status, tickle,
``/sso/validate``, account discovery, positions and contract search. The fake
backend (``ibgw-fake``) routes requests to them; see ``ibgw_fake.router`` for
the format.
"""

from ibgw.hookspecs import hookimpl


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files  # imported lazily: it pulls in tempfile

    folder = files("ibgw.fixtures")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            register(entry)
