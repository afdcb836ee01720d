"""A scaled embedded system: two replicas of the decoder and the commentator, small capacities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.embedded import EmbeddedSystem
from models.data.procedural import ClipSpec, write_clip

#: Streams one stage replica holds here: with one flow, tokenizer and tts replica, the
#: system holds this many sessions.
CAPACITY = 3


@pytest.fixture(scope="package")
def scaled() -> Iterator[EmbeddedSystem]:
    """NATS + Ray + the app with 2 decoder and 2 commentator replicas of capacity 3."""
    overrides = {"max_sessions": 8, "streams_per_replica": CAPACITY, "idle_timeout_s": 30.0,
                 "replicas": {"decoder": 2, "commentator": 2}, "num_cpus_per_replica": 0.1}
    with EmbeddedSystem(app_overrides=overrides) as running:
        yield running


@pytest.fixture(scope="package")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s procedural match clip (320x240, 25 fps H.264)."""
    return write_clip(ClipSpec(kind="match", seed=77, duration_s=20.0), tmp_path_factory.mktemp("c") / "match.mp4")
