"""Timing helpers: whole processes with their peak RSS, side by side in one run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"


def neurodata() -> list[str]:
    exe = shutil.which("neurodata", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "neurodata_cli"]


# Runs one command from a small process and reports its wall time and peak RSS. A child's peak
# RSS on Linux starts at its parent's (fork shares the pages, and exec keeps the high-water
# mark), so a command started straight from this process would inherit whatever the benchmark
# itself holds.
_LAUNCHER = """
import os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def timed_process(cmd: list[str], **kwargs) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process.

    Written-back first: the last run's output (and the removal of an older one) is otherwise
    flushed while this one runs, on a core it would use.
    """
    import tempfile

    os.sync()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *cmd],
                       stdout=subprocess.DEVNULL, check=False, **kwargs)
        seconds, rss, code = report.read_text().split()
    if int(code) != 0:
        raise SystemExit(f"benchmark command failed ({code}): {' '.join(cmd)}")
    return float(seconds), int(rss) * 1024


def warm(folder: Path, pattern: str) -> None:
    """Read every input before a timed run. This machine's memory manager (DAMON) evicts idle
    page cache, so otherwise some inputs would come from disk in one run and from memory in the
    next; baselines and ours are warmed alike."""
    for path in sorted(folder.rglob(pattern)):
        if path.is_file():
            path.read_bytes()


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"
