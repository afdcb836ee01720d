"""Deployment files: the Serve config and the KubeRay manifest validate offline."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from actors.app import AppConfig

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT.parent / "shared" / "k8s-schemas"


def test_serve_config_validates() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema(**yaml.safe_load((ROOT / "deploy" / "serve.yaml").read_text()))
    app = config.applications[0]
    assert app.import_path == "actors.app:build_app"
    AppConfig(**app.args)


def test_app_config_refuses_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        AppConfig(nats_url="nats://x:4222", bogus=1)  # type: ignore[call-arg]  # the unknown key under test


def test_rayservice_manifest_validates_against_kuberay_crd() -> None:
    crd_path = SCHEMAS / "ray.io_rayservices.yaml"
    if not crd_path.exists():
        pytest.skip(f"KubeRay CRD not found at {crd_path}")
    crd = yaml.safe_load(crd_path.read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    manifest = yaml.safe_load((ROOT / "deploy" / "k8s" / "rayservice.yaml").read_text())
    jsonschema.validate(manifest, schema)
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    AppConfig(**serve_config["applications"][0]["args"])


def test_app_builder_annotation_is_the_pydantic_model() -> None:
    """Serve builds the typed config from the live annotation (a string would reach us as a dict)."""
    import inspect

    from actors.app import build_app

    assert inspect.signature(build_app).parameters["config"].annotation is AppConfig
