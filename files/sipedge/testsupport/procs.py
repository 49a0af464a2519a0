"""Processes a test starts: each one started in a session of its own with its output
in a file, and stopped by its PID; polling with a bound; facts from /proc."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def start(cmd: list[str], log_path, *, env: dict | None = None, cwd=None) -> subprocess.Popen:
    """Start ``cmd`` with stdout and stderr in ``log_path`` and no stdin."""
    with open(log_path, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)


def stop(proc: subprocess.Popen | None, grace: float = 5.0) -> int | None:
    """SIGTERM the process we started (by its PID), SIGKILL it after ``grace`` s;
    returns its exit code (None when there was no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass
    return proc.returncode


def poll(check, timeout: float, interval: float = 0.02):
    """Call ``check()`` until it returns something true or ``timeout`` seconds have
    passed; returns its last result."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() >= end:
            return result
        time.sleep(interval)


def facts(pid: int) -> dict:
    """Open file descriptors, threads and resident memory of a process ({} once gone)."""
    try:
        out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
    except OSError:
        return {}
    return out


def session_pids(sid: int) -> list[int]:
    """PIDs of the processes in session ``sid`` (a process started here and its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:   # field 6: the session id
            pids.append(int(entry))
    return sorted(pids)


def total_facts(pids: list[int]) -> dict:
    """``facts`` summed over some processes, and how many of them are still there."""
    out = {"processes": 0}
    for pid in pids:
        one = facts(pid)
        if one:
            out["processes"] += 1
            for key, value in one.items():
                out[key] = out.get(key, 0) + value
    return out
