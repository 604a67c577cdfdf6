#!/usr/bin/env python
"""``livemix analyze`` speed on a 1-hour file, next to pyloudnorm and ffmpeg ebur128.

Run from the repository root::

    python benchmarks/analyze.py                 # 1 hour, 48 kHz stereo PCM_24
    python benchmarks/analyze.py --minutes 5     # a shorter file (smoke test)

Builds the file (seeded, into a temporary directory removed at the end):
speech-like programme, i.e. pink-ish noise gated into syllables (0.08-0.35 s)
and pauses (up to 1.2 s) over a -72 dBFS room tone, about -15 LUFS, mostly correlated between the
channels, generated and written in 10 s chunks. Then, in the same run, on the
same file (just written, so all three read it from the page cache):

1. ``analyze``: ``engine.loudness.analyze`` in this process, after a warm-up
   on a 1 s file so numba's compile/cache load is not timed; best of --reps.
2. ``ffmpeg``: ``ffmpeg -nostats -i FILE -af ebur128=peak=true -f null -``,
   the whole process, on the whole file.
3. ``pyloudnorm``: reads into memory (float64) and filters the whole signal
   at once, so it runs on the first --pyln-minutes (default 10) of the file
   (soundfile read included in the time) and its realtime factor is taken
   from that cut: ~3 GB of float64 for the hour would not say more.

Prints one JSON object on stdout (progress on stderr): realtime factors
(seconds of audio per second of wall time), ratios to analyze, the
integrated loudness each tool reports, and whether the >= 200x target is met.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.loudness import analyze  # noqa: E402

RATE = 48000
TARGET_X = 200.0


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def speech_envelope(rng, frames: int) -> np.ndarray:
    """0/1 gates with 5 ms ramps: syllables, short gaps, now and then a pause (float32)."""
    env = np.zeros(frames, np.float32)
    pos = int(rng.uniform(0.1, 0.5) * RATE)
    ramp = int(0.005 * RATE)
    shape = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp, dtype=np.float32))
    while pos < frames:
        n = int(rng.uniform(0.08, 0.35) * RATE)
        seg = np.ones(n, np.float32) * rng.uniform(0.5, 1.0)
        seg[:ramp] *= shape
        seg[-ramp:] *= shape[::-1]
        end = min(frames, pos + n)
        env[pos:end] = seg[:end - pos]
        gap = rng.uniform(0.3, 1.2) if rng.random() < 0.12 else rng.uniform(0.03, 0.15)
        pos = end + int(gap * RATE)
    return env


def build(path: Path, seconds: float, seed: int = 5) -> None:
    """Write the benchmark file in 10 s chunks (memory: one chunk)."""
    from scipy.signal import lfilter
    rng = np.random.default_rng(seed)
    frames = int(seconds * RATE)
    env = speech_envelope(rng, frames)
    b, a = [0.05], [1.0, -0.95]                       # one-pole low-pass: pink-ish
    zi = np.zeros((2, 1))
    level = 10 ** (-14.0 / 20) / np.sqrt(0.05 ** 2 / (1 - 0.95 ** 2))
    with sf.SoundFile(str(path), "w", RATE, 2, "PCM_24") as f:
        for a0 in range(0, frames, 10 * RATE):
            n = min(10 * RATE, frames - a0)
            mid = rng.standard_normal(n)
            side = rng.standard_normal(n) * 0.3
            raw = np.stack([mid + side, mid - side])
            y, zi = lfilter(b, a, raw, axis=1, zi=zi)
            x = (y * level * env[a0:a0 + n]).T
            x += rng.standard_normal((n, 2)) * 10 ** (-72 / 20)     # room tone
            f.write(np.clip(x, -1.0, 1.0).astype(np.float32))


def time_analyze(path: Path, reps: int) -> tuple[float, dict]:
    best, result = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = analyze(path)
        best = min(best, time.perf_counter() - t0)
    return best, result


def time_ffmpeg(path: Path) -> tuple[float | None, float | None]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None, None
    t0 = time.perf_counter()
    p = subprocess.run([exe, "-hide_banner", "-nostats", "-i", str(path), "-af",
                        "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        return None, None
    found = re.findall(r"I:\s+(-?[\d.]+) LUFS", p.stderr)
    return dt, float(found[-1]) if found else None


def time_pyloudnorm(path: Path, seconds: float) -> tuple[float | None, float | None]:
    try:
        import pyloudnorm
    except ImportError:
        return None, None
    t0 = time.perf_counter()
    data, rate = sf.read(str(path), frames=int(seconds * RATE))
    value = pyloudnorm.Meter(rate).integrated_loudness(data)
    return time.perf_counter() - t0, float(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--pyln-minutes", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    seconds = args.minutes * 60.0
    tmp = Path(tempfile.mkdtemp(prefix="livemix-bench-analyze-"))
    try:
        path = tmp / "programme.wav"
        say(f"building {args.minutes:g} min 48 kHz stereo PCM_24 ...")
        t0 = time.perf_counter()
        build(path, seconds)
        say(f"  {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1e9:.2f} GB")
        warm = tmp / "warm.wav"
        sf.write(str(warm), np.zeros((RATE, 2), np.float32) + 0.1, RATE, "PCM_24")
        analyze(warm)
        say("analyze ...")
        t_an, res = time_analyze(path, args.reps)
        say("ffmpeg ebur128 ...")
        t_ff, i_ff = time_ffmpeg(path)
        cut = min(seconds, args.pyln_minutes * 60.0)
        say(f"pyloudnorm on the first {cut / 60:g} min ...")
        t_py, i_py = time_pyloudnorm(path, cut)
        x_an = seconds / t_an
        x_ff = seconds / t_ff if t_ff else None
        x_py = cut / t_py if t_py else None
        out = {
            "file": {"seconds": seconds, "samplerate": RATE, "channels": 2,
                     "subtype": "PCM_24", "bytes": path.stat().st_size},
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
            "analyze": {"seconds": round(t_an, 3), "realtime_x": round(x_an, 1),
                        "integrated_lufs": res["integrated_lufs"],
                        "true_peak_dbtp": res["true_peak_dbtp"], "lra_lu": res["lra_lu"],
                        "problems": res["problem_counts"]},
            "ffmpeg_ebur128": {"seconds": None if t_ff is None else round(t_ff, 3),
                               "realtime_x": None if x_ff is None else round(x_ff, 1),
                               "integrated_lufs": i_ff},
            "pyloudnorm": {"measured_on_s": cut,
                           "seconds": None if t_py is None else round(t_py, 3),
                           "realtime_x": None if x_py is None else round(x_py, 1),
                           "integrated_lufs_of_cut": i_py,
                           "note": "integrated loudness only (no true peak, LRA or "
                                   "problems); the realtime factor is from the cut"},
            "ratios": {"analyze_vs_ffmpeg": None if x_ff is None else round(x_an / x_ff, 2),
                       "analyze_vs_pyloudnorm": None if x_py is None else round(x_an / x_py, 2)},
            "targets": {"analyze_realtime_x": TARGET_X, "met": x_an >= TARGET_X},
        }
        print(json.dumps(out, indent=2))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
