"""Outputs of a load test: ``loadtest.json``, PNG plots (matplotlib) and a summary table (rich)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def write_outputs(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Writes ``loadtest.json`` and the plots of a run (or of a sweep's largest held run).

    Args:
        result: What :func:`loadtest.run.run_load` or :func:`loadtest.run.sweep` returned.
        out_dir: Output folder (created).

    Returns:
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    run = result.get("best_run") or result
    paths = [out_dir / "loadtest.json"]
    paths[0].write_text(json.dumps(_public(result), indent=2))
    paths.append(_latency_cdf(run, out_dir / "latency_cdf.png"))
    paths.append(_lag(run, out_dir / "lag.png"))
    paths.append(_throughput(run, out_dir / "throughput.png"))
    if "trials" in result:
        paths.append(_sweep(result, out_dir / "sweep.png"))
    return paths


def _public(obj: Any) -> Any:
    """The result without raw samples (keys starting with ``_``)."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


def _title(run: dict[str, Any]) -> str:
    return f"{run['sessions']} sessions, {run['seconds']:.0f} s, {run['held_at_real_time']} held at real time"


@contextmanager
def _plot(path: Path, title: str, xlabel: str, ylabel: str) -> Iterator[Any]:
    """Axes of one 6.4x4 in figure, labelled, gridded and saved as ``path`` with its legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    try:
        yield ax
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _latency_cdf(run: dict[str, Any], path: Path) -> Path:
    with _plot(path, _title(run), "latency (ms)", "fraction of lines") as ax:
        for key, label in (("first_text_s", "capture → first text"), ("first_audio_s", "capture → first audio")):
            values = np.sort(np.asarray(run["_samples"][key]) * 1000.0)
            if values.size:
                frac = np.arange(1, values.size + 1) / values.size
                ax.step(values, frac, where="post", label=f"{label} (n={values.size})")
    return path


def _lag(run: dict[str, Any], path: Path) -> Path:
    with _plot(path, _title(run), "time into the run (s)", "capture → tokens/text lag (s)") as ax:
        t = [p["t_s"] for p in run["lag"]]
        ax.plot(t, [p["median_s"] for p in run["lag"]], label="median over streams")
        ax.plot(t, [p["max_s"] for p in run["lag"]], label="worst stream", alpha=0.7)
        ax.axhline(run["lag_limit_s"], color="grey", linestyle="--", linewidth=1, label="real-time limit")
        if run.get("chaos"):
            ax.axvline(run["chaos"]["at_s"], color="red", linewidth=1, label=f"kill {run['chaos']['stage']}")
    return path


def _throughput(run: dict[str, Any], path: Path) -> Path:
    with _plot(path, _title(run), "time into the run (s)", "messages emitted per second") as ax:
        for stage, points in sorted(run["throughput"].items()):
            ax.plot([p["t_s"] for p in points], [p["msgs_per_s"] for p in points], marker=".", label=stage)
        ax.set_yscale("symlog")
    return path


def _sweep(result: dict[str, Any], path: Path) -> Path:
    title = f"sweep: largest load held entirely = {result['max_sessions_held']}"
    with _plot(path, title, "sessions offered", "sessions held") as ax:
        trials = sorted(result["trials"], key=lambda r: r["sessions"])
        n = [r["sessions"] for r in trials]
        ax.plot(n, [r["held_at_real_time"] for r in trials], marker="o", label="sessions held at real time")
        ax.plot(n, n, color="grey", linestyle="--", linewidth=1, label="all held")
    return path


def summary_table(result: dict[str, Any]) -> Any:
    """A rich table of a run's (or a sweep's) headline figures."""
    from rich.table import Table

    table = Table(title="MM-Duplex load test")
    table.add_column("figure")
    table.add_column("value", justify="right")
    if "trials" in result:
        for r in sorted(result["trials"], key=lambda r: r["sessions"]):
            table.add_row(f"{r['sessions']} sessions offered", f"{r['held_at_real_time']} held")
        table.add_row("[bold]largest load held at real time", f"[bold]{result['max_sessions_held']}")
        run = result.get("best_run")
        if run is None:
            return table
    else:
        run = result
    table.add_row("sessions held at real time", f"{run['held_at_real_time']} / {run['sessions']}")
    for key, label in (("capture_to_first_text", "capture → first text"),
                       ("capture_to_first_audio", "capture → first audio"),
                       ("first_word_to_first_audio", "first word → first audio")):
        lat = run["latency_ms"].get(key, {"n": 0})
        table.add_row(f"{label} p50 / p95 / p99 (ms)",
                      f"{lat['p50']} / {lat['p95']} / {lat['p99']}  (n={lat['n']})" if lat["n"] else "no lines")
    speech = run.get("speech") or {"voices": {}}
    for voice, figures in speech["voices"].items():
        table.add_row(f"TTS real-time factor: {voice}",
                      f"{figures['real_time_factor']} ({figures['speech_s']} s spoken)")
    if speech.get("lines"):
        table.add_row("lines: late / voice busy (espeak-ng) / all, phrases per line",
                      f"{speech['late_lines']} / {speech.get('busy_lines', 0)} / {speech['lines']}, "
                      f"{speech['phrases_per_line']}")
    table.add_row("drops per stage", ", ".join(f"{k} {v}" for k, v in sorted(run["drops_per_stage"].items())) or "0")
    busiest = sorted(run["processes"].items(), key=lambda kv: -kv[1]["cpu_mean_pct"])[:4]
    table.add_row("CPU mean % (busiest)", ", ".join(f"{k} {v['cpu_mean_pct']}" for k, v in busiest))
    if run.get("chaos"):
        c = run["chaos"]
        table.add_row(f"chaos: kill {c['stage']} at {c['at_s']:.1f} s",
                      f"{c['streams_recovered']}/{c['streams_moved']} streams recovered, max {c['recovery_s_max']} s, "
                      f"{c['lost_messages']} messages lost")
    return table
