"""Unit tests for models.speech.phrases: when a line's words are spoken, and how its audio joins.

The policy runs on explicit times; the speaker runs the real espeak-ng engine (fast and
always installed) so that the audio checks are on real speech.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.speech.phrases import LineSpeaker, PhrasePolicy, PhraseSplitter, SpokenPhrase

pytestmark = pytest.mark.timeout(60)

LINE = "a big rabbit walks in from the left, stops under the old tree and looks up at the sky"
STEP_S = 0.2  # the commentator's 5 Hz step
PASS_S = 0.01  # one forward pass
TOKENS_PER_STEP = 4


def deltas(line: str) -> list[tuple[str, float]]:
    """The line as the commentator sends it: one word per forward pass, 4 per step, then an empty final."""
    words = line.split()
    out = [(w if i == 0 else " " + w, (i // TOKENS_PER_STEP) * STEP_S + (i % TOKENS_PER_STEP) * PASS_S)
           for i, w in enumerate(words)]
    return out + [("", out[-1][1] + PASS_S)]


def split_line(splitter: PhraseSplitter, line: str) -> list[tuple[float, str]]:
    """Feeds the line delta by delta; returns (arrival time, phrase) of each phrase cut."""
    splitter.reset()
    cut = []
    pieces = deltas(line)
    for text, t in pieces[:-1]:
        cut += [(t, p) for p in splitter.feed(text, t)]
    cut += [(pieces[-1][1], p) for p in splitter.finish()]
    return cut


def test_first_phrase_goes_after_two_words_long_before_the_line_ends() -> None:
    cut = split_line(PhraseSplitter(), LINE)
    first_t, first = cut[0]
    assert first == "a big"
    assert first_t == pytest.approx(2 * PASS_S)  # when the 3rd word shows the 2nd is complete
    assert first_t < deltas(LINE)[-1][1] / 10
    assert " ".join(p for _, p in cut) == LINE


def test_phrases_cover_the_line_in_order_for_any_policy() -> None:
    for policy in (PhrasePolicy(), PhrasePolicy(first_words=1, max_words=2, min_words=1, hold_s=0.0),
                   PhrasePolicy(first_words=12, first_wait_s=10.0, hold_s=10.0)):
        cut = split_line(PhraseSplitter(policy), LINE)
        assert " ".join(p for _, p in cut) == LINE, policy
        assert all(len(p.split()) <= policy.max_words for _, p in cut)


def test_text_faster_than_speech_gives_few_long_phrases() -> None:
    cut = split_line(PhraseSplitter(), LINE)
    assert [p for _, p in cut] == ["a big", "rabbit walks in from the left,",
                                   "stops under the old tree and looks up at the sky"]
    assert cut[1][0] == pytest.approx(2 * STEP_S)  # "left," is complete when "stops" arrives
    assert cut[2][0] == deltas(LINE)[-1][1]  # held back until the line ended


def test_slow_text_goes_out_after_the_hold() -> None:
    splitter = PhraseSplitter(PhrasePolicy(hold_s=0.5))
    assert splitter.feed("one two three", 0.0) == ["one two"]
    assert splitter.feed(" four", 0.3) == []  # "three" complete, waited 0.3 s
    assert splitter.feed(" five", 0.6) == ["three four"]  # waited 0.6 s: go
    assert splitter.feed(" six", 0.7) == []  # "five" alone: fewer than min_words
    assert splitter.feed(" seven", 1.5) == ["five six"]
    assert splitter.finish() == ["seven"]  # the end of the line takes even one word


def test_a_word_split_over_tokens_is_never_cut() -> None:
    splitter = PhraseSplitter(PhrasePolicy(first_words=2))
    assert splitter.feed("the", 0.0) == []
    assert splitter.feed(" rab", 0.01) == []
    assert splitter.feed("bit", 0.02) == []
    assert splitter.feed(" hops", 0.03) == ["the rabbit"]
    assert splitter.finish() == ["hops"]


def test_slow_words_start_after_the_first_wait() -> None:
    splitter = PhraseSplitter(PhrasePolicy(first_words=3, first_wait_s=0.15))
    assert splitter.feed("goal", 0.0) == []
    assert splitter.feed(" for", 0.1) == []  # "goal" complete, but only 0.1 s waited
    assert splitter.feed(" red", 0.2) == ["goal for"]
    assert splitter.finish() == ["red"]


def test_clause_end_and_a_whole_line_at_once() -> None:
    assert PhraseSplitter().feed("Goal! Red", 0.0) == ["Goal!"]
    splitter = PhraseSplitter()
    assert splitter.feed("red scores from the edge of the box", 0.0) == ["red scores"]
    assert splitter.finish() == ["from the edge of the box"]
    splitter.reset()
    assert splitter.feed("red scores", 0.0) == []
    assert splitter.finish() == ["red scores"]


@pytest.mark.parametrize("kwargs", [{"first_words": 0}, {"first_words": 13}, {"min_words": 0},
                                    {"hold_s": -1.0}, {"silence_level": 40000}])
def test_invalid_policy_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PhrasePolicy(**kwargs)  # type: ignore[arg-type]


# -- the speaker, with real espeak-ng ----------------------------------------------


@pytest.fixture(scope="module")
def speaker() -> LineSpeaker:
    pytest.importorskip("espeakng_loader")
    from models.speech.espeak import EspeakEngine

    return LineSpeaker(EspeakEngine())


def speak_line(speaker: LineSpeaker, line: str) -> list[tuple[int, SpokenPhrase]]:
    """Speaks the line delta by delta; returns (index of the delta, phrase) of each phrase."""
    speaker.reset()
    out = []
    pieces = deltas(line)
    for i, (text, t) in enumerate(pieces):
        out += [(i, p) for p in speaker.speak(text, now_s=t, final=i == len(pieces) - 1)]
    return out


def test_audio_starts_before_the_line_ends_and_covers_it_contiguously(speaker: LineSpeaker) -> None:
    spoken = speak_line(speaker, LINE)
    rate = speaker.engine.sample_rate_hz
    final_delta = len(deltas(LINE)) - 1
    assert spoken[0][0] < final_delta // 4  # the first phrase left with the line's first words
    assert len(spoken) >= 2
    assert " ".join(p.text for _, p in spoken) == LINE
    # Each phrase starts where the one before ended: one contiguous utterance.
    offset = 0
    for _, phrase in spoken:
        assert phrase.offset_s == pytest.approx(offset / rate)
        assert phrase.pcm.dtype == np.int16 and phrase.pcm.size > 0
        offset += phrase.pcm.size
    # About as long as the whole line spoken at once: no word lost, no long gaps.
    whole = speaker.engine.synthesize(LINE).size
    assert 0.75 * whole < offset < 1.35 * whole


def test_joins_have_short_pauses_and_the_line_keeps_its_tail(speaker: LineSpeaker) -> None:
    spoken = [p for _, p in speak_line(speaker, LINE)]
    rate = speaker.engine.sample_rate_hz
    level = speaker.policy.silence_level
    for phrase in spoken[:-1]:
        loud = np.flatnonzero(np.abs(phrase.pcm.astype(np.int32)) > level)
        assert loud[0] <= round(speaker.policy.head_s * rate)
        assert phrase.pcm.size - 1 - loud[-1] <= round(speaker.policy.pause_s * rate)
    tail = spoken[-1].pcm
    assert np.abs(tail[-10:].astype(np.int32)).max() <= level  # the engine's own ending, untrimmed


def test_speaker_starts_each_line_afresh(speaker: LineSpeaker) -> None:
    first = speak_line(speaker, "goal for red, what a strike")
    second = speak_line(speaker, "corner kick to blue taken short")
    assert first[0][1].offset_s == 0.0 and second[0][1].offset_s == 0.0
    assert " ".join(p.text for _, p in second) == "corner kick to blue taken short"


def test_speech_figures_sum_the_streams_per_voice() -> None:
    from actors.tts import speech_figures

    piper, espeak = "piper:en_US-joe-medium", "espeak-ng:en-us"
    figures = speech_figures([
        {"lines": 2, "busy_lines": 1, "phrases": 5, f"speech_ms.{piper}": 4000, f"synth_ms.{piper}": 600},
        {"lines": 2, "late_lines": 1, "phrases": 3, f"speech_ms.{piper}": 1000, f"synth_ms.{piper}": 150,
         f"speech_ms.{espeak}": 2000, f"synth_ms.{espeak}": 10, "received": 9},
        {},  # a stream whose TTS never reported
    ])
    assert figures == {
        "lines": 4, "late_lines": 1, "busy_lines": 1, "phrases": 8, "phrases_per_line": 2.0,
        "voices": {espeak: {"speech_s": 2.0, "synth_s": 0.01, "real_time_factor": 0.005},
                   piper: {"speech_s": 5.0, "synth_s": 0.75, "real_time_factor": 0.15}},
    }
    assert speech_figures([])["phrases_per_line"] is None


def test_lines_that_waited_in_the_queue_are_spoken_by_espeak() -> None:
    from actors.stage import StageOptions
    from actors.tts import TtsStage
    from streams import messages as m

    stage = TtsStage(StageOptions(nats_url="nats://127.0.0.1:1"))  # never started: no connection
    state = stage.new_state("cam1")
    delta = m.TextDelta(stream="cam1", seq=7, pts_s=3.0, capture_ts=m.now(), utterance=0, text="goal")

    assert stage.start_line(state, delta, waited_s=0.0) == ""
    assert state.speaker is state.voice and state.utterance == 0 and state.pts_s == 3.0
    why = stage.start_line(state, delta, waited_s=stage.late_s + 0.1)
    if state.fallback is None:  # the stage's own voice is espeak-ng (Piper not fetched)
        assert state.speaker is state.voice and why == ""
    else:
        assert state.speaker is state.fallback and state.speaker.engine.name.startswith("espeak-ng")
        assert why == "late"
    assert stage.start_line(state, delta, waited_s=0.0) == ""
    assert state.speaker is state.voice
    # The voice spent more than its CPU bound over the window: on-time lines go to espeak-ng too.
    stage.voice_load.add(stage.voice_cores * stage.voice_window_s + 0.5, time.monotonic())
    why = stage.start_line(state, delta, waited_s=0.0)
    assert (why, state.speaker) == (("", state.voice) if state.fallback is None else ("busy", state.fallback))


def test_voice_load_is_synthesis_seconds_per_second_over_its_window() -> None:
    from actors.tts import VoiceLoad

    load = VoiceLoad(window_s=10.0)
    assert load.cores(100.0) == 0.0
    load.add(0.5, now_s=91.0)
    load.add(1.5, now_s=99.0)
    assert load.cores(100.0) == pytest.approx(0.2)
    assert load.cores(105.0) == pytest.approx(0.15)  # the first is out of the window
    assert load.cores(200.0) == 0.0
    with pytest.raises(ValueError, match="window_s"):
        VoiceLoad(window_s=0.0)


def test_queue_wait_of_a_delta() -> None:
    import time

    from actors.tts import TtsState
    from models.speech.espeak import EspeakEngine
    from streams import messages as m

    speaker = LineSpeaker(EspeakEngine())
    state = TtsState(voice=speaker, fallback=None, speaker=speaker)
    now = time.monotonic()
    state.arrivals.extend([(1, now - 5.0), (2, now - 0.5), (4, now - 0.2)])

    def delta(seq: int) -> m.TextDelta:
        return m.TextDelta(stream="cam1", seq=seq, pts_s=0.0, capture_ts=0.0, utterance=0, text="x")

    assert 0.5 <= state.waited_s(delta(2)) < 1.0  # 1 was dropped from the queue: forgotten
    assert state.waited_s(delta(3)) == 0.0  # unknown arrival
    assert 0.2 <= state.waited_s(delta(4)) < 0.7
    assert not state.arrivals
