"""The CLI stops cleanly on SIGTERM: a real `mmduplex loadtest` killed while it starts
the embedded system exits non-zero and leaves no nats-server or Ray process behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_SERVERS = ("nats-server", "raylet", "gcs_server")


def _servers() -> set[int]:
    """PIDs of the processes a local NATS + Ray consists of."""
    found = set()
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        text = " ".join([proc.info["name"] or "", *(proc.info["cmdline"] or [])])
        if any(name in text for name in _SERVERS):
            found.add(proc.info["pid"])
    return found


def test_sigterm_while_the_embedded_system_starts_shuts_it_down(tmp_path: Path) -> None:
    before = _servers()
    cli = Path(sys.executable).with_name("mmduplex")
    proc = subprocess.Popen([str(cli), "loadtest", "--sessions", "1", "--seconds", "20", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (_servers() - before) and time.monotonic() < deadline:  # NATS (then Ray) is starting
        time.sleep(0.2)
    assert _servers() - before, "the embedded system did not start"
    time.sleep(3.0)  # mid-way through Ray and Serve start-up
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # 130 (our handler: Ctrl-C's path), or 15 when the signal lands inside ray.init,
    # whose own handler exits with the signal number; both unwind through the cleanup.
    assert proc.returncode in (130, 15), err[-2000:]
    deadline = time.monotonic() + 20
    while (_servers() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not (_servers() - before), f"left running: {_servers() - before}"
