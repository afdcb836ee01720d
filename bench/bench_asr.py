"""Speech recognition benchmark: Whisper tiny.en vs base on sentences spoken by the project's voices.

Each sentence (the first is the one ``tests/unit/test_asr.py`` uses) is spoken by Piper
(``en_US-joe-medium``, if fetched) and by espeak-ng, put into an MP4 as that test does
(H.264 video, AAC audio, 1 s of silence before and 2.5 s after), decoded with
:func:`models.data.asr.decode_audio` and transcribed by each fetched model through
:class:`models.data.asr.SpeechRecognizer` (int8, VAD on). For every model and voice it
prints the words wrong (word edit distance to the sentence, after the lines'
lowercase/no-punctuation form), the real-time factor (wall time, and process CPU time
over the threads used, per second of audio), the load time, and how far the first line's
start and the last line's end lie from where the voice is audible (2 % of full scale).
The load average is printed with it: the machine is shared.

Writes ``bench/results/asr.json``.

Usage:
    python bench/bench_asr.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.data.asr import ASR_MODELS, AsrConfig, SpeechRecognizer, asr_model_dir, decode_audio, words_to_lines
from models.lm.vocab import words as vocab_words
from models.speech.engine import SpeechConfig, load_speech
from tests.unit.test_asr import SENTENCE, make_spoken_clip, word_errors

SENTENCES = (
    SENTENCE,
    "Oh what a save by the keeper, he tips it over the bar and the crowd is on its feet.",
    "A cyclist rides past a white van while two people cross the street to the right.",
    "The camera pans slowly to the left and we see the city skyline at night.",
)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 threads")
    args = parser.parse_args()
    models = [m for m in ASR_MODELS if (asr_model_dir(m) / "model.bin").is_file()]
    if not models:
        sys.exit("no Whisper model fetched: run `mmduplex fetch-models` (or models.data.asr.fetch_asr_model)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice in ("piper", "espeak"):
            engine = load_speech(SpeechConfig(voice=voice))
            clips = [make_spoken_clip(Path(tmp) / f"{voice}_{i}.mp4", engine, text) for i, text in enumerate(SENTENCES)]
            engine.close()
            for model in models:
                t0 = time.perf_counter()
                recognizer = SpeechRecognizer(AsrConfig(model=model, threads=args.threads))
                load_s = time.perf_counter() - t0
                wrong, total, wall_s, cpu_s, audio_s, onset, end, test_wrong = 0, 0, 0.0, 0.0, 0.0, [], [], None
                for i, (video, start_s, stop_s) in enumerate(clips):
                    audio = decode_audio(video)
                    t0, c0 = time.perf_counter(), _cpu_s()
                    words = recognizer.transcribe(audio)
                    wall_s += time.perf_counter() - t0
                    cpu_s += _cpu_s() - c0
                    audio_s += len(audio) / 16_000
                    lines = words_to_lines(words)
                    said = [w for line in lines for w in line.text.split()]
                    errors = word_errors(said, SENTENCES[i])
                    wrong += errors
                    total += len(vocab_words(SENTENCES[i]))
                    test_wrong = errors if i == 0 else test_wrong
                    onset.append(lines[0].start_s - start_s if lines else float("nan"))
                    end.append(lines[-1].end_s - stop_s if lines else float("nan"))
                rows.append({
                    "voice": engine.name, "model": model, "words_wrong": wrong, "words": total,
                    "test_sentence_wrong": test_wrong, "rtf_wall": wall_s / audio_s,
                    "rtf_cpu_per_thread": cpu_s / audio_s / args.threads, "load_s": load_s,
                    "onset_error_s": [round(x, 3) for x in onset], "end_error_s": [round(x, 3) for x in end],
                })
                r = rows[-1]
                print(f"{r['voice']:24s} {model:8s} wrong {wrong:2d}/{total} (test sentence {test_wrong})  "
                      f"RTF wall {r['rtf_wall']:.2f} cpu/thread {r['rtf_cpu_per_thread']:.2f}  load {load_s:.2f} s  "
                      f"start err max {max(map(abs, onset)):.2f} s  end err max {max(map(abs, end)):.2f} s",
                      flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    out = Path(__file__).parent / "results" / "asr.json"
    out.write_text(json.dumps({"threads": args.threads, "loadavg": load, "sentences": SENTENCES, "rows": rows},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
