"""The ``mmduplex`` CLI: every subcommand explains itself; bad input exits 1 with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmduplex.cli import build_parser

SUBCOMMANDS = ["demo", "publish", "listen", "train", "eval", "fetch-sample", "fetch-models"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmduplex.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_demo_on_a_missing_file_fails_with_one_line() -> None:
    done = run("demo", "/nonexistent/clip.mp4")
    assert done.returncode == 1
    assert done.stderr.strip() == "mmduplex demo: error: media: no such file: /nonexistent/clip.mp4"


def test_publish_of_a_non_video_fails_with_one_line(tmp_path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    done = run("publish", str(junk), "--stream", "s1", "--nats", "nats://127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.startswith("mmduplex publish: error: media: cannot open") and done.stderr.count("\n") == 1


def test_eval_of_a_missing_checkpoint_fails_with_one_line(tmp_path) -> None:
    done = run("eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no .mp4 clips" in done.stderr


def test_label_writes_a_transcript_per_video_and_a_summary(tmp_path) -> None:
    import json

    from models.vision.detector import DEFAULT_MODEL
    from tests.unit.test_label import write_person_clip

    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"{DEFAULT_MODEL} absent (python3.11 scripts/convert_detector.py)")
    write_person_clip(tmp_path / "walk.mp4")
    (tmp_path / "junk.avi").write_bytes(b"not a video" * 50)
    done = run("label", str(tmp_path), "--no-ocr")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("[1/2] junk.avi: skipped (media)") and out[1].startswith("[2/2] walk.mp4: ")
    assert out[-1].startswith("labelled 1 of 2 videos: ") and " lines over 6.0 s of video in " in out[-1]
    assert "skipping junk.avi" in done.stderr and not (tmp_path / "junk.json").exists()
    data = json.loads((tmp_path / "walk.json").read_text())
    assert data["source"] == "label" and any("person" in line["text"].split() for line in data["lines"])
    (tmp_path / "junk.avi").unlink()
    again = run("label", str(tmp_path))  # already labelled: nothing to do, no model loaded
    assert again.returncode == 0 and again.stdout.startswith("every video in ")
    assert run("label", str(tmp_path / "none")).returncode != 0
