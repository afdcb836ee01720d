"""Ray Serve deployments of the stages and the session controller.

Each deployment wraps one plain stage class (``actors/<stage>.py``): its async
``__init__`` connects to NATS and subscribes (bounded by a timeout), ``check_health``
raises when the NATS connection is gone, and the async ``__del__`` that Serve calls on
shutdown drains the connection. The deployments talk to each other only over NATS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ray import serve

from actors.commentator import CommentatorStage
from actors.controller import ControllerOptions, SessionController
from actors.decoder import DecoderStage
from actors.flow import FlowStage
from actors.stage import StageOptions
from actors.tokenizer import TokenizerStage
from actors.tts import TtsStage

log = logging.getLogger(__name__)

#: Seconds a replica may take to connect and load its model.
INIT_TIMEOUT_S = 60.0


class _Replica:
    """Shared body of every deployment: start, health check and drain of one component."""

    component_cls: type = object

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__; Python's data model has none
        self, options: Any, stages: list[Any] | None = None, **kwargs: Any
    ) -> None:
        # ``stages``: handles of the stage deployments bound to the ingress (the
        # controller) so that ``serve run`` deploys them with it.
        self.stages = stages or []
        # Array and model work runs one thread per replica: replicas share the cores.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        self.component = self.component_cls(options, **kwargs)
        if hasattr(self.component, "replica_tag"):
            self.component.replica_tag = serve.get_replica_context().replica_id.unique_id
        await asyncio.wait_for(self.component.start(), timeout=INIT_TIMEOUT_S)

    def check_health(self) -> None:
        """Raise (so Serve restarts the replica) when it cannot work."""
        self.component.check_health()

    async def __del__(self) -> None:
        await self.component.stop()


def _deployment(name: str, component_cls: type) -> serve.Deployment:
    cls = type(f"{component_cls.__name__}Deployment", (_Replica,), {"component_cls": component_cls})
    return serve.deployment(
        name=name,
        ray_actor_options={"num_cpus": 0.2},
        health_check_period_s=5.0,
        graceful_shutdown_timeout_s=10.0,
    )(cls)


Decoder = _deployment("decoder", DecoderStage)
Flow = _deployment("flow", FlowStage)
Tokenizer = _deployment("tokenizer", TokenizerStage)
Commentator = _deployment("commentator", CommentatorStage)
Tts = _deployment("tts", TtsStage)
Controller = _deployment("controller", SessionController)

__all__ = ["Commentator", "Controller", "ControllerOptions", "Decoder", "Flow", "StageOptions", "Tokenizer", "Tts"]
