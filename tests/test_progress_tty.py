"""A long read shows a progress bar on stderr when stderr is a terminal, and nothing
when it is not (scripts and pipes get clean output)."""

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

IBGW = str(Path(sys.executable).with_name("ibgw"))
CHAIN = [
    "--backend",
    "fake",
    "options",
    "chain",
    "SPY",
    "--month",
    "APR26",
    "--strikes-around",
    "4",
]


@pytest.fixture
def env(tmp_path):
    (tmp_path / "empty.toml").write_text("")
    e = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    e.update(IBGW_STATE_DIR=str(tmp_path / "state"), IBGW_CONFIG=str(tmp_path / "empty.toml"))
    return e


def test_progress_on_a_terminal_only(env, tmp_path):
    main, secondary = pty.openpty()
    proc = subprocess.Popen([IBGW, *CHAIN], stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=60)
    os.close(main)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "[" in terminal and "/16" in terminal, terminal  # 8 strikes x 2 rights
    assert "#" in terminal
    assert b"conid" in out and b"[" not in out.split(b"\n", 1)[0]

    fresh = dict(env, IBGW_STATE_DIR=str(tmp_path / "state2"))  # no cached contracts
    piped = subprocess.run([IBGW, *CHAIN], capture_output=True, env=fresh)
    assert piped.returncode == 0
    assert b"#" not in piped.stderr and b"/16" not in piped.stderr
