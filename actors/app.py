"""The Serve application: one typed builder for ``serve run`` / ``serve deploy`` and the demo.

``deploy/serve.yaml`` points at :func:`build_app` with ``args`` validated by
:class:`AppConfig` (unknown keys are refused). The NATS URL comes from the config or,
if absent, from ``MMD_NATS_URL``. (No ``from __future__ import annotations`` here:
Serve reads the builder's parameter annotation at run time to build the pydantic model.)
"""


from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

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
from streams import settings


class AppConfig(BaseModel):
    """Configuration of the MM-Duplex Serve application."""

    model_config = ConfigDict(extra="forbid")

    nats_url: str = Field(default_factory=settings.nats_url, description="NATS server URL (env MMD_NATS_URL).")
    prefix: str = Field(default_factory=settings.subject_prefix, description="Subject prefix (env MMD_SUBJECT_PREFIX).")
    checkpoint: Path = Field(default_factory=settings.checkpoint_path,
                             description="Commentator checkpoint (env MMD_CHECKPOINT).")
    max_sessions: int = Field(16, ge=1, description="Sessions the controller admits at once.")
    queue_limit: int = Field(64, ge=1, description="Messages queued per stream and stage before dropping the oldest.")
    idle_timeout_s: float = Field(60.0, gt=0, description="Seconds without input after which a stream is closed.")
    num_cpus_per_replica: float = Field(0.2, gt=0, description="Ray CPUs reserved per replica.")


def build_app(config: AppConfig) -> Application:
    """Bind the five stages and the session controller into one application.

    Args:
        config: Validated application config.

    Returns:
        The Serve application; its ingress is the session controller.
    """
    options = StageOptions(
        nats_url=config.nats_url, prefix=config.prefix, queue_limit=config.queue_limit,
        idle_timeout_s=config.idle_timeout_s, max_streams=config.max_sessions,
    )
    actor_options = {"ray_actor_options": {"num_cpus": config.num_cpus_per_replica}}
    stages = [
        Decoder.options(**actor_options).bind(options),
        Flow.options(**actor_options).bind(options),
        Tokenizer.options(**actor_options).bind(options),
        Commentator.options(**actor_options).bind(options, checkpoint=config.checkpoint),
        Tts.options(**actor_options).bind(options),
    ]
    controller = ControllerOptions(nats_url=config.nats_url, prefix=config.prefix, max_sessions=config.max_sessions)
    # The controller is the ingress; the stages are bound to it so they deploy with it.
    return Controller.options(**actor_options).bind(controller, stages=stages)
