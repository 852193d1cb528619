"""The audit trail: one intent record before a gateway call, one outcome record after.

Fail closed: :meth:`Auditor.intent` raises :class:`ibgw.errors.AuditUnavailable` unless
at least one sink wrote the record, and the caller makes no gateway call then.

The default sink, :class:`JsonlSink`, appends one JSON object per line to
``<state_dir>/audit.jsonl``:

* **Chain.** Each record carries ``seq`` (previous + 1), ``prev`` (the previous record's
  ``hash``, 64 zeros for the first) and ``hash`` = HMAC-SHA256(key, canonical JSON of the
  record without ``hash``). Canonical JSON is ``sort_keys``, ``ensure_ascii`` and compact
  separators, and every line must be byte-identical to the canonical form of what it
  parses to. The key is ``audit.key`` (32 random bytes, hex, mode 0600) in the same
  directory, created once.
* **Checkpoint.** ``audit.checkpoint`` holds the ``seq``/``hash`` of the last synced
  record and a MAC over both. A genesis checkpoint is created atomically (temp file,
  fsync, rename, fsync of the directory) before the first record; after that it is
  overwritten in place (one ``pwrite`` of a fixed 256-byte block) and only ever to name
  a record already on disk, so after a power cut it can lag the log but never run ahead
  of it. :func:`verify` reports a file whose last record is behind the checkpoint (a
  truncated or deleted tail), and the writer refuses to append to such a file rather
  than chain over the gap; a writer also refuses when a record it wrote itself is gone.
* **Durability.** One ``os.write`` of the whole line (looping on short writes); an
  *intent* record is then synced (``fdatasync``, which also flushes the file's new size)
  before :meth:`JsonlSink.write` returns, so no call goes out before its intent is on
  disk. An *outcome* or *denied* record is written at once (another process, or a crash
  of this one, sees it) and synced by the next intent, by :meth:`JsonlSink.close`, or at
  interpreter exit: only a power cut in between can lose it, and the log then shows an
  intent without its outcome, never a false record. Any failure (ENOSPC, EIO, EROFS,
  EACCES...) truncates the partial line away when it can and raises.
* **Segments.** When an append would take ``audit.jsonl`` past ``max_bytes`` it is synced
  and renamed ``audit.<NNNNNN>.jsonl`` (the next number) and a new live file starts; ``seq``
  and the chain run on across the boundary. A crash after the rename leaves no live file,
  and the next writer chains to the newest closed segment. Beyond ``keep`` closed
  segments the oldest is dropped: first a synced ``pruned`` record names it with its last
  ``seq`` and hash, then the file is removed. :func:`verify` walks every kept segment and
  accepts a missing start only where a ``pruned`` record accounts for it.
* **Seal.** The key file holds, at offset 4096 (a page away from the key), a MAC'd
  ``(seq, hash)`` moved with the checkpoint: a high-water mark kept apart from the log and
  checkpoint. A log whose end is behind it (log and checkpoint deleted, or an old
  checkpoint restored and the log cut back) is reported by :func:`verify` and refused by
  the writer until :meth:`JsonlSink.acknowledge` (``ibgw audit acknowledge``) appends an
  ``acknowledged`` record. Writer and verify share one rule, :func:`_tail_problem`.
* **Bounded records.** :class:`Auditor` cuts intent parameters (long strings, long lists
  and mappings, then the whole) to a head, a count and a keyed hash; the tail reader looks
  back as far as it must, so no record size wedges the writer.
* **Torn lines.** If a crash still leaves a partial last line, the next writer ends it with
  a newline and writes its record with ``"recovered": true``, chained to the last complete
  record. :func:`verify` accepts unreadable lines only when the record right after them is
  such a recovered record (it lists them in ``recovered_lines``); a torn *last* line, or
  unreadable lines followed by an ordinary record, are reported. Only the key holder can
  write a recovered record, and the checkpoint stops a writer from "recovering" over a
  record that had been committed.
* **Files.** The directory is created 0700 (and chmod'ed to 0700), files 0600. Every path
  component below the home directory (all of them when the state dir is outside home) is
  opened with ``O_NOFOLLOW | O_DIRECTORY`` and files with ``O_NOFOLLOW`` relative to the
  directory descriptor, so a symlinked directory, parent or file is refused.
* **Concurrency.** ``fcntl.flock`` on ``audit.lock`` serialises writers across processes
  (CLI and MCP server at once), and a mutex the threads of one process; only the file's
  tail is read on append.
* **Descriptors.** A sink keeps its directory, lock, log and checkpoint descriptors open
  between writes (a long-lived MCP server writes two records per call). Before each
  write it re-checks, by ``lstat``, that each name still leads to the file it holds,
  still a regular 0600 file with one link (and, for the lock, after taking it); on any
  difference, after a ``fork``, or after any error it drops them all and opens again
  through the full checks above.

Records never hold secrets, cookies, headers, file paths or account ids: account ids become
``account_hash()`` values and every record passes through :func:`ibgw.redact.data`.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from .errors import AuditUnavailable

log = logging.getLogger("ibgw.audit")

LOG_NAME = "audit.jsonl"
KEY_NAME = "audit.key"
#: Closed segments are ``audit.<6+ digit number>.jsonl`` beside the live ``audit.jsonl``.
_SEGMENT_RE = re.compile(r"^(?P<stem>.+)\.(?P<n>[0-9]{6,})\.jsonl$")
DEFAULT_MAX_BYTES = 16 << 20
DEFAULT_KEEP = 30
#: The seal (sealed high-water mark) lives in the key file at this offset, a page
#: away from the key itself so rewriting it never touches the key's page.
_SEAL_OFFSET = 4096
#: Caps on intent parameters: longer strings / lists / mappings keep their head, a
#: count and a keyed hash of the whole.
PARAM_MAX_CHARS = 256
PARAM_MAX_ITEMS = 32
PARAMS_MAX_BYTES = 4096
LOCK_NAME = "audit.lock"
CHECKPOINT_NAME = "audit.checkpoint"
GENESIS = "0" * 64
OUTCOMES = ("ok", "error", "denied")
#: Record kinds synced to disk before :meth:`JsonlSink.write` returns. Other records
#: (outcomes, refusals) are written at once and synced by the next synced record, by
#: :meth:`JsonlSink.close`, or at interpreter exit.
SYNCED_KINDS = frozenset({"intent"})
LOCK_TIMEOUT = 10.0
_CHECKPOINT_SIZE = 256
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ACCOUNT_KEYS = frozenset({"account", "acctid", "accountid", "acct", "account_id"})
_ACCOUNT_LIST_KEYS = frozenset({"accounts", "acctids", "accountids", "account_ids"})
_ACCOUNT_RE = re.compile(r"\b(?:DU|DF|U|F)\d{5,12}\b")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC


class AuditError(AuditUnavailable):
    """An audit store could not be used. The message names no path and carries no
    exception text from the operating system, so it is safe to print."""

    default_reason = "audit-unavailable"


def _oserror(what: str, exc: OSError) -> AuditError:
    code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return AuditError(f"audit unavailable: {what} ({code})")


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go. ``write`` raises when the record was not stored."""

    name: str

    def write(self, record: dict) -> None: ...


# -- canonical form and MACs ------------------------------------------------------------


def canonical(obj) -> str:
    return json.dumps(
        obj, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False
    )


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()


def _record_hash(key: bytes, record: dict) -> str:
    return _mac(key, canonical({k: v for k, v in record.items() if k != "hash"}))


def _checkpoint_mac(key: bytes, seq: int, digest: str) -> str:
    return _mac(key, f"ibgw-audit-checkpoint:{seq}:{digest}")


# -- safe directory and file access -----------------------------------------------------


def _home() -> str | None:
    try:
        home = os.path.abspath(os.path.expanduser("~"))
    except Exception:
        return None
    return None if home in ("/", "") or home.startswith("~") else home


