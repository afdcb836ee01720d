"""Load-test pieces that need no running system: chaos and replica options, the sweep's search."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loadtest.main import parse_replicas
from loadtest.run import Chaos, LoadConfig, sweep


def test_chaos_and_replicas_options() -> None:
    assert Chaos.parse("kill:commentator@20") == Chaos("commentator", 20.0)
    assert Chaos.parse("kill:decoder@7.5s") == Chaos("decoder", 7.5)
    for bad in ("kill:nothing@3", "commentator@3", "kill:flow", "stop:flow@2"):
        with pytest.raises(ValueError, match="kill:STAGE@SECONDS"):
            Chaos.parse(bad)
    assert parse_replicas("commentator=2, decoder=3") == {"commentator": 2, "decoder": 3}
    assert parse_replicas("") == {}
    with pytest.raises(ValueError, match="STAGE=N"):
        parse_replicas("commentator=0")


@pytest.mark.parametrize(("capacity", "max_sessions", "expected_trials"), [
    (24, 64, [1, 2, 4, 8, 16, 24, 25, 26, 28, 32]),  # doubles to 32, then bisects 16..32
    (5, 64, [1, 2, 4, 5, 6, 8]),
    (64, 40, [1, 2, 4, 8, 16, 32, 40]),  # everything held up to the cap
    (0, 8, [1]),
])
def test_sweep_finds_the_largest_load_held(capacity: int, max_sessions: int, expected_trials: list[int]) -> None:
    """The search itself, against a system that holds exactly ``capacity`` sessions."""
    async def run(cfg: LoadConfig) -> dict[str, Any]:
        return {"sessions": cfg.sessions, "all_held": cfg.sessions <= capacity,
                "held_at_real_time": min(cfg.sessions, capacity)}

    def config(n: int) -> LoadConfig:
        return LoadConfig(sessions=n, seconds=1.0, source=None, source_seconds=1.0, nats_url="")  # type: ignore[arg-type]

    result = asyncio.run(sweep(config, max_sessions, run=run, pause_s=0.0))
    assert result["max_sessions_held"] == min(capacity, max_sessions)
    assert [t["sessions"] for t in result["trials"]] == expected_trials
    assert (result["best_run"] or {}).get("sessions", 0) == min(capacity, max_sessions)
