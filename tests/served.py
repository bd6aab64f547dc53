"""``cvl serve`` / ``cvl view`` run as a user runs them: a subprocess, read until it says it
is serving, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def start(args: list[str], env: dict | None = None, timeout: float = 90) -> tuple[subprocess.Popen, list[str]]:
    """``cvl *args`` started; its stdout lines up to "Ctrl-C stops" (printed once a signal
    stops it cleanly). AssertionError, with what it printed, when it does not get there."""
    proc = subprocess.Popen([sys.executable, "-m", "cloudvolume_lite.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C stops"):
            return proc, lines
    proc.kill()
    raise AssertionError(f"cvl {args[0]} did not start: {lines} {proc.stderr.read()}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[str, str]:
    """Send ``sig`` and wait; the command must end cleanly (exit 0, "stopped", no traceback)."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, (proc.returncode, out, err)
    return out, err
