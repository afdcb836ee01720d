"""The embedded system: a local NATS server, a local Ray on loopback and the Serve app.

Used by ``mmduplex demo``, the load test's default target and the integration tests.
Everything listens on 127.0.0.1 only: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set
before Ray starts so that a local Ray binds loopback (see docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from actors.app import AppConfig, build_app
from streams.bus import LocalNatsServer
from streams.errors import ModelError

log = logging.getLogger(__name__)

APP_NAME = "mmduplex"


class EmbeddedSystem:
    """NATS + Ray + the MM-Duplex Serve app on this machine, as a context manager.

    Args:
        app_overrides: Fields of :class:`~actors.app.AppConfig` to override (the NATS
            URL is always the embedded server's).
        num_cpus: CPUs Ray may use.
        object_store_bytes: Ray object store size in bytes.

    Raises:
        TransportError: If the NATS server does not start.
    """

    def __init__(self, *, app_overrides: dict[str, Any] | None = None, num_cpus: int = 2,
                 object_store_bytes: int = 256 * 1024 * 1024) -> None:
        self.nats = LocalNatsServer()
        self.app_overrides = app_overrides or {}
        self.num_cpus = num_cpus
        self.object_store_bytes = object_store_bytes
        self.config: AppConfig | None = None

    @property
    def nats_url(self) -> str:
        """URL of the embedded NATS server."""
        return self.nats.url

    def start(self) -> EmbeddedSystem:
        """Start NATS, Ray and the Serve app; returns when every replica is up."""
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
        from ray import serve

        started = time.monotonic()
        self.config = AppConfig(nats_url=self.nats.url, **self.app_overrides)
        if not self.config.checkpoint.is_file():
            raise ModelError(f"commentator checkpoint not found: {self.config.checkpoint} "
                             "(set MMD_CHECKPOINT or run `mmduplex train`)")
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        self.nats.start()
        on_sigterm = signal.getsignal(signal.SIGTERM)
        ray.init(
            num_cpus=self.num_cpus, include_dashboard=False, object_store_memory=self.object_store_bytes,
            log_to_driver=False, _node_ip_address="127.0.0.1", configure_logging=True, logging_level=logging.WARNING,
        )
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)  # ray.init replaced it with sys.exit(15)
        serve.start(proxy_location="Disabled")
        serve.run(build_app(self.config), name=APP_NAME, route_prefix=None)
        log.info("embedded system up in %.1f s (NATS %s)", time.monotonic() - started, self.nats.url)
        return self

    def handle(self, deployment: str) -> Any:
        """A Serve handle to one deployment of the app (e.g. ``"decoder"``)."""
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=APP_NAME)

    def replica_tags(self, deployment: str) -> list[str]:
        """Serve's replica ids (tags) of a deployment's live replicas, sorted.

        A stage replica's control-plane id is ``<deployment>-<tag>``.
        """
        import ray

        prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == "serve" and a["name"].startswith(prefix)]
        return sorted(n[len(prefix):] for n in names)

    def kill_replica(self, deployment: str, tag: str | None = None) -> str:
        """Kills one replica actor of a deployment, as a crash would (Serve starts a new one).

        Args:
            deployment: Deployment name (``decoder`` ... ``tts``, ``controller``).
            tag: Which replica (see :meth:`replica_tags`); default: the first.

        Returns:
            The tag of the killed replica, once its process is gone.

        Raises:
            ValueError: If the deployment has no such live replica.
        """
        import ray

        tags = self.replica_tags(deployment)
        if not tags or (tag is not None and tag not in tags):
            raise ValueError(f"no live replica {tag or ''} of deployment {deployment!r} (live: {tags})")
        tag = tag or tags[0]
        import psutil
        from ray._private.state import actors  # a DeveloperAPI; the state API needs the dashboard

        actor = ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#{deployment}#{tag}", namespace="serve")
        pid = actors(actor._actor_id.hex()).get("Pid")
        ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + 30.0
        while pid and psutil.pid_exists(pid) and time.monotonic() < deadline:  # the kill is asynchronous
            time.sleep(0.02)
        log.warning("killed replica %s of %s", tag, deployment)
        return tag

    def stop(self) -> None:
        """Shut down Serve, Ray and NATS (each step best effort)."""
        import ray
        from ray import serve

        if ray.is_initialized():
            try:
                serve.shutdown()
            except Exception as exc:
                log.warning("serve shutdown: %s", exc)
            ray.shutdown()
        self.nats.stop()

    def __enter__(self) -> EmbeddedSystem:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
