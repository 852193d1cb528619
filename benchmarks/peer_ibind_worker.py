"""Runs in ``.bench-venv-peer/bin/python`` (never in the project's .venv).

``python peer_ibind_worker.py BASE_URL`` builds one ibind ``IbkrClient`` pointed at
the fake gateway (``url=BASE_URL/``, ``cacert=False``) and one bare
``requests.Session``, warms both up, prints ``ready``, then for every ``go`` line on
stdin makes one ``GET /iserver/exchangerate?source=USD&target=EUR`` through each (in
alternating order) and prints ``{"ibind": seconds, "bare": seconds}``. ``quit`` ends it.
Timing is done here so that no pipe or process switch is inside a measurement.
"""

import json
import os
import sys
import time

os.environ.setdefault("IBIND_LOG_TO_FILE", "False")
os.environ.setdefault("IBIND_LOG_TO_CONSOLE", "False")

import requests  # noqa: E402
from ibind import IbkrClient  # noqa: E402

QUERY = {"source": "USD", "target": "EUR"}


def main() -> None:
    base = sys.argv[1].rstrip("/")
    client = IbkrClient(
        url=base + "/", cacert=False, auto_register_shutdown=False, use_session=True
    )
    session = requests.Session()
    url = base + "/iserver/exchangerate"

    def ibind_call() -> float:
        t = time.perf_counter()
        result = client.currency_exchange_rate("USD", "EUR")
        elapsed = time.perf_counter() - t
        if not isinstance(result.data, dict) or "rate" not in result.data:
            raise SystemExit(f"ibind: unexpected answer {result.data!r}")
        return elapsed

    def bare_call() -> float:
        t = time.perf_counter()
        r = session.get(url, params=QUERY, timeout=10)
        r.raise_for_status()
        r.json()
        return time.perf_counter() - t

    for _ in range(5):
        ibind_call()
        bare_call()
    print("ready", flush=True)
    flip = False
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd != "go":
            continue
        flip = not flip
        if flip:
            a = ibind_call()
            b = bare_call()
        else:
            b = bare_call()
            a = ibind_call()
        print(json.dumps({"ibind": a, "bare": b}), flush=True)


if __name__ == "__main__":
    main()
