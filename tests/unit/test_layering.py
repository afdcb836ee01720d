"""models/ runs on its own: importing every module of it loads neither nats nor ray."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import models


def test_models_import_neither_nats_nor_ray() -> None:
    names = sorted(info.name for info in pkgutil.walk_packages(models.__path__, "models."))
    assert "models.lm.commentator" in names and "models.vision.bflow" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'nats', 'ray', 'actors'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
