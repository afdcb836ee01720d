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


def test_publish_of_a_non_video_fails_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    done = run("publish", str(junk), "--stream", "s1", "--nats", "nats://127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.startswith("mmduplex publish: error: media: cannot open") and done.stderr.count("\n") == 1


def test_eval_of_a_missing_checkpoint_fails_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = run("eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no .mp4 clips" in done.stderr
