"""The Serve application: one typed builder for ``serve run`` / ``serve deploy`` and the demo.

``deploy/serve.yaml`` points at :func:`build_app` with ``args`` validated by
:class:`AppConfig` (unknown keys are refused). The NATS URL comes from the config or,
if absent, from ``MMD_NATS_URL``. (No ``from __future__ import annotations`` here:
Serve reads the builder's parameter annotation at run time to build the pydantic model.)
"""


from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray.serve import Application, Deployment

from actors.deployments import (
    Commentator,
    Controller,
    ControllerOptions,
    Decoder,
    Flow,
    StageOptions,
    Tokenizer,
    Tts,
)
from actors.placement import STAGES
from streams import settings


class AppConfig(BaseModel):
    """Configuration of the MM-Duplex Serve application."""

    model_config = ConfigDict(extra="forbid")

    nats_url: str = Field(default_factory=settings.nats_url, description="NATS server URL (env MMD_NATS_URL).")
    prefix: str = Field(default_factory=settings.subject_prefix, description="Subject prefix (env MMD_SUBJECT_PREFIX).")
    checkpoint: Path = Field(default_factory=settings.checkpoint_path,
                             description="Commentator checkpoint (env MMD_CHECKPOINT).")
    int8_backbone: bool = Field(False, description="Quantize the commentator's backbone to int8 (CPU inference).")
    max_sessions: int = Field(16, ge=1, description="Sessions the controller admits at once.")
    streams_per_replica: int | None = Field(
        None, ge=1, description="Capacity of one stage replica in streams (default: max_sessions).")
    replicas: dict[str, int] = Field(
        default_factory=dict,
        description="Replicas per stage, e.g. {'commentator': 2} (default 1 each); stages: " + ", ".join(STAGES))
    queue_limit: int = Field(64, ge=1, description="Messages queued per stream and stage before dropping the oldest.")
    idle_timeout_s: float = Field(60.0, gt=0, description="Seconds without input after which a stream is closed.")
    num_cpus_per_replica: float = Field(0.2, gt=0, description="Ray CPUs reserved per replica.")


    @field_validator("replicas")
    @classmethod
    def _known_stages(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; stages are {list(STAGES)}")
        if any(n < 1 for n in value.values()):
            raise ValueError("every stage needs at least 1 replica")
        return value


def build_app(config: AppConfig) -> Application:
    """Bind the five stages and the session controller into one application.

    Args:
        config: Validated application config.

    Returns:
        The Serve application; its ingress is the session controller.
    """
    options = StageOptions(
        nats_url=config.nats_url, prefix=config.prefix, queue_limit=config.queue_limit,
        idle_timeout_s=config.idle_timeout_s, max_streams=config.streams_per_replica or config.max_sessions,
    )
    actor_options = {"num_cpus": config.num_cpus_per_replica}

    def scaled(deployment: Deployment, stage: str) -> Deployment:
        return deployment.options(ray_actor_options=actor_options, num_replicas=config.replicas.get(stage, 1))

    stages = [
        scaled(Decoder, "decoder").bind(options),
        scaled(Flow, "flow").bind(options),
        scaled(Tokenizer, "tokenizer").bind(options, checkpoint=config.checkpoint),
        scaled(Commentator, "commentator").bind(options, checkpoint=config.checkpoint, int8=config.int8_backbone),
        scaled(Tts, "tts").bind(options),
    ]
    controller = ControllerOptions(nats_url=config.nats_url, prefix=config.prefix, max_sessions=config.max_sessions,
                                   idle_timeout_s=config.idle_timeout_s)
    # The controller is the ingress; the stages are bound to it so they deploy with it.
    return Controller.options(ray_actor_options=actor_options).bind(controller, stages=stages)
