#!/usr/bin/env python3
"""Convert the CenterNet-MobileNetV3 COCO detector of ``@vladmandic/human`` to ONNX, once.

The npm package ``@vladmandic/human@3.3.6`` (MIT) ships ``models/centernet.json`` +
``centernet.bin``: a TFJS graph model (float16 weights) of MobileNetV3-large-0.75 +
CenterNet trained on MS COCO by 610265158/mobilenetv3_centernet (see
``models/weights/SOURCE.md``). This script reproduces ``models/weights/centernet_mobilenetv3.onnx``:

1. ``npm pack @vladmandic/human@3.3.6`` into a temporary folder (or take ``--tarball``) and
   check the tarball's sha256 against the pinned one;
2. extract the graph, its weights and the COCO labels (``src/object/labels.ts``), and check
   that the labels are ``models.vision.detector.COCO_CLASSES`` in order;
3. add the node attributes that TFJS strips and TensorFlow 2.15 requires to import the graph:
   ``TArgs`` on ``_FusedConv2D`` (one dtype per fused argument) and ``index_type`` on
   ``TopKV2`` (int32, which its consumers expect);
4. convert with tf2onnx 1.16.1 + tensorflow-cpu 2.15.1, installed in a throwaway venv outside
   the repository (``--venv``, default ``/tmp/mmd-detector-venv``, ~1.3 GB; reused when present);
5. write the ONNX file and print its sha256.

Only the standard library is needed to run it (``python3.11 scripts/convert_detector.py``);
python 3.11 is required for the venv because tensorflow-cpu 2.15 has no wheel for 3.12+.
It runs without questions and prints every step. Converting takes ~1 min after the venv is
installed (~2 min).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "@vladmandic/human@3.3.6"
TARBALL_SHA256 = "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7"
MEMBERS = ("package/models/centernet.json", "package/models/centernet.bin", "package/src/object/labels.ts",
           "package/LICENSE")
CONVERTER = ("tensorflow-cpu==2.15.1", "tf2onnx==1.16.1", "onnx==1.17.0", "protobuf==3.20.3", "numpy==1.26.4")
OPSET = 15
DEFAULT_OUT = REPO / "models" / "weights" / "centernet_mobilenetv3.onnx"


def say(msg: str) -> None:
    print(f"[convert_detector] {msg}", flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_tarball(work: Path, tarball: Path | None) -> Path:
    """The npm tarball, packed into ``work`` unless given; its sha256 must be the pinned one."""
    if tarball is None:
        say(f"npm pack {PACKAGE}")
        done = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=work, check=True, capture_output=True,
                              text=True)
        tarball = work / done.stdout.strip().splitlines()[-1]
    digest = sha256(tarball)
    say(f"{tarball.name}: sha256 {digest}")
    if digest != TARBALL_SHA256:
        raise SystemExit(f"unexpected sha256 of {tarball} (expected {TARBALL_SHA256})")
    return tarball


def extract(tarball: Path, work: Path) -> Path:
    """Extract the detector's files; returns the extracted ``package`` folder."""
    with tarfile.open(tarball) as tar:
        for name in MEMBERS:
            tar.extract(tar.getmember(name), work, filter="data")
    say(f"extracted {', '.join(MEMBERS)}")
    return work / "package"


def check_labels(package: Path) -> None:
    """Fail unless human's labels are the wrapper's ``COCO_CLASSES``, in the same order."""
    labels = re.findall(r"label: '([^']+)'", (package / "src/object/labels.ts").read_text())
    module = ast.parse((REPO / "models/vision/detector.py").read_text())
    ours = next(ast.literal_eval(node.value) for node in ast.walk(module)
                if isinstance(node, ast.AnnAssign) and node.value is not None
                and getattr(node.target, "id", "") == "COCO_CLASSES")
    if tuple(labels) != tuple(ours):
        raise SystemExit(f"labels.ts ({len(labels)} labels) differs from models/vision/detector.py COCO_CLASSES")
    say(f"labels.ts: {len(labels)} COCO classes, same as models.vision.detector.COCO_CLASSES")


def patch_graph(package: Path) -> Path:
    """Add the attributes TensorFlow needs to import the TFJS graph; returns the patched json."""
    graph = json.loads((package / "models/centernet.json").read_text())
    fused = topk = 0
    for node in graph["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] == "_FusedConv2D" and "TArgs" not in attr:
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * int(attr["num_args"]["i"])}}
            fused += 1
        elif node["op"] == "TopKV2" and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
            topk += 1
    out = package / "models/centernet_patched.json"
    out.write_text(json.dumps(graph))
    say(f"patched graph: TArgs on {fused} _FusedConv2D nodes, index_type on {topk} TopKV2 node(s)")
    return out


def converter_python(venv: Path) -> Path:
    """Python of the throwaway converter venv, created and filled if needed."""
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating venv {venv} with {sys.executable}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    say(f"pip install {' '.join(CONVERTER)} (into {venv})")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *CONVERTER],
                   check=True)
    return python


def convert(python: Path, graph: Path, out: Path) -> None:
    say(f"tf2onnx.convert --tfjs {graph.name} --opset {OPSET}")
    tmp = out.with_suffix(".tmp")
    # Run next to the graph: tf2onnx writes the path it was given into the model's doc string.
    # The bytes still differ from run to run (its optimiser keeps a different one of each set of
    # duplicate constants, so names differ); the outputs are bit-identical (SOURCE.md).
    done = subprocess.run([str(python), "-m", "tf2onnx.convert", "--tfjs", graph.name, "--opset", str(OPSET),
                           "--output", str(tmp.resolve())], cwd=graph.parent, capture_output=True, text=True)
    for line in done.stderr.splitlines():
        message = line.split(" - ", 2)[-1].strip()
        if message and (" - INFO - " in line or " - ERROR - " in line):
            say("  " + message)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"tf2onnx failed with exit code {done.returncode}")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="use this npm tarball instead of running npm pack")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mmd-detector-venv"),
                        help="throwaway venv for tensorflow + tf2onnx (outside the repository)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ONNX file to write")
    args = parser.parse_args()
    if sys.version_info[:2] != (3, 11):
        raise SystemExit("run with python3.11: tensorflow-cpu 2.15 has wheels for 3.9-3.11 only")
    if REPO in args.venv.resolve().parents:
        raise SystemExit("--venv must lie outside the repository")
    work = Path(tempfile.mkdtemp(prefix="mmd-detector-"))
    try:
        tarball = fetch_tarball(work, args.tarball.resolve() if args.tarball else None)
        package = extract(tarball, work)
        check_labels(package)
        graph = patch_graph(package)
        python = converter_python(args.venv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        convert(python, graph, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {sha256(args.out)}")


if __name__ == "__main__":
    main()
