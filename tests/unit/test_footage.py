"""The footage catalogue (split by source, complete metadata) and extraction from npm tarballs, offline."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path, PurePosixPath

import pytest

from mmduplex.footage import FootageItem, catalogue, fetch_footage
from mmduplex.registry import RegistryError, extract_from_npm


def _by_split(items: list[FootageItem]) -> dict[str, set[str]]:
    sources: dict[str, set[str]] = {"train": set(), "heldout": set()}
    for item in items:
        sources[item.split].add(item.source)
    return sources


def test_no_source_lies_in_both_splits() -> None:
    sources = _by_split(catalogue(Path("/footage")))
    assert not sources["train"] & sources["heldout"]
    assert len(sources["heldout"]) >= 3 and len(sources["train"]) >= 3


def test_every_source_comes_from_one_package() -> None:
    packages: dict[str, set[str]] = {}
    for item in catalogue(Path("/footage")):
        packages.setdefault(item.source, set()).add(item.package.spec)
    assert all(len(specs) == 1 for specs in packages.values()), packages


def test_held_out_real_videos_come_from_at_least_three_sources() -> None:
    videos = {item.source for item in catalogue(Path("/footage"))
              if item.split == "heldout" and item.kind == "video" and not item.animated}
    assert len(videos) >= 3, videos


def test_held_out_split_shows_people_vehicles_and_animals() -> None:
    words_said = {word for item in catalogue(Path("/footage")) if item.split == "heldout"
                  for word in re.findall(r"[a-z]+", item.description.lower())}
    for kind, words in {"people": ("people", "man", "men", "footballer"),
                        "vehicles": ("car", "van", "taxi", "cyclist"),
                        "animals": ("squirrel", "dog", "butterfly")}.items():
        assert words_said & set(words), kind


def test_metadata_is_complete_and_paths_follow_split_and_kind(tmp_path: Path) -> None:
    items = catalogue(tmp_path)
    assert items
    for item in items:
        assert item.kind in ("video", "photo") and item.split in ("train", "heldout")
        assert item.package.registry in ("pypi", "npm", "debian") and item.package.spec
        assert item.source and item.licence and item.description and item.member
        assert "(" in item.licence, f"{item.member}: the licence names no file that states it"
        assert item.path == tmp_path / item.split / f"{item.kind}s" / PurePosixPath(item.member).name
        if item.animated:
            assert item.kind == "video" and item.description.startswith("animated film")
    assert len({item.path for item in items}) == len(items)
    assert len({(item.package, item.member) for item in items}) == len(items)


def test_catalogue_lies_in_the_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMD_CACHE_DIR", str(tmp_path))
    assert all(item.path.is_relative_to(tmp_path / "footage") for item in catalogue())


def test_fetch_downloads_nothing_when_all_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMD_CACHE_DIR", str(tmp_path))
    for item in catalogue():
        item.path.parent.mkdir(parents=True, exist_ok=True)
        item.path.write_bytes(b"cached")
    lines: list[str] = []
    items = fetch_footage(progress=lines.append)
    assert items == catalogue()
    assert len(lines) == len({item.package for item in items})
    assert all("already in the cache" in line for line in lines)
    assert all(item.path.read_bytes() == b"cached" for item in items)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_extract_from_npm_keeps_paths_inside_the_package(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "examples").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "mmd-footage-test", "version": "0.0.1"}))
    (package / "examples" / "clip.mp4").write_bytes(b"\x00\x01clip")
    (package / "README.md").write_text("not selected")
    dest = tmp_path / "out"
    files = extract_from_npm(str(package), lambda name: name == "examples/clip.mp4", dest)
    assert files == [dest / "examples" / "clip.mp4"]
    assert files[0].read_bytes() == b"\x00\x01clip"
    assert not (dest / "README.md").exists()
    with pytest.raises(RegistryError, match="none of the expected files"):
        extract_from_npm(str(package), lambda name: name == "missing.mp4", tmp_path / "none")
