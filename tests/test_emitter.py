"""Every line that reaches stdout or stderr goes through ``ibgw.output.emit``.

The walk parses every module of ``ibgw/`` and of each plugin's ``src/`` and fails on a
raw write anywhere but ``ibgw/output.py``: ``click.echo``/``click.secho`` (however
imported), ``print``, ``sys.stdout.write``/``sys.stderr.write`` (and ``sys.__stdout__``
...), and ``os.write`` to descriptor 1 or 2. The emitter itself is then held to what it
promises: redaction, fail-closed, a closed or ASCII-only stdout.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ibgw import output, redact

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {ROOT / "ibgw" / "output.py"}


def _sources() -> list[Path]:
    files = sorted((ROOT / "ibgw").rglob("*.py"))
    for src in sorted((ROOT / "plugins").glob("*/src")):
        files += sorted(src.rglob("*.py"))
    return [f for f in files if "build" not in f.relative_to(ROOT).parts]


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


STREAMS = {"stdout", "stderr", "__stdout__", "__stderr__"}


def raw_writes(source: str, filename: str = "<string>") -> list[str]:
    """``line: call`` for every raw write to stdout/stderr in ``source``."""
    tree = ast.parse(source, filename)
    # names bound to click's echo/secho or to sys.stdout/sys.stderr by import or assignment
    echo_names, stream_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "click":
            for alias in node.names:
                if alias.name in ("echo", "secho"):
                    echo_names.add(alias.asname or alias.name)
        if isinstance(node, ast.ImportFrom) and node.module == "sys":
            for alias in node.names:
                if alias.name in STREAMS:
                    stream_names.add(alias.asname or alias.name)
        if isinstance(node, ast.Assign) and _dotted(node.value).split(".")[-1] in STREAMS:
            if _dotted(node.value).startswith("sys."):
                stream_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        bad = False
        if name in ("print", "click.echo", "click.secho") or name in echo_names:
            bad = True
        elif name == "os.write":
            pass  # below
        elif name.endswith((".write", ".writelines", ".buffer.write")):
            target = name.rsplit(".", 1)[0].removesuffix(".buffer")
            head = target.split(".")
            if (head[0] == "sys" and len(head) == 2 and head[1] in STREAMS) or (
                len(head) == 1 and head[0] in stream_names
            ):
                bad = True
        if name == "os.write" and node.args:
            fd = node.args[0]
            if isinstance(fd, ast.Constant) and fd.value in (1, 2):
                bad = True
            elif "stdout" in ast.unparse(fd) or "stderr" in ast.unparse(fd):
                bad = True
        if bad:
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_no_raw_write_outside_the_emitter():
    found = []
    for path in _sources():
        if path in ALLOWED:
            continue
        found += raw_writes(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "raw writes to stdout/stderr (use ibgw.output.emit):\n" + "\n".join(found)


PLANTED = [
    "click.echo('x')",
    "click.secho('x', err=True)",
    "print('x')",
    "sys.stdout.write('x')",
    "sys.stderr.write('x')",
    "sys.stdout.buffer.write(b'x')",
    "sys.__stderr__.write('x')",
    "os.write(1, b'x')",
    "os.write(2, b'x')",
    "os.write(sys.stderr.fileno(), b'x')",
    "from click import echo as say\nsay('x')",
    "from sys import stderr\nstderr.write('x')",
    "err = sys.stderr\nerr.write('x')",
]


@pytest.mark.parametrize("line", PLANTED)
def test_the_walk_finds_a_planted_raw_write(line):
    source = "import click, os, sys\n\ndef f():\n    pass\n" + line + "\n"
    assert raw_writes(source), line


def test_the_walk_fails_on_a_planted_violation_in_a_real_module(tmp_path):
    # a copy of a real module with one raw write planted in it
    real = (ROOT / "ibgw" / "default_plugins" / "core_commands.py").read_text(encoding="utf-8")
    assert raw_writes(real) == []
    planted = real.replace('    emit(f"{path}\\n")', '    emit(f"{path}\\n")\n    click.echo(path)')
    assert planted != real
    assert [f.split(": ", 1)[1] for f in raw_writes(planted)] == ["click.echo"]


def test_writes_that_are_not_stdout_are_not_flagged():
    source = "import os\nfh = open('x', 'w')\nfh.write('x')\nos.write(fd, b'x')\nbuf.write('y')\n"
    assert raw_writes(source) == []


# -- the emitter -------------------------------------------------------------------


def test_emit_redacts_learned_secrets_and_home(capsys, monkeypatch):
    monkeypatch.setenv("HOME", "/home/alice-emitter")
    redact.add_secret("EMITSECRETVALUE1")
    output.emit("a EMITSECRETVALUE1 /home/alice-emitter/x\n")
    output.emit("e EMITSECRETVALUE1\n", err=True)
    out, err = capsys.readouterr()
    assert out == "a [redacted] ~/x\n"
    assert err == "e [redacted]\n"


def test_emit_withholds_everything_when_redaction_fails(capsys, monkeypatch):
    def broken(_text):
        raise redact.RedactionFailed()

    monkeypatch.setattr(redact, "safe_text", broken)
    output.emit("SECRET-WOULD-LEAK\n")
    output.emit("SECRET-WOULD-LEAK\n", err=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "SECRET" not in err
    assert err.count("output withheld") == 2


class _Closed(io.StringIO):
    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")


def test_emit_on_a_broken_pipe_stops_quietly(monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Closed())
    monkeypatch.setattr(output, "_silence_stdout", lambda: None)
    with pytest.raises(SystemExit) as info:
        output.emit("rows\n")
    assert info.value.code == 0


def test_emit_to_a_broken_stderr_is_dropped(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Closed())
    output.emit("note\n", err=True)  # nothing raised


def test_emit_to_an_ascii_stream_escapes_what_it_cannot_encode(monkeypatch):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    output.emit("Nestlé 株式\n")
    stream.flush()
    assert raw.getvalue() == b"Nestl\\xe9 \\u682a\\u5f0f\n"


def _ibgw(*args, **kw):
    env = dict(os.environ, IBGW_STATE_DIR=str(kw.pop("state")), IBGW_LOAD_PLUGINS="ibgw-fake")
    env.update(kw.pop("env", {}))
    exe = Path(sys.executable).with_name("ibgw")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, **kw)


def test_console_script_with_a_closed_stdout_exits_quietly(tmp_path):
    # stdout closed before ibgw starts (ibgw ... >&-)
    env = dict(os.environ, IBGW_STATE_DIR=str(tmp_path), IBGW_LOAD_PLUGINS="ibgw-fake")
    exe = Path(sys.executable).with_name("ibgw")
    proc = subprocess.run(
        [str(exe), "--backend", "fake", "plugins"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        close_fds=True,
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr and proc.stderr == b""


def test_console_script_into_a_pipe_closed_early_exits_quietly(tmp_path):
    env = dict(os.environ, IBGW_STATE_DIR=str(tmp_path), IBGW_LOAD_PLUGINS="ibgw-fake")
    exe = Path(sys.executable).with_name("ibgw")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write gets EPIPE
    try:
        proc = subprocess.run(
            [str(exe), "--backend", "fake", "plugins"],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""


def test_console_script_on_an_ascii_only_stdout_prints_escapes(tmp_path):
    env = dict(
        os.environ,
        IBGW_STATE_DIR=str(tmp_path),
        IBGW_LOAD_PLUGINS="ibgw-fake",
        PYTHONIOENCODING="ascii:strict",
        PYTHONUTF8="0",
        LC_ALL="C",
    )
    exe = Path(sys.executable).with_name("ibgw")
    proc = subprocess.run(
        [str(exe), "--backend", "fake", "config", "path", "--help"],
        env=env,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [str(exe), "--backend", "fake", "--config", str(tmp_path / "café.toml"), "config", "path"],
        env=env,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    # the non-ASCII part is escaped (how depends on the locale's argv decoding)
    assert proc.stdout.strip().endswith(b".toml") and b"caf\\" in proc.stdout
    assert b"Traceback" not in proc.stderr
