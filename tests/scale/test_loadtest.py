"""The load test against the scaled embedded system, with a chaos kill: every figure is real."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.embedded import EmbeddedSystem
from loadtest.main import prepare_source
from loadtest.report import write_outputs
from loadtest.run import Chaos, LoadConfig, kill_busiest, run_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_loadtest_with_a_killed_commentator_replica(scaled: EmbeddedSystem, tmp_path: Path) -> None:
    source, seconds = prepare_source("synthetic", 25)
    assert 19.0 < seconds < 21.0
    cfg = LoadConfig(sessions=2, seconds=14.0, source=source, source_seconds=seconds, nats_url=scaled.nats_url,
                     chaos=Chaos("commentator", 6.0), lag_limit_s=2.0)

    async def kill(stage: str) -> tuple[str, int]:
        return await kill_busiest(scaled, scaled.nats_url, stage)

    result = await run_load(cfg, kill=kill)
    assert result["sessions"] == 2 and len(result["streams"]) == 2
    assert all(s["steps"] >= 60 and not s["error"] for s in result["streams"])  # both streams went on
    assert result["latency_ms"]["capture_to_first_text"]["n"] >= 2
    chaos = result["chaos"]
    assert chaos["stage"] == "commentator" and chaos["replica"].startswith("commentator-")
    assert chaos["streams_on_replica"] >= 1 and chaos["streams_moved"] == chaos["streams_on_replica"]
    assert chaos["streams_recovered"] == chaos["streams_moved"] and chaos["recovery_s_max"] is not None
    assert chaos["lost_messages"] >= 0
    assert {"replica:commentator", "replica:decoder", "nats-server", "loadtest"} <= set(result["processes"])
    assert set(result["throughput"]) >= {"decoder", "commentator"}
    paths = write_outputs(result, tmp_path)
    assert [p.name for p in paths] == ["loadtest.json", "latency_cdf.png", "lag.png", "throughput.png"]
    assert all(p.stat().st_size > 1000 for p in paths[1:])