def _open_dir(directory, create: bool) -> int | None:
    """Open ``directory`` without following symlinks and return its descriptor.

    Components that are the home directory or its ancestors are trusted (they belong to
    the system's layout, and may legitimately be symlinks, e.g. /home -> /var/home); every
    other component is opened relative to its parent with ``O_NOFOLLOW | O_DIRECTORY``.
    Missing components are created 0700 when ``create``; otherwise ``None`` is returned.
    """
    path = os.path.abspath(os.fspath(directory))
    parts = [p for p in path.split(os.sep) if p]
    home = _home()
    trusted = 0
    for i in range(1, len(parts)):  # never trust the state dir itself
        prefix = os.sep + os.sep.join(parts[:i])
        if home is not None and (home == prefix or home.startswith(prefix + os.sep)):
            trusted = i
        else:
            break
    base = os.sep + os.sep.join(parts[:trusted])
    try:
        fd = os.open(base, _DIR_FLAGS)
    except FileNotFoundError:
        if not create:
            return None
        raise AuditError("audit unavailable: the state directory's parent is missing") from None
    except OSError as exc:
        raise _oserror("cannot open the state directory", exc) from None
    try:
        for name in parts[trusted:]:
            try:
                child = os.open(name, _DIR_FLAGS | _O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(name, _DIR_FLAGS | _O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if _is_symlink(name, fd):
                    raise AuditError(
                        "audit unavailable: the state directory path contains a "
                        "symlink; use the real path"
                    ) from None
                if exc.errno == errno.ENOTDIR:
                    raise AuditError(
                        "audit unavailable: a state directory path component is not a directory"
                    ) from None
                raise
            os.close(fd)
            fd = child
        st = os.fstat(fd)
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise AuditError("audit unavailable: the state directory belongs to another user")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
        return fd
    except AuditError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise _oserror("cannot open the state directory", exc) from None


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _open_file(dir_fd: int, name: str, flags: int, what: str) -> int:
    try:
        fd = os.open(name, flags | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK, 0o600, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP or _is_symlink(name, dir_fd):
            raise AuditError(f"audit unavailable: the {what} is a symlink") from None
        raise _oserror(f"cannot open the {what}", exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"audit unavailable: the {what} is not a regular file")
        if st.st_nlink > 1:
            raise AuditError(f"audit unavailable: the {what} has other hard links")
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    except AuditError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise _oserror(f"cannot open the {what}", exc) from None
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def _read_small(dir_fd: int, name: str, what: str, limit: int = 4096) -> bytes | None:
    try:
        fd = _open_file(dir_fd, name, os.O_RDONLY, what)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, limit)
    except OSError as exc:
        raise _oserror(f"cannot read the {what}", exc) from None
    finally:
        os.close(fd)


def _flock(fd: int, mode: int, timeout: float = LOCK_TIMEOUT) -> None:
    """Take ``flock(mode)`` on ``fd``, waiting at most ``timeout`` seconds."""
    import fcntl

    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise AuditError(
                    "audit unavailable: the audit log is locked by another process"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.001)
        except OSError as exc:
            raise _oserror("cannot lock the audit log", exc) from None


class _Lock:
    """``flock`` on ``audit.lock``; exclusive for writers, shared for readers."""

    def __init__(self, dir_fd: int, shared: bool = False, timeout: float = LOCK_TIMEOUT):
        self.dir_fd, self.shared, self.timeout = dir_fd, shared, timeout
        self.fd: int | None = None

    def __enter__(self):
        import fcntl

        self.fd = _open_file(self.dir_fd, LOCK_NAME, os.O_RDWR | os.O_CREAT, "audit lock file")
        try:
            _flock(self.fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX, self.timeout)
        except BaseException:
            self._close()
            raise
        return self

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __exit__(self, *exc):
        self._close()


# -- the key -----------------------------------------------------------------------------


def _parse_key(raw: bytes | None) -> bytes | None:
    if raw is None:
        return None
    text = raw.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    if not _HEX64.match(text):
        return None
    return bytes.fromhex(text)


def _load_key(dir_fd: int, create: bool, locked: bool = False) -> bytes | None:
    """The per-install HMAC key. Created when missing, under the lock: written to a
    temporary file (``O_EXCL``), fsynced, then renamed into place, so a reader never sees a
    partial key. An unreadable key is never replaced (old records would stop verifying)."""
    raw = _read_small(dir_fd, KEY_NAME, "audit key")
    key = _parse_key(raw)
    if key is not None:
        return key
    if not locked:
        if raw is None and not create:
            return None
        with _Lock(dir_fd, shared=not create):
            return _load_key(dir_fd, create, locked=True)
    if raw is not None:
        raise AuditError(
            "audit unavailable: the audit key is corrupt",
            hint="Move the audit directory aside to start a new log; nothing was sent.",
        )
    if not create:
        return None
    tmp = KEY_NAME + ".tmp"
    try:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        fd = _open_file(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "audit key")
        try:
            new_key = secrets.token_hex(32)
            _write_all(fd, new_key.encode("ascii") + b"\n")
            os.pwrite(fd, _seal_block(bytes.fromhex(new_key), 0, GENESIS), _SEAL_OFFSET)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, KEY_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise _oserror("cannot create the audit key", exc) from None
    _fsync_dir(dir_fd)
    return _parse_key(_read_small(dir_fd, KEY_NAME, "audit key"))


def _fsync_dir(dir_fd: int) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # some filesystems refuse
            raise _oserror("cannot sync the state directory", exc) from None


def _key_for(directory, create: bool = True) -> bytes | None:
    dir_fd = _open_dir(directory, create=create)
    if dir_fd is None:
        return None
    try:
        return _load_key(dir_fd, create=create)
    finally:
        os.close(dir_fd)


def _hash_account(key: bytes, account_id) -> str:
    digest = hmac.new(key, str(account_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return "acct-" + digest[:16]


def account_hash(account_id, directory) -> str:
    """``acct-`` + the first 16 hex digits of HMAC-SHA256(audit key, account id)."""
    key = _key_for(directory, create=True)
    assert key is not None
    return _hash_account(key, account_id)


# -- the checkpoint ----------------------------------------------------------------------


@dataclass
class _Checkpoint:
    seq: int
    hash: str


def _read_checkpoint(dir_fd: int, key: bytes) -> _Checkpoint | None:
    return _parse_checkpoint(_read_small(dir_fd, CHECKPOINT_NAME, "audit checkpoint"), key)


def _parse_checkpoint(raw: bytes | None, key: bytes) -> _Checkpoint | None:
    if raw is None:
        return None
    try:
        obj = json.loads(raw.decode("ascii"))
        seq, digest, mac = obj["seq"], obj["hash"], obj["mac"]
        ok = (
            isinstance(seq, int)
            and not isinstance(seq, bool)
            and seq >= 0
            and isinstance(digest, str)
            and _HEX64.match(digest)
            and isinstance(mac, str)
            and hmac.compare_digest(mac, _checkpoint_mac(key, seq, digest))
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise AuditError("audit unavailable: the audit checkpoint is corrupt or was edited")
    return _Checkpoint(seq, digest)


def _checkpoint_block(key: bytes, seq: int, digest: str) -> bytes:
    body = canonical({"seq": seq, "hash": digest, "mac": _checkpoint_mac(key, seq, digest)})
    return body.encode("ascii").ljust(_CHECKPOINT_SIZE - 1) + b"\n"


def _overwrite_checkpoint(fd: int, key: bytes, seq: int, digest: str) -> bytes:
    """Overwrite an existing checkpoint in place: one ``pwrite`` of a fixed-size block at
    offset 0 (well inside one disk sector). No sync of its own: the caller has already
    synced the record it names, so on disk the checkpoint can only lag the log, which
    the writer and :func:`verify` accept, never run ahead of it. A torn block (which
    single-sector writes do not produce) would fail its MAC and stop the writer. Returns
    the block written."""
    block = _checkpoint_block(key, seq, digest)
    try:
        if os.pwrite(fd, block, 0) != len(block):
            raise OSError(errno.EIO, "short write")
        if os.fstat(fd).st_size != len(block):
            os.ftruncate(fd, len(block))
    except OSError as exc:
        raise _oserror("cannot write the audit checkpoint", exc) from None
    return block


def _create_checkpoint(dir_fd: int, key: bytes, seq: int, digest: str) -> None:
    """Create the checkpoint atomically: temp file, fsync, rename, fsync of the directory."""
    block = _checkpoint_block(key, seq, digest)
    tmp = CHECKPOINT_NAME + ".tmp"
    try:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        fd = _open_file(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "audit checkpoint")
        try:
            _write_all(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, CHECKPOINT_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise _oserror("cannot write the audit checkpoint", exc) from None
    _fsync_dir(dir_fd)


def _datasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


# -- the seal (sealed high-water mark, in the key file) ----------------------------------


def _seal_mac(key: bytes, seq: int, digest: str) -> str:
    return _mac(key, f"ibgw-audit-seal:{seq}:{digest}")


def _seal_block(key: bytes, seq: int, digest: str) -> bytes:
    body = canonical({"seal": seq, "hash": digest, "mac": _seal_mac(key, seq, digest)})
    return body.encode("ascii").ljust(_CHECKPOINT_SIZE - 1) + b"\n"


def _parse_seal(raw: bytes, key: bytes) -> _Checkpoint | None:
    """The seal's ``(seq, hash)``; ``None`` for a key file written before seals existed."""
    if not raw.strip(b"\x00"):
        return None
    try:
        obj = json.loads(raw.decode("ascii"))
        seq, digest, mac = obj["seal"], obj["hash"], obj["mac"]
        ok = (
            type(seq) is int
            and seq >= 0
            and isinstance(digest, str)
            and _HEX64.match(digest)
            and isinstance(mac, str)
            and hmac.compare_digest(mac, _seal_mac(key, seq, digest))
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise AuditError(
            "audit unavailable: the audit seal in the key file is corrupt or was edited"
        )
    return _Checkpoint(seq, digest)


def _read_seal(fd: int, key: bytes) -> _Checkpoint | None:
    try:
        return _parse_seal(os.pread(fd, _CHECKPOINT_SIZE, _SEAL_OFFSET), key)
    except OSError as exc:
        raise _oserror("cannot read the audit key", exc) from None


def _write_seal(fd: int, key: bytes, seq: int, digest: str) -> bytes:
    """Move the seal, like the checkpoint: one ``pwrite`` of a fixed block, no sync of its
    own, only ever naming a record already synced."""
    block = _seal_block(key, seq, digest)
    try:
        if os.pwrite(fd, block, _SEAL_OFFSET) != len(block):
            raise OSError(errno.EIO, "short write")
    except OSError as exc:
        raise _oserror("cannot write the audit seal", exc) from None
    return block


def _tail_problem(
    seq: int, digest: str, checkpoint: _Checkpoint | None, seal: _Checkpoint | None
) -> tuple[str, str] | None:
    """``(code, text)`` when the log's last record ``(seq, digest)`` is behind the
    checkpoint or the seal. The writer refuses then and :func:`verify` reports it: both
    use this one rule, so they always agree."""
    if checkpoint is None:
        if seq:
            return (
                "checkpoint-missing",
                "the audit checkpoint is missing (the tail cannot be checked)",
            )
    elif checkpoint.seq > seq or (checkpoint.seq == seq and checkpoint.hash != digest):
        return (
            "truncated",
            f"log truncated: the checkpoint is at seq {checkpoint.seq} "
            f"but the last record is seq {seq}",
        )
    if seal is not None and (seal.seq > seq or (seal.seq == seq and seal.hash != digest)):
        if seq == 0:
            return (
                "log-missing",
                f"the audit log is missing, but the key's seal says {seal.seq} records "
                "were written (deleted)",
            )
        return (
            "rolled-back",
            f"rolled back: the last record is seq {seq} but the key's seal is at seq "
            f"{seal.seq} (the log and checkpoint were truncated or restored)",
        )
    return None


_WRITER_REFUSALS = {
    "truncated": "the audit log is behind its checkpoint (truncated or edited)",
    "checkpoint-missing": "the audit checkpoint is missing",
    "checkpoint-corrupt": "the audit checkpoint is corrupt or was edited",
    "seal-corrupt": "the audit seal in the key file is corrupt or was edited",
    "log-missing": "the audit log is missing although records were written before (deleted)",
    "rolled-back": "the audit log is behind its sealed high-water mark (truncated or rolled back)",
}
ACK_HINT = (
    "Run 'ibgw audit verify'; if the loss is understood, 'ibgw audit acknowledge' records "
    "it and lets new records start. Nothing was sent."
)


# -- segments -------------------------------------------------------------------------------


def _stem(filename: str) -> str:
    return filename[: -len(".jsonl")] if filename.endswith(".jsonl") else filename


def segment_name(filename: str, number: int) -> str:
    return f"{_stem(filename)}.{number:06d}.jsonl"


def _segments(dir_fd: int, filename: str = LOG_NAME) -> list[tuple[int, str]]:
    """The closed segments beside ``filename``, oldest first, as ``(number, name)``."""
    stem = _stem(filename)
    try:
        names = os.listdir(dir_fd)
    except OSError as exc:
        raise _oserror("cannot list the state directory", exc) from None
    found = []
    for name in names:
        m = _SEGMENT_RE.match(name)
        if m and m["stem"] == stem:
            found.append((int(m["n"]), name))
    return sorted(found)


def _segment_anchor(dir_fd: int, name: str) -> tuple[int, str, bool, bool]:
    fd = _open_file(dir_fd, name, os.O_RDONLY, "audit log segment")
    try:
        return JsonlSink._anchor(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


# -- reading lines ------------------------------------------------------------------------


def _parse_record(raw: bytes) -> dict | None:
    """A line that has the shape of a record (it may still fail its MAC), or None."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    seq, digest = obj.get("seq"), obj.get("hash")
    if not (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and isinstance(digest, str)
        and _HEX64.match(digest)
    ):
        return None
    return obj


def _pread_all(fd: int, size: int, start: int = 0) -> bytes:
    chunks, pos = [], start
    while pos < size:
        chunk = os.pread(fd, min(1 << 20, size - pos), pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _tail_lines(fd: int, size: int, want: int) -> tuple[list[bytes], bool, bool]:
    """Read backwards from EOF for up to ``want`` complete (newline-terminated) lines, as
    far back as that takes (reads grow fourfold, so a record of any size costs about
    twice its bytes).

    Returns ``(lines, torn, at_bof)``: the lines, oldest first; whether the file ends
    without a newline (that fragment is not returned); whether the lines reach back to the
    start of the file.
    """
    if size == 0:
        return [], False, True
    block, pos, buf = 8192, size, b""
    while True:
        step = min(block, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        torn = not buf.endswith(b"\n")
        last_nl = buf.rfind(b"\n")
        complete = [] if last_nl < 0 else buf[:last_nl].split(b"\n")
        if pos > 0 and complete:
            complete = complete[1:]  # may start mid-line
        if len(complete) >= want or pos == 0:
            chosen = complete[-want:] if want else []
            return chosen, torn, pos == 0 and len(chosen) == len(complete)
        block *= 4


# -- the JSONL sink -----------------------------------------------------------------------


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class _Handles:
    """The descriptors a :class:`JsonlSink` keeps between writes, and what they were
    when opened. Only used under the sink's mutex."""

    def __init__(self, directory: str):
        self.pid = os.getpid()
        dir_fd = _open_dir(directory, create=True)
        assert dir_fd is not None
        self.dir_fd: int | None = dir_fd
        self.dir_id = _identity(os.fstat(self.dir_fd))
        self.files: dict[str, tuple[int, tuple[int, int]]] = {}
        self.key: bytes | None = None
        #: (seq, hash) of the last record this sink wrote and has not synced yet.
        self.pending: tuple[int, str] | None = None
        #: The checkpoint's bytes as last read or written, and what they say.
        self.checkpoint: tuple[bytes, _Checkpoint | None] | None = None
        #: The seal's bytes as last read or written, and what they say.
        self.seal: tuple[bytes, _Checkpoint | None] | None = None
        #: (file size, seq, hash, line) right after this sink's last append.
        self.tail: tuple[int, int, str, bytes] | None = None

    def still_valid(self, directory: str) -> bool:
        if self.pid != os.getpid():  # a forked child must not share our flock'd descriptors
            return False
        try:
            st = os.stat(directory, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and _identity(st) == self.dir_id

    def _current(self, name: str) -> bool:
        held = self.files.get(name)
        if held is None:
            return False
        try:
            st = os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        return (
            _identity(st) == held[1]
            and stat.S_ISREG(st.st_mode)
            and st.st_nlink == 1
            and stat.S_IMODE(st.st_mode) == 0o600
        )

    def file(self, name: str, flags: int, what: str) -> int:
        """The descriptor for ``name``, reopened (with every check of :func:`_open_file`)
        unless the one held is still the file at that name."""
        if self._current(name):
            return self.files[name][0]
        self.forget(name)
        fd = _open_file(self.dir_fd, name, flags, what)
        try:
            self.files[name] = (fd, _identity(os.fstat(fd)))
        except OSError as exc:
            os.close(fd)
            raise _oserror(f"cannot open the {what}", exc) from None
        return fd

    def forget(self, name: str) -> None:
        held = self.files.pop(name, None)
        if held is not None:
            os.close(held[0])

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # the descriptors are the parent's to close; ours close at exit
        for name in list(self.files):
            self.forget(name)
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None


def _flush_pending(handles: _Handles, filename: str) -> None:
    """Sync a record written without a sync, then move the checkpoint to it, if the log
    still ends with it and nothing newer is checkpointed. Under the file lock."""
    import fcntl

    if handles.pending is None or handles.pid != os.getpid():
        return
    seq, digest = handles.pending
    handles.pending = None
    held, lock = handles.files.get(filename), handles.files.get(LOCK_NAME)
    if held is None or lock is None or handles.key is None:
        return
    fd = held[0]
    _flock(lock[0], fcntl.LOCK_EX)
    try:
        _datasync(fd)
        if not handles._current(LOCK_NAME) or not handles._current(filename):
            return  # synced; the files changed under us, so the checkpoint is not ours
        anchor_seq, anchor_hash, _, _ = JsonlSink._anchor(fd, os.fstat(fd).st_size)
        cp = handles.files.get(CHECKPOINT_NAME)
        if (anchor_seq, anchor_hash) != (seq, digest) or cp is None:
            return  # another writer has moved on (and checkpoints its own records)
        current = _parse_checkpoint(os.pread(cp[0], 4096, 0), handles.key)
        if current is not None and current.seq < seq:
            _overwrite_checkpoint(cp[0], handles.key, seq, digest)
            key_fd = handles.files.get(KEY_NAME)
            if key_fd is not None and handles._current(KEY_NAME):
                _write_seal(key_fd[0], handles.key, seq, digest)
    finally:
        fcntl.flock(lock[0], fcntl.LOCK_UN)


def _close_handles(handles: _Handles, filename: str, mutex) -> None:
    """Flush what is pending and close. Run by :meth:`JsonlSink.close`, when the sink is
    collected, and at interpreter exit; never raises."""
    if not mutex.acquire(timeout=5):
        return  # another thread is still writing (at exit): leave its descriptors alone
    try:
        _flush_pending(handles, filename)
    except Exception as exc:
        log.warning("audit: a record was not synced at close (%s)", _describe(exc))
    finally:
        try:
            handles.close()
        except OSError:
            pass
        mutex.release()


class JsonlSink:
    """Append-only, hash-chained JSONL audit log in ``directory``."""

    name = "jsonl"

    def __init__(
        self,
        directory: str,
        filename: str = LOG_NAME,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
    ):
        if os.sep in filename or filename in ("", ".", ".."):
            raise ValueError("filename must be a plain file name")
        self.max_bytes, self.keep = int(max_bytes), max(1, int(keep))
        self.directory = os.path.abspath(os.fspath(directory))
        self.filename = filename
        self._mutex = threading.RLock()
        self._handles: _Handles | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.filename)

    def __repr__(self) -> str:  # no path: reprs end up in logs
        return f"<JsonlSink {self.filename}>"

    def close(self) -> None:
        """Close the descriptors kept between writes (also done when the sink is
        garbage-collected). The next write opens them again."""
        with self._mutex:
            self._drop()

    def _drop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _close_handles once
        self._handles, self._finalizer = None, None

    def _open(self) -> _Handles:
        handles = self._handles
        if handles is not None and handles.still_valid(self.directory):
            return handles
        self._drop()
        handles = _Handles(self.directory)
        self._handles = handles
        self._finalizer = weakref.finalize(
            self, _close_handles, handles, self.filename, self._mutex
        )
        return handles

    def write(self, record: dict) -> None:
        with self._mutex:
            try:
                handles = self._open()
                self._locked_write(handles, record)
            except BaseException:
                # Whatever went wrong, start the next write from a clean open.
                self._drop()
                raise

    def acknowledge(self) -> dict | None:
        """Accept a log end that the writer refuses (deleted, truncated or rolled back):
        write an ``acknowledged`` record saying what was found, and move the checkpoint
        and the seal to it. ``None`` when there was nothing to acknowledge."""
        with self._mutex:
            try:
                handles = self._open()
                return self._locked_write(handles, None)
            except BaseException:
                # Whatever went wrong, start the next write from a clean open.
                self._drop()
                raise

    def _locked_write(self, handles: _Handles, record: dict | None) -> dict | None:
        """Append ``record`` under the file lock; ``None`` acknowledges a refused tail
        instead (returns the ``acknowledged`` record, or ``None`` when nothing was wrong)."""
        import fcntl

        for _ in range(10):
            held = handles.files.get(LOCK_NAME)
            if held is not None:
                lock_fd = held[0]  # checked below, once it is locked
            else:
                lock_fd = handles.file(LOCK_NAME, os.O_RDWR | os.O_CREAT, "audit lock file")
            _flock(lock_fd, fcntl.LOCK_EX)
            if not handles._current(LOCK_NAME):
                # Not (or no longer) the lock file at that name: another process would
                # not see our lock. Closing releases it; lock the file there now.
                handles.forget(LOCK_NAME)
                continue
            try:
                if handles.key is None:
                    handles.key = _load_key(handles.dir_fd, create=True, locked=True)
                    assert handles.key is not None
                return self._append(handles, handles.key, record)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
        raise AuditError("audit unavailable: the audit lock file keeps changing")

    def _log_fd(self, handles: _Handles) -> int:
        return handles.file(self.filename, os.O_RDWR | os.O_APPEND | os.O_CREAT, "audit log")

    def _append(self, handles: _Handles, key: bytes, record: dict | None) -> dict | None:
        dir_fd = handles.dir_fd
        assert dir_fd is not None
        fd = self._log_fd(handles)
        key_fd = handles.file(KEY_NAME, os.O_RDWR, "audit key")
        try:
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise _oserror("cannot read the audit log", exc) from None
        try:
            cp_fd = handles.file(CHECKPOINT_NAME, os.O_RDWR, "audit checkpoint")
        except FileNotFoundError:
            cp_fd = None
        problem: tuple[str, str] | None = None
        try:
            checkpoint = (
                None if cp_fd is None else self._cached(handles, "checkpoint", cp_fd, 0, key)
            )
        except AuditError:
            if record is not None:
                raise
            checkpoint, problem = None, ("checkpoint-corrupt", "")
        try:
            seal = self._cached(handles, "seal", key_fd, _SEAL_OFFSET, key)
        except AuditError:
            if record is not None:
                raise
            seal, problem = None, problem or ("seal-corrupt", "")
        if size == 0:
            # A new live segment (first use, a rotation, or a crash right after one):
            # the chain goes on from the newest closed segment.
            segments = _segments(dir_fd, self.filename)
            if segments:
                anchor_seq, anchor_hash, skipped, torn = _segment_anchor(dir_fd, segments[-1][1])
                skipped = torn = False  # the torn end, if any, stays in that segment
            else:
                anchor_seq, anchor_hash, skipped, torn = 0, GENESIS, False, False
        else:
            segments = None
            anchor_seq, anchor_hash, skipped, torn = self._tail_anchor(handles, fd, size)
        pending = handles.pending
        if pending is not None and (
            anchor_seq < pending[0] or (anchor_seq == pending[0] and anchor_hash != pending[1])
        ):
            handles.pending = None
            raise AuditError(
                "audit unavailable: a record this process wrote is gone from the audit log "
                "(truncated or edited); run 'ibgw audit verify'",
                hint=ACK_HINT,
            )
        problem = problem or _tail_problem(anchor_seq, anchor_hash, checkpoint, seal)
        if record is None:
            if problem is None:
                return None
            record = {
                "kind": "acknowledged",
                "ts": _now(),
                "actor": "cli",
                "acknowledged": problem[0],
                "last_seq": anchor_seq,
                "checkpoint_seq": None if checkpoint is None else checkpoint.seq,
                "sealed_seq": None if seal is None else seal.seq,
            }
            record = {k: v for k, v in record.items() if v is not None}
        elif problem is not None:
            raise AuditError(
                f"audit unavailable: {_WRITER_REFUSALS[problem[0]]}; run 'ibgw audit verify'",
                hint=ACK_HINT,
            )
        elif checkpoint is None:
            # Genesis checkpoint before the first record: from now on a deleted or
            # truncated log is always noticed.
            _create_checkpoint(dir_fd, key, anchor_seq, anchor_hash)
            cp_fd = handles.file(CHECKPOINT_NAME, os.O_RDWR, "audit checkpoint")
        acknowledging = record.get("kind") == "acknowledged"
        state = [anchor_seq, anchor_hash, size, torn, skipped]
        built: tuple[dict, bytes] | None = self._build(key, record, state)
        if not (torn or skipped) and size > 0 and size + len(built[1]) > self.max_bytes:
            # Unreadable lines stay with the records around them: no rotation over them.
            fd = self._rotate(handles, fd)
            state[2], segments = 0, None
        if state[2] == 0:
            if self._prune(handles, key, fd, cp_fd, key_fd, state, segments):
                built = None  # chained after the pruned records now
        rec = self._write_one(
            handles,
            fd,
            key,
            record,
            state,
            record.get("kind") in SYNCED_KINDS or acknowledging,
            built,
        )
        if acknowledging:
            _create_checkpoint(dir_fd, key, rec["seq"], rec["hash"])
            handles.forget(CHECKPOINT_NAME)
            handles.checkpoint = None
            handles.seal = (
                _write_seal(key_fd, key, rec["seq"], rec["hash"]),
                _Checkpoint(rec["seq"], rec["hash"]),
            )
        elif record.get("kind") in SYNCED_KINDS:
            self._move_marks(handles, key, cp_fd, key_fd, rec, fd, state)
        return rec

    @staticmethod
    def _cached(
        handles: _Handles, which: str, fd: int, offset: int, key: bytes
    ) -> _Checkpoint | None:
        """The checkpoint or the seal, parsed again only when its bytes changed."""
        try:
            raw = os.pread(fd, 4096 if which == "checkpoint" else _CHECKPOINT_SIZE, offset)
        except OSError as exc:
            raise _oserror(f"cannot read the audit {which}", exc) from None
        known = getattr(handles, which)
        if known is not None and known[0] == raw:
            return known[1]  # the bytes we last saw: same MAC, same answer
        parsed = _parse_checkpoint(raw, key) if which == "checkpoint" else _parse_seal(raw, key)
        setattr(handles, which, (raw, parsed))
        return parsed

    def _move_marks(self, handles, key, cp_fd, key_fd, rec, fd, state) -> None:
        handles.pending = None
        try:
            block = _overwrite_checkpoint(cp_fd, key, rec["seq"], rec["hash"])
            handles.seal = (
                _write_seal(key_fd, key, rec["seq"], rec["hash"]),
                _Checkpoint(rec["seq"], rec["hash"]),
            )
        except AuditError:
            handles.tail = None
            self._undo(fd, state[5])
            raise
        handles.checkpoint = (block, _Checkpoint(rec["seq"], rec["hash"]))

    @staticmethod
    def _build(key: bytes, record: dict, state: list) -> tuple[dict, bytes]:
        """``record`` chained to ``state`` (seq, hash, size, torn, skipped), and its bytes."""
        seq, prev, _size, torn, skipped = state[:5]
        rec = {k: v for k, v in record.items() if k not in ("seq", "prev", "hash", "recovered")}
        rec["seq"] = seq + 1
        rec["prev"] = prev
        if skipped:
            rec["recovered"] = True
        try:
            rec["hash"] = _record_hash(key, rec)
            line = canonical(rec)
        except (TypeError, ValueError):
            raise AuditError("audit unavailable: the record is not serialisable") from None
        return rec, (b"\n" if torn else b"") + line.encode("ascii") + b"\n"

    def _write_one(
        self,
        handles: _Handles,
        fd: int,
        key: bytes,
        record: dict,
        state: list,
        sync: bool,
        built: tuple[dict, bytes] | None = None,
    ) -> dict:
        """Append ``record`` chained to ``state`` (or ``built``, already chained to it)
        and move ``state`` on."""
        size = state[2]
        rec, data = built or self._build(key, record, state)
        try:
            _write_all(fd, data)
            if sync:
                _datasync(fd)  # also syncs any record written before it
        except OSError as exc:
            self._undo(fd, size)
            raise _oserror("cannot write the audit log", exc) from None
        handles.tail = (size + len(data), rec["seq"], rec["hash"], data.lstrip(b"\n"))
        state[:] = [rec["seq"], rec["hash"], size + len(data), False, False, size]
        if not sync:
            # The checkpoint waits for the sync (see the module docstring).
            handles.pending = (rec["seq"], rec["hash"])
        return rec

    def _rotate(self, handles: _Handles, fd: int) -> int:
        """Close the live segment: sync it, rename it to the next segment number, and open
        a new, empty live file. A crash after the rename leaves no live file; the next
        writer starts one, chained to the closed segment."""
        dir_fd = handles.dir_fd
        segments = _segments(dir_fd, self.filename)
        number = segments[-1][0] + 1 if segments else 1
        try:
            _datasync(fd)
            os.rename(
                self.filename,
                segment_name(self.filename, number),
                src_dir_fd=dir_fd,
                dst_dir_fd=dir_fd,
            )
        except OSError as exc:
            raise _oserror("cannot rotate the audit log", exc) from None
        _fsync_dir(dir_fd)
        handles.forget(self.filename)
        handles.tail = None
        return self._log_fd(handles)

    def _prune(self, handles, key, fd, cp_fd, key_fd, state, segments) -> bool:
        """Drop the oldest closed segments beyond ``keep``. Each drop is first recorded
        (a synced ``pruned`` record naming the segment and its last record), then the file
        is removed, so a crash in between leaves a record and the file, never a silent gap."""
        dir_fd = handles.dir_fd
        if segments is None:
            segments = _segments(dir_fd, self.filename)
        pruned = len(segments) > self.keep
        while len(segments) > self.keep:
            _, name = segments.pop(0)
            last_seq, last_hash, _, _ = _segment_anchor(dir_fd, name)
            body = {
                "kind": "pruned",
                "ts": _now(),
                "actor": "ibgw",
                "segment": name,
                "last_seq": last_seq,
                "last_hash": last_hash,
            }
            rec = self._write_one(handles, fd, key, body, state, sync=True)
            if cp_fd is not None:
                self._move_marks(handles, key, cp_fd, key_fd, rec, fd, state)
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _oserror("cannot remove an old audit log segment", exc) from None
            _fsync_dir(dir_fd)
        return pruned

    def _tail_anchor(self, handles: _Handles, fd: int, size: int) -> tuple[int, str, bool, bool]:
        """:meth:`_anchor`, without parsing when the file still ends, byte for byte,
        with the line this sink appended last."""
        known = handles.tail
        if known is not None and known[0] == size:
            end, seq, digest, line = known
            try:
                if os.pread(fd, len(line), end - len(line)) == line:
                    return seq, digest, False, False
            except OSError as exc:
                raise _oserror("cannot read the audit log", exc) from None
        handles.tail = None
        return self._anchor(fd, size)

    @staticmethod
    def _undo(fd: int, size: int) -> None:
        """Best effort: remove a partial or unconfirmed line so no torn line is left."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            pass

    @staticmethod
    def _anchor(fd: int, size: int) -> tuple[int, str, bool, bool]:
        """(seq, hash) of the last complete record, whether unreadable lines follow it,
        and whether the file ends in a torn line."""
        if size == 0:
            return 0, GENESIS, False, False
        try:
            want = 1
            while True:
                lines, torn, at_bof = _tail_lines(fd, size, want)
                skipped = torn
                for raw in reversed(lines):
                    rec = _parse_record(raw)
                    if rec is not None:
                        return rec["seq"], rec["hash"], skipped, torn
                    skipped = True
                if at_bof:
                    return 0, GENESIS, skipped, torn
                want *= 4
        except OSError as exc:
            raise _oserror("cannot read the audit log", exc) from None


# -- verify and tail ----------------------------------------------------------------------


@dataclass
class VerifyReport:
    ok: bool
    records: int
    first_bad_line: int | None = None
    problem: str | None = None
    recovered_lines: list[int] = field(default_factory=list)
    #: The segment (file name) of ``first_bad_line``; the live one is ``audit.jsonl``.
    segment: str | None = field(default=None, compare=False)
    segments: int = field(default=0, compare=False)
    #: Segments dropped by the keep rule that the checked records account for.
    pruned: int = field(default=0, compare=False)
    #: With ``since``: the first segment checked (earlier ones were not).
    checked_from: str | None = field(default=None, compare=False)
    acknowledged: list[str] = field(default_factory=list, compare=False)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "records": self.records,
            "segments": self.segments,
            "segment": self.segment,
            "first_bad_line": self.first_bad_line,
            "problem": self.problem,
            "recovered_lines": list(self.recovered_lines),
            "pruned_segments": self.pruned,
            "checked_from": self.checked_from,
            "acknowledged": list(self.acknowledged),
        }


_PRUNED_MARK = b'"kind":"pruned"'


class _Checker:
    """The chain rules over a stream of segments, oldest first."""

    def __init__(self, key: bytes, checkpoint, seal, pruned: set, partial: bool):
        self.key, self.checkpoint, self.seal = key, checkpoint, seal
        self.pruned, self.partial = pruned, partial
        self.prev: tuple[int, str] | None = None
        self.pending: list[tuple[str, int, str]] = []
        self.recovered: list[int] = []
        self.acknowledged: list[str] = []
        self.count = 0
        self.bad: tuple[str | None, int | None, str] | None = None
        self.last_segment, self.last_lines = LOG_NAME, 0

    def feed(self, segment: str, data: bytes, live: bool) -> bool:
        """Check one segment; ``False`` (and :attr:`bad` set) at the first break."""
        lines = data.split(b"\n")
        torn_tail = lines.pop()  # b"" when the file ends with a newline
        self.last_segment, self.last_lines = segment, len(lines)
        for lineno, raw in enumerate(lines, 1):
            rec = _parse_record(raw)
            if rec is None:
                self.pending.append(
                    (segment, lineno, "unreadable line (not a complete audit record)")
                )
                continue
            problem = _record_problem(rec, raw, self.key)
            if problem is not None:
                return (
                    self._fail(*self.pending[0])
                    if self.pending
                    else self._fail(segment, lineno, problem)
                )
            if self.pending:
                if rec.get("recovered") is not True:
                    return self._fail(*self.pending[0])
                self.recovered.extend(n for _, n, _ in self.pending)
                self.pending = []
            elif rec.get("recovered") is not None:
                return self._fail(
                    segment,
                    lineno,
                    "record marked recovered but no torn line precedes it (a line was removed)",
                )
            if self.prev is None:
                problem = self._first(rec)
                if problem is not None:
                    return self._fail(segment, lineno, problem)
            else:
                prev_seq, prev_hash = self.prev
                if rec["seq"] != prev_seq + 1:
                    if rec["seq"] > prev_seq + 1:
                        what = (
                            "a segment before this one was deleted"
                            if lineno == 1
                            else "record deleted"
                        )
                    else:
                        what = "reordered or inserted"
                    return self._fail(
                        segment,
                        lineno,
                        f"sequence broken: expected seq {prev_seq + 1}, found {rec['seq']} ({what})",
                    )
                if rec.get("prev") != prev_hash:
                    return self._fail(
                        segment, lineno, "chain broken: prev does not match the previous record"
                    )
            for mark, name in ((self.checkpoint, "checkpoint"), (self.seal, "seal")):
                if mark is not None and rec["seq"] == mark.seq and rec["hash"] != mark.hash:
                    return self._fail(segment, lineno, f"record does not match the {name}")
            if rec.get("kind") == "acknowledged":
                self.acknowledged.append(f"seq {rec['seq']}: {rec.get('acknowledged')}")
            self.prev = (rec["seq"], rec["hash"])
            self.count += 1
        if self.pending and (torn_tail or not live):
            return self._fail(*self.pending[0])
        if torn_tail:
            return self._fail(segment, len(lines) + 1, "torn last line (incomplete write)")
        return True

    def _first(self, rec: dict) -> str | None:
        if rec["seq"] == 1 and rec.get("prev") == GENESIS:
            return None
        if self.partial or (rec["seq"] - 1, rec.get("prev")) in self.pruned:
            return None
        return (
            f"records before seq {rec['seq']} are missing and no pruned record names them "
            "(a segment or the start of the log was deleted)"
        )

    def _fail(self, segment, line, problem) -> bool:
        self.bad = (segment, line, problem)
        return False

    def finish(self) -> None:
        if self.bad is not None:
            return
        if self.pending:
            self._fail(*self.pending[0])
            return
        seq, digest = self.prev or (0, GENESIS)
        if self.partial and self.prev is None:
            return
        problem = _tail_problem(seq, digest, self.checkpoint, self.seal)
        if problem is not None:
            line = None if problem[0] == "checkpoint-missing" else self.last_lines + 1
            self._fail(self.last_segment, line, problem[1])

    def report(self, **extra) -> VerifyReport:
        if self.bad is not None:
            segment, line, problem = self.bad
            return VerifyReport(
                False,
                self.count,
                line,
                problem,
                self.recovered,
                segment=segment,
                acknowledged=self.acknowledged,
                **extra,
            )
        return VerifyReport(
            True, self.count, None, None, self.recovered, acknowledged=self.acknowledged, **extra
        )


def _pruned_marks(key: bytes, data: bytes) -> set:
    """``(last_seq, last_hash)`` named by the valid ``pruned`` records in ``data``."""
    found = set()
    if _PRUNED_MARK not in data:
        return found
    for raw in data.split(b"\n"):
        if _PRUNED_MARK in raw:
            rec = _parse_record(raw)
            if (
                rec is not None
                and rec.get("kind") == "pruned"
                and _record_problem(rec, raw, key) is None
            ):
                found.add((rec.get("last_seq"), rec.get("last_hash")))
    return found


def _snapshot(dir_fd: int, filename: str) -> list[tuple[str, int, int]]:
    """``(name, fd, size)`` of every segment, oldest first, the live one last; taken under
    the lock so the sizes and the checkpoint agree."""
    opened = []
    try:
        for _, name in _segments(dir_fd, filename):
            try:
                fd = _open_file(dir_fd, name, os.O_RDONLY, "audit log segment")
            except FileNotFoundError:
                continue
            opened.append((name, fd, os.fstat(fd).st_size))
        try:
            fd = _open_file(dir_fd, filename, os.O_RDONLY, "audit log")
            opened.append((filename, fd, os.fstat(fd).st_size))
        except FileNotFoundError:
            pass
    except BaseException:
        for _, fd, _ in opened:
            os.close(fd)
        raise
    return opened


def _last_ts(fd: int, size: int) -> str | None:
    """The ``ts`` of the last complete record of a segment."""
    for raw in reversed(_tail_lines(fd, size, 1)[0]):
        rec = _parse_record(raw)
        if rec is not None:
            return rec.get("ts") if isinstance(rec.get("ts"), str) else None
    return None


def verify(directory, filename: str = LOG_NAME, since: str | None = None) -> VerifyReport:
    """Recompute every record's HMAC and the chain through every kept segment, and
    compare the end with the checkpoint and the seal. Detects edited, deleted, reordered
    and inserted records, deleted segments, torn lines, a truncated or rolled-back tail.

    ``since`` (an ISO time, see :func:`parse_since`) starts at the first segment holding
    a record at or after it; what comes before is not checked (``checked_from`` says so).
    """
    dir_fd = _open_dir(directory, create=False)
    if dir_fd is None:
        return VerifyReport(ok=True, records=0)
    files: list[tuple[str, int, int]] = []
    try:
        with _Lock(dir_fd, shared=True):
            files = _snapshot(dir_fd, filename)
            try:
                key = _load_key(dir_fd, create=False, locked=True)
            except AuditError:
                return VerifyReport(False, 0, None, "the audit key is corrupt")
            if key is None:
                if any(size for _, _, size in files):
                    return VerifyReport(False, 0, None, "the audit key is missing")
                return VerifyReport(ok=True, records=0)
            cp_problem = seal_problem = None
            try:
                checkpoint = _read_checkpoint(dir_fd, key)
            except AuditError:
                checkpoint, cp_problem = None, "the audit checkpoint is corrupt or was edited"
            try:
                kfd = _open_file(dir_fd, KEY_NAME, os.O_RDONLY, "audit key")
                try:
                    seal = _read_seal(kfd, key)
                finally:
                    os.close(kfd)
            except AuditError:
                seal, seal_problem = None, "the audit seal in the key file is corrupt or was edited"
        return _verify_files(files, key, checkpoint, seal, since, cp_problem or seal_problem)
    finally:
        for _, fd, _ in files:
            os.close(fd)
        os.close(dir_fd)


def _verify_files(files, key, checkpoint, seal, since, mark_problem) -> VerifyReport:
    try:
        start = 0
        if since is not None:
            start = len(files) - 1 if files else 0
            for i, (_, fd, size) in enumerate(files):
                ts = _last_ts(fd, size)
                if ts is not None and ts >= since:
                    start = i
                    break
        chosen = files[start:]
        pruned: set = set()
        if chosen and since is None:
            head = _pread_all(chosen[0][1], min(chosen[0][2], 1 << 16))
            first = _parse_record(head.split(b"\n", 1)[0])
            if first is not None and first["seq"] != 1:
                for _, fd, size in chosen:
                    pruned |= _pruned_marks(key, _pread_all(fd, size))
        checker = _Checker(key, checkpoint, seal, pruned, partial=since is not None)
        for name, fd, size in chosen:
            if not checker.feed(name, _pread_all(fd, size), live=name == files[-1][0]):
                break
        checker.finish()
    except OSError as exc:
        raise _oserror("cannot read the audit log", exc) from None
    extra = {
        "segments": len(chosen),
        "pruned": len(pruned),
        "checked_from": chosen[0][0] if since is not None and chosen else None,
    }
    report = checker.report(**extra)
    if report.ok and mark_problem:  # the records themselves come first
        return VerifyReport(
            False, report.records, None, mark_problem, report.recovered_lines, **extra
        )
    return report


def _verify_bytes(
    data: bytes, key: bytes, checkpoint: _Checkpoint | None, seal: _Checkpoint | None = None
) -> VerifyReport:
    """The checks of :func:`verify` on one live segment's bytes (no file I/O)."""
    checker = _Checker(key, checkpoint, seal, _pruned_marks(key, data), partial=False)
    checker.feed(LOG_NAME, data, live=True)
    checker.finish()
    return checker.report(segments=1)


def _record_problem(rec: dict, raw: bytes, key: bytes) -> str | None:
    try:
        if canonical(rec).encode("ascii") != raw:
            return "record is not in canonical form (edited)"
    except (TypeError, ValueError):
        return "record is not in canonical form (edited)"
    if not hmac.compare_digest(rec["hash"], _record_hash(key, rec)):
        return "record hash does not match its content (edited)"
    return None


# -- reading records back -----------------------------------------------------------------


_RELATIVE = re.compile(r"^([0-9]{1,9})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> str:
    """``--since`` as the ISO form records use: ``30m``, ``2h``, ``7d``, ``1w`` ago, an ISO
    date or date-time (UTC when no offset is given). Raises ``ValueError``."""
    from datetime import timedelta

    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        when = (now or datetime.now(UTC)) - timedelta(seconds=int(m[1]) * _UNITS[m[2]])
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "must be a time like 2026-01-31, 2026-01-31T09:00, or an age like 30m, 2h, 7d"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _read_locked(directory, filename: str, fn):
    dir_fd = _open_dir(directory, create=False)
    if dir_fd is None:
        return fn([])
    files: list = []
    try:
        with _Lock(dir_fd, shared=True):
            files = _snapshot(dir_fd, filename)
        return fn(files)
    except OSError as exc:
        raise _oserror("cannot read the audit log", exc) from None
    finally:
        for _, fd, _ in files:
            os.close(fd)
        os.close(dir_fd)


def tail(directory, n: int = 10, filename: str = LOG_NAME) -> list[dict]:
    """The last ``n`` readable records over all kept segments, oldest first."""
    if n <= 0:
        return []

    def pick(files) -> list[dict]:
        out: list[dict] = []
        for _, fd, size in reversed(files):
            lines = _tail_lines(fd, size, n - len(out))[0]
            got = [r for r in (_parse_record(raw) for raw in lines) if r is not None]
            out = got + out
            if len(out) >= n:
                break
        return out[-n:]

    return _read_locked(directory, filename, pick)


def records(
    directory, since: str | None = None, command: str | None = None, filename: str = LOG_NAME
) -> list[dict]:
    """Every readable record of the kept segments (from ``since`` on, of ``command``
    only), oldest first."""

    def read(files) -> list[dict]:
        out: list[dict] = []
        for _, fd, size in files:
            if since is not None:
                ts = _last_ts(fd, size)
                if ts is not None and ts < since:
                    continue  # the segment's last record is older: all of it is
            for raw in _pread_all(fd, size).split(b"\n"):
                rec = _parse_record(raw)
                if (
                    rec is not None
                    and (since is None or str(rec.get("ts", "")) >= since)
                    and (command is None or rec.get("command") == command)
                ):
                    out.append(rec)
        return out

    return _read_locked(directory, filename, read)


def follow(directory, interval: float = 0.2, filename: str = LOG_NAME, stop=None):
    """Yield the records appended to the live segment from now on, across rotations,
    until ``stop()`` is true (never, by default)."""
    dir_fd = fd = ident = None
    pos, buf, from_end = 0, b"", True
    try:
        while stop is None or not stop():
            if dir_fd is None:
                dir_fd = _open_dir(directory, create=False)
                from_end = from_end and dir_fd is not None
            if dir_fd is not None and fd is None:
                try:
                    fd = _open_file(dir_fd, filename, os.O_RDONLY, "audit log")
                    st = os.fstat(fd)
                    ident, pos, buf = _identity(st), st.st_size if from_end else 0, b""
                except FileNotFoundError:
                    fd = None
                from_end = False  # a file that appears later is read from its start
            if fd is not None:
                size = os.fstat(fd).st_size
                if size > pos:
                    buf += _pread_all(fd, size, pos)
                    pos = size
                    *complete, buf = buf.split(b"\n")
                    for raw in complete:
                        rec = _parse_record(raw)
                        if rec is not None:
                            yield rec
                try:
                    now = os.stat(filename, dir_fd=dir_fd, follow_symlinks=False)
                    rotated = _identity(now) != ident
                except FileNotFoundError:
                    rotated = True
                if rotated and os.fstat(fd).st_size == pos:
                    os.close(fd)
                    fd = None
                    continue
            time.sleep(interval)
    finally:
        if fd is not None:
            os.close(fd)
        if dir_fd is not None:
            os.close(dir_fd)


# -- the auditor --------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(obj, depth: int = 0):
    if depth > 50:
        return "[too deep]"
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in obj]
    return str(obj)


def _small(params: dict) -> bool:
    """True when ``params`` certainly fits the caps: flat scalars and short strings whose
    canonical JSON (at most 12 characters per character, for ``\\ud83d\\ude00``) is
    within ``PARAMS_MAX_BYTES``."""
    total = 0
    for k, v in params.items():
        if isinstance(v, str):
            if len(v) > PARAM_MAX_CHARS:
                return False
            total += len(v)
        elif v is not None and not isinstance(v, bool | int | float):
            return False
        else:
            total += 2  # counted below as 24 characters
        total += len(str(k))
    return total * 12 + 24 * len(params) <= PARAMS_MAX_BYTES


class Auditor:
    """Writes intent, outcome and denied records to every sink."""

    def __init__(self, sinks: list, state_dir: str, actor: str = "cli"):
        self.sinks = list(sinks)
        self.state_dir = state_dir
        self.actor = actor
        self._key: bytes | None = None

    # -- account ids ---------------------------------------------------------
    def _account(self, value) -> str:
        try:
            if self._key is None:
                self._key = _key_for(self.state_dir, create=True)
            assert self._key is not None
            return _hash_account(self._key, value)
        except Exception as exc:
            log.warning("audit: account ids cannot be hashed (%s)", _describe(exc))
            return "acct-unavailable"

    def _scrub_accounts(self, obj, key: str | None = None, depth: int = 0):
        lowered = key.lower() if isinstance(key, str) else None
        if depth > 50:
            return obj
        if isinstance(obj, dict):
            return {k: self._scrub_accounts(v, k, depth + 1) for k, v in obj.items()}
        if isinstance(obj, list):
            if lowered in _ACCOUNT_LIST_KEYS:
                return [self._account(v) if v is not None else v for v in obj]
            return [self._scrub_accounts(v, key, depth + 1) for v in obj]
        if obj is not None and lowered in _ACCOUNT_KEYS and not isinstance(obj, bool):
            return self._account(obj)
        if isinstance(obj, str):
            return _ACCOUNT_RE.sub(lambda m: self._account(m.group(0)), obj)
        return obj

    # -- bounded parameters ------------------------------------------------------
    def _digest(self, value) -> str:
        """A keyed hash of a value left out of a record: it identifies the value to
        someone holding the key (who can recompute it) and reveals nothing else."""
        if self._key is None:
            self._key = _key_for(self.state_dir, create=True)
        assert self._key is not None
        return "hmac-" + _mac(self._key, canonical(value))[:32]

    def _cap(self, value, depth: int = 0):
        if isinstance(value, str) and len(value) > PARAM_MAX_CHARS:
            return {
                "truncated": True,
                "head": value[:PARAM_MAX_CHARS],
                "chars": len(value),
                "hash": self._digest(value),
            }
        if isinstance(value, list):
            head = [self._cap(v, depth + 1) for v in value[:PARAM_MAX_ITEMS]]
            if len(value) <= PARAM_MAX_ITEMS:
                return head
            return {
                "truncated": True,
                "head": head,
                "count": len(value),
                "hash": self._digest(value),
            }
        if isinstance(value, dict):
            items = list(value.items())
            head = {k: self._cap(v, depth + 1) for k, v in items[:PARAM_MAX_ITEMS]}
            if len(items) <= PARAM_MAX_ITEMS:
                return head
            return {
                "truncated": True,
                "head": head,
                "count": len(items),
                "hash": self._digest(value),
            }
        return value

    def _cap_params(self, params: dict) -> dict:
        """Intent parameters bounded (strings to ``PARAM_MAX_CHARS``, lists and mappings
        to ``PARAM_MAX_ITEMS`` entries, the whole to ``PARAMS_MAX_BYTES``), each cut
        value replaced by its head, its size and a keyed hash of the whole value."""
        if len(params) <= PARAM_MAX_ITEMS and _small(params):
            return params  # the common case, decided without serialising
        capped = self._cap(params)
        if len(canonical(capped)) <= PARAMS_MAX_BYTES:
            return capped
        keys = sorted(str(k) for k in params)
        return {
            "truncated": True,
            "keys": [k[:PARAM_MAX_CHARS] for k in keys[:PARAM_MAX_ITEMS]],
            "count": len(keys),
            "hash": self._digest(params),
        }

    # -- records ---------------------------------------------------------------
    def _prepare(self, record: dict) -> dict:
        from . import redact

        fixed = {k: record[k] for k in ("kind", "call_id", "ts", "actor") if k in record}
        plain = _jsonable(record)
        if isinstance(plain.get("params"), dict):
            # Cut first, so huge parameters cost one hash, not a scrub of every value.
            plain["params"] = self._cap_params(plain["params"])
        out = redact.safe_data(self._scrub_accounts(plain))
        out.update(fixed)  # generated by us; never secret, and must stay intact
        return {k: v for k, v in out.items() if v is not None}

    def _write(self, record: dict) -> int:
        written = 0
        self._refusal: AuditUnavailable | None = None
        for sink in self.sinks:
            try:
                sink.write(dict(record))
                written += 1
            except Exception as exc:  # one failing sink must not silence the others
                log.warning("audit sink %s failed: %s", _sink_name(sink), _describe(exc))
                if isinstance(exc, AuditUnavailable) and exc.hint == ACK_HINT:
                    self._refusal = exc
        return written

    def intent(self, command: str, params: dict) -> str:
        """Record the intent to call; raise ``AuditUnavailable`` if no sink stored it."""
        call_id = uuid.uuid4().hex
        record = {
            "kind": "intent",
            "call_id": call_id,
            "ts": _now(),
            "actor": self.actor,
            "command": command,
            "params": dict(params or {}),
        }
        try:
            prepared = self._prepare(record)
        except Exception:
            raise AuditUnavailable("audit unavailable: the record could not be redacted") from None
        if not self.sinks or self._write(prepared) == 0:
            refusal = getattr(self, "_refusal", None)
            if refusal is not None:  # the log's end needs the user: say what and how
                raise AuditUnavailable(refusal.message, hint=refusal.hint)
            raise AuditUnavailable("audit unavailable: no sink could record the call")
        return call_id

    def outcome(
        self,
        call_id: str,
        command: str,
        outcome: str,
        *,
        state=None,
        reason=None,
        rows=None,
        duration_ms=None,
        provenance=None,
    ) -> None:
        """Record how the call ended. Never raises."""
        try:
            record = {
                "kind": "outcome",
                "call_id": call_id,
                "ts": _now(),
                "actor": self.actor,
                "command": command,
                "outcome": outcome if outcome in OUTCOMES else "error",
                "state": state,
                "reason": reason,
                "rows": rows,
                "duration_ms": duration_ms,
                "provenance": provenance,
            }
            self._write(self._prepare(record))
        except Exception as exc:
            log.warning("audit: outcome record not written (%s)", _describe(exc))

    def denied(self, command: str, method: str, path_template: str, reason: str) -> None:
        """Record a request refused by the read-only policy. Never raises."""
        try:
            record = {
                "kind": "denied",
                "call_id": uuid.uuid4().hex,
                "ts": _now(),
                "actor": self.actor,
                "command": command,
                "method": method,
                "path_template": path_template,
                "reason": reason,
            }
            self._write(self._prepare(record))
        except Exception as exc:
            log.warning("audit: denied record not written (%s)", _describe(exc))


def _sink_name(sink) -> str:
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) else type(sink).__name__


def _describe(exc: BaseException) -> str:
    """An exception described without OS paths or foreign text."""
    if isinstance(exc, AuditUnavailable):
        return exc.message
    if isinstance(exc, OSError):
        return f"{type(exc).__name__} {errno.errorcode.get(exc.errno or 0, '')}".strip()
    return type(exc).__name__
