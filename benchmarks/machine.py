"""What every benchmark records beside its figures: the machine, its load, and where results go."""

from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_description() -> str:
    return f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}"


def load_note() -> str:
    """The 1-minute load average now: other work on a shared machine stretches wall times."""
    return f"load average {os.getloadavg()[0]:.1f} at start"
