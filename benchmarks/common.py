"""Timing helpers: whole processes with their peak RSS, side by side in one run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"


def neurodata() -> list[str]:
    exe = shutil.which("neurodata", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "neurodata_cli"]


def timed_process(cmd: list[str], **kwargs) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process.

    Written-back first: the last run's output (and the removal of an older one) is otherwise
    flushed while this one runs, on a core it would use.
    """
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return seconds, usage.ru_maxrss * 1024


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"
