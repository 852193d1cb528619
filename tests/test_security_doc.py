"""docs/security.md publishes figures computed from the tests' own data; it must not
fall behind them (regenerate with: python scripts/security_figures.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_security_figures_are_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "security_figures.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
