"""A small JSON disk cache in the state directory (contract definitions, scanner
parameters, transaction reports, probe results). Values are ibgw's own parsed
records, never raw gateway answers, and pass redaction before they are written."""

from __future__ import annotations

import hashlib
import json
import os
import time


class DiskCache:
    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def get(self, key: str, max_age: float | None = None):
        """``(value, age_seconds)`` or ``None`` when missing, unreadable or too old."""
        try:
            with open(self._path(key), encoding="utf-8") as fh:
                entry = json.load(fh)
            age = time.time() - float(entry["t"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if max_age is not None and age > max_age:
            return None
        return entry.get("v"), max(age, 0.0)

    def set(self, key: str, value) -> None:
        from . import redact

        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        path = self._path(key)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"t": time.time(), "v": redact.data(value)}, fh)
        os.replace(tmp, path)


def age_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
