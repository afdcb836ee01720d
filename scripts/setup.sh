#!/usr/bin/env bash
# Set up MM-Duplex on a fresh machine: a .venv at the repo root with the CPU build of
# torch, the project and its dependencies, the sample clips and the model weights. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# torch 2.13.0 first: its CPU wheel lies on disk; any other torch pulls a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0 (CPU)"
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "[setup] installing mmduplex and its dependencies"
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, ray, nats, av, msgspec, espeakng_loader" \
  || { echo "[setup] dependencies failed to install" >&2; exit 1; }
echo "[setup] fetching the sample clips"
.venv/bin/mmduplex fetch-sample
echo "[setup] fetching the image encoder, the voice, the pretrained backbone and the sentence encoder (converted once, ~1 min)"
.venv/bin/mmduplex fetch-models
echo "[setup] done"
