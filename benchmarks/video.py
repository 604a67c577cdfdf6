#!/usr/bin/env python
"""Video delivery speed: ``livemix render SESSION -o final.mp4`` next to the same job
done by one ffmpeg command line, in the same run.

Run from the repository root::

    python benchmarks/video.py                 # a 60 s 1080p clip, 3 rounds
    python benchmarks/video.py --seconds 10    # shorter (smoke test)

Builds (seeded, in a temporary directory removed at the end): a 1920x1080 25 fps
H.264 clip (ffmpeg's testsrc2, x264 "veryfast") with a native AAC ambience
(noise with a slow swell, 48 kHz stereo); a voice-over (speech-like gated
noise, mono WAV) and a music bed (chords, stereo WAV), both as long as the clip.

The two jobs, each timed as a whole process (start-up included), alternating,
--rounds times; the median is reported:

1. livemix: the session ``livemix new`` writes for these files (ambience
   levelled with match_loudness and at -9 dB, voice, music at -6 dB, voice
   ducks music and ambience, true-peak ceiling, [output] video), rendered with
   ``livemix render hybrid.toml -o final.mp4``: decode the clip's audio,
   mix, limit, encode AAC 256 kb/s, copy the video.
2. ffmpeg: ``-filter_complex`` with asplit, two sidechaincompress (voice
   keying ambience and music), amix and alimiter, AAC 256 kb/s, ``-c:v copy``.

Also times livemix's job in this process (``deliver_render`` after a warm-up),
which leaves out the fixed start-up of a Python process that loads numba's
cached kernels (about 1.4 s here: imports, and numba's target registries),
with a breakdown. Prints one JSON object on stdout (progress on stderr);
ratios are livemix time / ffmpeg time (target: <= 1, no slower than ffmpeg),
whole process and in process; "startup_s" is the difference.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RATE = 48000


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(tmp: Path, seconds: float) -> dict:
    rng = np.random.default_rng(7)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    amb = 0.05 * rng.standard_normal((n, 2)) * (0.6 + 0.4 * np.sin(2 * np.pi * t / 7.0))[:, None]
    gates = np.repeat(rng.random(n // 4800 + 1) < 0.55, 4800)[:n]       # 100 ms syllables
    gates = np.convolve(gates.astype(float), np.ones(240) / 240, "same")  # 5 ms ramps
    voice = 0.25 * rng.standard_normal(n) * gates * (t % 8.0 < 5.0)       # talks 5 s in 8
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    music = 0.15 * np.stack([chord, np.roll(chord, 240)], axis=1)
    sf.write(tmp / "amb.wav", amb.astype(np.float32), RATE, "FLOAT")
    sf.write(tmp / "voice.wav", voice.astype(np.float32), RATE, "PCM_24")
    sf.write(tmp / "music.wav", music.astype(np.float32), RATE, "PCM_24")
    clip = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size=1920x1080:rate=25:duration={seconds}",
                    "-i", str(tmp / "amb.wav"), "-map", "0:v", "-map", "1:a",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "192k", "-t", str(seconds), str(clip)],
                   check=True)
    return {"clip": clip, "voice": tmp / "voice.wav", "music": tmp / "music.wav"}


def ffmpeg_cmd(files: dict, out: Path) -> list[str]:
    graph = ("[1:a]asplit=3[vo][k1][k2];"
             "[0:a][k1]sidechaincompress=threshold=0.03:ratio=8:attack=15:release=500[amb];"
             "[2:a][k2]sidechaincompress=threshold=0.03:ratio=8:attack=15:release=500[mus];"
             "[amb][vo][mus]amix=inputs=3:normalize=0,alimiter=limit=0.89[out]")
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-y",
            "-i", str(files["clip"]), "-i", str(files["voice"]), "-i", str(files["music"]),
            "-filter_complex", graph, "-map", "0:v", "-map", "[out]", "-c:v", "copy",
            "-c:a", "aac", "-b:a", "256k", str(out)]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return took


def in_process(session_path: Path, tmp: Path, rounds: int) -> dict:
    """livemix's work without the interpreter's and numba's start-up: ``deliver_render``
    (decode + render + encode + mux, the encoder beside the render) timed in this
    process after a warm-up; then, for the breakdown, the clip's audio decoded alone
    and the render alone to a float WAV."""
    from engine.backends.offline import render
    from engine.session import load_session
    from engine.sources.files import make_source
    from engine.video import deliver_render, probe
    session = load_session(session_path)
    render(session, str(tmp / "warm.wav"), duration_s=0.5, subtype="FLOAT")   # numba cache
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        deliver_render(session, tmp / "inproc.mp4", {"progress": False})
        runs.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in make_source(session.tracks[0], RATE).chunks():
        pass
    t_decode = time.perf_counter() - t0
    duration = probe(session.output.video[0]).duration_s
    t0 = time.perf_counter()
    render(session, str(tmp / "mix.wav"), duration_s=duration, subtype="FLOAT",
           progress=False)
    t_render = time.perf_counter() - t0
    return {"median_s": round(statistics.median(runs), 3),
            "runs_s": [round(x, 3) for x in runs],
            "breakdown": {"decode_clip_audio_s": round(t_decode, 3),
                          "render_to_wav_incl_decode_s": round(t_render, 3)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("ffmpeg is not installed (apt-get install ffmpeg)")
    tmp = Path(tempfile.mkdtemp(prefix="livemix-bench-video-"))
    try:
        say(f"building a {args.seconds:g} s 1080p clip, voice and music ...")
        files = build(tmp, args.seconds)
        session = tmp / "hybrid.toml"
        livemix = [sys.executable, "-m", "engine.cli"]
        subprocess.run(livemix + ["new", "--video", str(files["clip"]), "--voice",
                                  str(files["voice"]), "--music", str(files["music"]),
                                  "-o", str(session)], check=True, cwd=ROOT,
                       capture_output=True)
        # ffmpeg's chain has no denoiser (its arnndn needs a model file): the same job
        # on both sides, so the session's RNNoise stage is left out (its cost is
        # render.py's strip section: about 1 us a sample a channel)
        text = session.read_text()
        session.write_text(text.replace("denoise = true", "denoise = false"))
        ours_cmd = livemix + ["render", str(session), "-o", str(tmp / "ours.mp4"), "--force"]
        theirs_cmd = ffmpeg_cmd(files, tmp / "ffmpeg.mp4")
        timed(ours_cmd)                        # fills numba's cache and the page cache
        ours, theirs = [], []
        for r in range(args.rounds):
            ours.append(timed(ours_cmd))
            theirs.append(timed(theirs_cmd))
            say(f"  round {r + 1}: livemix {ours[-1]:.2f} s, ffmpeg {theirs[-1]:.2f} s")
        say("livemix in this process (start-up excluded) ...")
        inproc = in_process(session, tmp, args.rounds)
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        out = {
            "clip": {"seconds": args.seconds, "video": "1920x1080 25 fps h264",
                     "bytes": files["clip"].stat().st_size},
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
            "livemix": {"median_s": round(m_ours, 3), "runs_s": [round(x, 3) for x in ours],
                        "realtime_x": round(args.seconds / m_ours, 1)},
            "livemix_in_process": inproc,
            "ffmpeg": {"median_s": round(m_theirs, 3),
                       "runs_s": [round(x, 3) for x in theirs],
                       "realtime_x": round(args.seconds / m_theirs, 1)},
            "ratio_livemix_to_ffmpeg": round(m_ours / m_theirs, 3),
            "ratio_in_process_to_ffmpeg": round(inproc["median_s"] / m_theirs, 3),
            "startup_s": round(m_ours - inproc["median_s"], 3),
            "target_met": {"whole_process": m_ours <= m_theirs,
                           "in_process": inproc["median_s"] <= m_theirs},
        }
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
