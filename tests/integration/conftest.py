"""The embedded system (real nats-server + real local Ray + the Serve app), once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.embedded import EmbeddedSystem


@pytest.fixture(scope="package")
def system() -> Iterator[EmbeddedSystem]:
    """NATS + Ray + the MM-Duplex app with room for 6 sessions, stopped after the tests."""
    with EmbeddedSystem(app_overrides={"max_sessions": 6, "idle_timeout_s": 30.0}) as running:
        yield running
