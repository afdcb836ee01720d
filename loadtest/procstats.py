"""CPU and memory of the processes of a run, sampled with psutil.

Each process is labelled by what it is: a Ray Serve replica by its deployment
(``ray::ServeReplica:<app>:<deployment>`` is the process title Ray sets), the NATS
server, Ray's own processes, and the load generator itself.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil


def _label(proc: psutil.Process) -> str | None:
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return None
    if proc.pid == os.getpid():
        return "loadtest"
    if "ServeReplica:" in cmd:
        # The title ends with the method running (".__init__", ".check_health") at times.
        return "replica:" + cmd.split("ServeReplica:", 1)[1].split()[0].split(":")[-1].split(".")[0]
    if "nats-server" in cmd:
        return "nats-server"
    if cmd.startswith("ray::") or "/ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd:
        return "ray"
    return None


@dataclass
class ProcessSampler:
    """Samples CPU (percent of one core) and RSS (MiB) of the run's processes.

    Attributes:
        samples: Per label, ``(wall time, cpu %, rss MiB)`` summed over its processes.
    """

    samples: dict[str, list[tuple[float, float, float]]] = field(default_factory=lambda: defaultdict(list))
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def sample(self) -> None:
        """Takes one sample of every labelled process (call about once a second)."""
        now = time.time()
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for proc in psutil.process_iter():
            label = _label(proc)
            if label is None:
                continue
            known = self._procs.setdefault(proc.pid, proc)
            try:
                cpu = known.cpu_percent(None)  # since the previous call (0 on the first)
                rss = known.memory_info().rss / 2**20
            except (psutil.Error, OSError):
                continue
            totals[label][0] += cpu
            totals[label][1] += rss
        for label, (cpu, rss) in totals.items():
            self.samples[label].append((now, cpu, rss))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per label: mean and peak CPU % (of one core) and peak RSS MiB over the samples."""
        out = {}
        for label, rows in sorted(self.samples.items()):
            cpus = [c for _, c, _ in rows[1:]] or [0.0]  # the first sample has no interval
            out[label] = {"cpu_mean_pct": round(sum(cpus) / len(cpus), 1), "cpu_peak_pct": round(max(cpus), 1),
                          "rss_peak_mib": round(max(r for _, _, r in rows), 1)}
        return out
