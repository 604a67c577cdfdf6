#!/usr/bin/env python
"""Render benchmark: the livemix numba engine against numpy, pedalboard and ffmpeg.

Run from the repository root::

    python benchmarks/render.py              # 60 s reference session, 3 repetitions
    python benchmarks/render.py --quick      # 10 s, 1 repetition (smoke test)
    python benchmarks/render.py --seconds 20 --reps 5

Prints one JSON object on stdout (progress goes to stderr). Every comparison
is made within the same run, and reported as a ratio too, because absolute
numbers on a shared machine drift from run to run.

The reference session (generated, seeded, into a temporary directory that is
removed at the end): 8 stereo float WAV stems at 48 kHz, a speech-like key
track ducking two targets, fader moves every 100 ms on four tracks (slow
random walks in dB), and a master limiter at -1 dBFS that the mix reaches now
and then. Sections of the output:

1. ``numba_kernel``: ``engine.rt.block.run_blocks`` alone (sources filled and
   commands queued outside the timed region, as engine/backends/offline.py
   drives it in ~0.5 s chunks), best of the repetitions, per block size.
2. ``numpy``: benchmarks/numpy_mixer.py, the same session in numpy (Python
   block loop, vectorised per block), from in-memory stems.
3. ``pedalboard``: the closest pedalboard chain (Gain per track, a
   self-keyed Compressor standing in for the ducker, Limiter on the master),
   block by block with ``reset=False``, from in-memory stems.
4. ``whole_process``: ``livemix render`` as a subprocess against an ffmpeg
   command line (amix + sidechaincompress + alimiter), WAV to WAV.
5. ``startup``: numba compile time (cold cache vs cached) and the whole
   ``livemix render`` process on a 1 s session with a warm cache.
6. ``metering``: the loudness and true-peak meters' share of a block at 32
   tracks, and the true-peak ceiling's cost (benchmarks/metering.py).
7. ``strip``: the channel strip (at most 20 s of the stems; 5 s with --quick).
   ``vs_pedalboard``: the 8 tracks each with hpf + 4 peak EQ bands + compressor
   (and a gate on two), mixed and limited, the numba kernel against
   pedalboard's nearest chain (HighpassFilter, NoiseGate, PeakFilter x4,
   Compressor, then the contender above's Gain and Limiter), block by block
   with ``reset=False``, per block size. ``one_track``: the strip's cost in ns
   per sample on one track (the kernel with the strip minus the kernel with no
   strip), each stage alone, and RNNoise's cost per channel (denoise alone;
   ``rnnoise_alone``: the denoise kernel called directly, a cross-check).
8. ``targets``: the goals and whether this run met them.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import resource
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
sys.path.insert(1, str(Path(__file__).resolve().parent))

from engine.backends.offline import CHUNK_S, render  # noqa: E402
from engine.dsp.denoise import P_FRAMES as DN_FRAMES  # noqa: E402
from engine.dsp.denoise import library_problem  # noqa: E402
from engine.dsp.layout import (K_CEIL, K_CMD_APPLIED, K_CMD_INVALID, K_CMD_LATE,  # noqa: E402
                               S_UNDERRUNS)
from engine.params import P_GAIN  # noqa: E402
from engine.rt.block import run_blocks  # noqa: E402
from engine.rt.rings import command_push  # noqa: E402
from engine.rt.state import allocate, start_denoisers, stop_denoisers  # noqa: E402
from engine.session import Master, load_session  # noqa: E402
from engine.sources.files import FileSource  # noqa: E402
from metering import metering_cost  # noqa: E402
from numpy_mixer import NumpyMixer, db_to_lin, pan_gains  # noqa: E402

SR = 48000                      # Hz
BLOCKSIZES = (64, 256, 1024)    # frames
SESSION_BLOCKSIZE = 256         # frames; the block size `livemix render` uses
AUTOMATION_STEP_S = 0.100       # seconds between fader moves
AUTOMATION_SIGMA_DB = 0.75      # random-walk step, dB (standard deviation)
AUTOMATION_RANGE_DB = (-9.0, 3.0)  # walk bounds around the track's base gain, dB
SEED = 20240521

# name, gain_db, pan, fader automated; the generator of each stem is STEMS[name]
TRACKS = (
    ("voice", 0.0, 0.0, False),
    ("music", -3.0, -0.2, True),
    ("ambience", -4.0, 0.4, False),
    ("drums", -1.0, 0.0, True),
    ("bass", -2.0, 0.0, True),
    ("pad", -5.0, -0.5, True),
    ("hats", -6.0, 0.6, False),
    ("room", -8.0, 0.0, False),
)
DUCKING = {"key": ["voice"], "targets": ["music", "ambience"], "threshold_db": -30.0,
           "depth_db": -10.0, "attack_ms": 10.0, "hold_ms": 150.0, "release_ms": 400.0}
MASTER = {"gain_db": 0.0, "ceiling_db": -1.0}

# pedalboard's Compressor stands in for the ducker; ffmpeg's sidechaincompress
# approximates a fixed depth with a high ratio and a dry/wet mix (floor = 1 - mix).
COMPRESSOR_RATIO = 20.0
LIMITER_RELEASE_MS = 100.0      # the engine's limiter release (engine.rt.state.RELEASE_S)
LIMITER_ATTACK_MS = 2.0         # the engine's lookahead (engine.rt.state.LOOKAHEAD_S)

TARGET_RT = {64: 1000.0, 256: 1500.0, 1024: 2000.0}   # numba kernel, x realtime
TARGET_VS_FFMPEG = 5.0          # livemix render / ffmpeg, realtime-factor ratio
TARGET_STARTUP_S = 2.0          # cached whole-process start-up on a 1 s session

# Section 7, the channel strip: every track gets hpf + 4 peak bands + compressor, the
# STRIP_GATED ones a gate too; that session has no ducking (the strip is compared).
STRIP_GATED = ("voice", "hats")
STRIP_HPF = {"freq_hz": 80.0, "slope": 12}
STRIP_GATE = {"threshold_db": -45.0, "range_db": 40.0, "attack_ms": 1.0, "hold_ms": 100.0,
              "release_ms": 150.0}
STRIP_EQ = ({"type": "peak", "freq_hz": 180.0, "gain_db": -2.0, "q": 1.0},
            {"type": "peak", "freq_hz": 700.0, "gain_db": 1.5, "q": 1.4},
            {"type": "peak", "freq_hz": 3000.0, "gain_db": 3.0, "q": 1.0},
            {"type": "peak", "freq_hz": 9000.0, "gain_db": -1.5, "q": 0.7})
STRIP_COMP = {"threshold_db": -18.0, "ratio": 3.0, "knee_db": 6.0, "attack_ms": 5.0,
              "release_ms": 80.0}
STRIP_SECONDS = 20.0            # the section's audio at most, seconds
STRIP_SECONDS_QUICK = 5.0       # ... with --quick
STRIP_COST_TRACK = "voice"      # the one-track measurements' track (a gated one)
STRIP_COST_REPS = 5             # the one-track runs' repetitions, at least
PB_GATE_RATIO = 10.0            # pedalboard's NoiseGate: a downward expander of this ratio
TARGET_STRIP_VS_PEDALBOARD = {64: 10.0, 1024: 3.0}   # livemix / pedalboard, realtime factors
TARGET_STRIP_NS = 15.0          # the full strip (no denoise), ns per sample of one track


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- stems ---------------------------------------------------------------------

def band_noise(rng, n: int, lo_hz: float, hi_hz: float, slope: float = 0.0) -> np.ndarray:
    """Unit-RMS noise band-limited to [lo_hz, hi_hz], spectrum ~ f**slope (amplitude)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    shape = ((f >= lo_hz) & (f <= hi_hz)) * np.maximum(f, 1.0) ** slope
    x = np.fft.irfft(spec * shape, n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def hann_burst(length: int) -> np.ndarray:
    """A raised-cosine bump of ``length`` samples."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(length) + 0.5) / length)


def normalise_peak(x: np.ndarray, peak_db: float) -> np.ndarray:
    """Scale (2, n) so its sample peak is ``peak_db`` dBFS; float32."""
    return (x * (db_to_lin(peak_db) / (np.abs(x).max() + 1e-12))).astype(np.float32)


def stem_voice(rng, n: int) -> np.ndarray:
    """Speech-like bursts: phrases of syllables (a buzzy harmonic tone plus noise), pauses."""
    env = np.zeros(n)
    f0 = np.full(n, 140.0)
    t = int(0.3 * SR)
    while t < n:
        end = min(n, t + int(rng.uniform(1.0, 3.5) * SR))
        f0[t:end] = np.linspace(rng.uniform(120, 180), rng.uniform(100, 160), end - t)
        while t < end:
            k = min(int(rng.uniform(0.08, 0.25) * SR), n - t)
            env[t:t + k] = rng.uniform(0.35, 1.0) * hann_burst(k)
            t += k + int(rng.uniform(0.02, 0.08) * SR)
        t = end + int(rng.uniform(0.4, 1.8) * SR)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    buzz = sum(np.sin(k * phase) / k for k in range(1, 13))
    buzz /= np.sqrt(np.mean(buzz * buzz))
    x = (0.7 * buzz + 0.3 * band_noise(rng, n, 300, 4000)) * env
    return normalise_peak(np.stack((x, 0.97 * x)), -6.0)


def stem_music(rng, n: int) -> np.ndarray:
    """Chords of harmonic tones, a new chord every 2 s, slow tremolo; a little stereo spread."""
    roots = (220.0, 246.9, 196.0, 174.6)
    t = np.arange(n) / SR
    x = np.zeros((2, n))
    seg = 2 * SR
    for i, a in enumerate(range(0, n, seg)):
        b = min(n, a + seg)
        root = roots[i % len(roots)]
        for j, ratio in enumerate((1.0, 1.26, 1.5, 2.0)):
            f = root * ratio
            tone = sum(np.sin(2 * np.pi * h * f * t[a:b] + j) / h ** 1.5 for h in (1, 2, 3))
            x[j % 2, a:b] += tone
            x[1 - j % 2, a:b] += 0.6 * tone
    x *= 0.75 + 0.25 * np.sin(2 * np.pi * 0.3 * t)
    return normalise_peak(x, -9.0)


def stem_ambience(rng, n: int) -> np.ndarray:
    """Pink-ish stereo noise with a slow swell."""
    t = np.arange(n) / SR
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.07 * t)
    x = np.stack([band_noise(rng, n, 40, 16000, -0.5) for _ in range(2)]) * swell
    return normalise_peak(x, -16.0)


def stem_drums(rng, n: int) -> np.ndarray:
    """Kick on the beat, snare on the off-beat, 120 bpm, random accents (the loud track)."""
    k = int(0.35 * SR)
    tk = np.arange(k) / SR
    kick = np.sin(2 * np.pi * np.cumsum(45 + 75 * np.exp(-tk / 0.04)) / SR) * np.exp(-tk / 0.12)
    snare = (0.7 * band_noise(rng, k, 200, 9000) / 3 + 0.3 * np.sin(2 * np.pi * 185 * tk))
    snare *= np.exp(-tk / 0.07)
    x = np.zeros(n + k)
    for i, a in enumerate(range(0, n, SR // 4)):
        hit = kick if i % 2 == 0 else snare
        x[a:a + k] += rng.uniform(0.55, 1.0) * hit
    x = x[:n]
    return normalise_peak(np.stack((x, x)), -2.0)


def stem_bass(rng, n: int) -> np.ndarray:
    """A saturated bass line, a note every 0.5 s."""
    notes = (41.2, 55.0, 61.7, 73.4, 49.0)
    f = np.repeat([notes[i % len(notes)] for i in range(n // (SR // 2) + 1)], SR // 2)[:n]
    t = np.arange(n) % (SR // 2) / SR
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = np.tanh(2.0 * (np.sin(phase) + 0.4 * np.sin(2 * phase))) * np.exp(-t / 0.4)
    return normalise_peak(np.stack((x, x)), -6.0)


def stem_pad(rng, n: int) -> np.ndarray:
    """Detuned sines swelling slowly, left and right detuned differently."""
    t = np.arange(n) / SR
    x = np.zeros((2, n))
    for f in (220.0, 277.2, 329.6, 440.0):
        x[0] += np.sin(2 * np.pi * (f - 0.7) * t)
        x[1] += np.sin(2 * np.pi * (f + 0.7) * t + 1.0)
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.05 * t) ** 2
    return normalise_peak(x, -12.0)


def stem_hats(rng, n: int) -> np.ndarray:
    """Short bursts of high noise on the eighth notes."""
    k = int(0.06 * SR)
    burst = band_noise(rng, k, 6000, 16000) * np.exp(-np.arange(k) / (0.012 * SR))
    x = np.zeros((2, n + k))
    for a in range(SR // 8, n, SR // 8):
        x[:, a:a + k] += rng.uniform(0.3, 1.0, (2, 1)) * burst
    return normalise_peak(x[:, :n], -10.0)


def stem_room(rng, n: int) -> np.ndarray:
    """Quiet independent noise in each channel."""
    x = np.stack([band_noise(rng, n, 100, 8000) for _ in range(2)])
    return normalise_peak(x, -30.0)


STEMS = {"voice": stem_voice, "music": stem_music, "ambience": stem_ambience,
         "drums": stem_drums, "bass": stem_bass, "pad": stem_pad, "hats": stem_hats,
         "room": stem_room}


def make_stems(seconds: float) -> dict[str, np.ndarray]:
    """The eight seeded stems, (2, frames) float32 each."""
    n = round(seconds * SR)
    rng = np.random.default_rng(SEED)
    return {name: STEMS[name](rng, n) for name, *_ in TRACKS}


def write_stems(stems: dict, folder: Path) -> None:
    """Write each stem as a stereo float WAV ``folder/NAME.wav``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", x.T, SR, subtype="FLOAT")


# --- session and automation ----------------------------------------------------------

def _toml(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def write_session(path: Path, stem_dir: Path, blocksize: int = SESSION_BLOCKSIZE,
                  strip: bool = False) -> Path:
    """Write the reference session TOML (stems in ``stem_dir``) and return its path.
    strip: every track gets the strip section's channel strip (``strip_tables``) and
    the session has no ducking."""
    lines = ["[engine]", f"samplerate = {SR}", f"blocksize = {blocksize}", "channels = 2", ""]
    for name, gain_db, pan, _ in TRACKS:
        rel = os.path.relpath(stem_dir / f"{name}.wav", path.parent)
        lines += ["[[tracks]]", f"name = {_toml(name)}", f"file = {_toml(rel)}",
                  f"gain_db = {gain_db!r}", f"pan = {pan!r}"]
        lines += (strip_tables(name) if strip else []) + [""]
    if not strip:
        lines.append("[[ducking]]")
        lines += [f"{k} = {_toml(v)}" for k, v in DUCKING.items()] + [""]
    lines += ["[master]"] + [f"{k} = {_toml(v)}" for k, v in MASTER.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def strip_tables(name: str) -> list[str]:
    """TOML lines of track ``name``'s channel strip in the strip section: hpf, a gate
    (STRIP_GATED tracks only), four EQ bands, compressor."""
    def table(header, values):
        return [header] + [f"{k} = {_toml(v)}" for k, v in values.items()]

    lines = table("[tracks.hpf]", STRIP_HPF)
    if name in STRIP_GATED:
        lines += table("[tracks.gate]", STRIP_GATE)
    for band in STRIP_EQ:
        lines += table("[[tracks.eq]]", band)
    return lines + table("[tracks.comp]", STRIP_COMP)


def fader_automation(seconds: float) -> list[tuple]:
    """Fader moves every AUTOMATION_STEP_S on the automated tracks: (frame, P_GAIN, track, dB)."""
    rng = np.random.default_rng(SEED + 1)
    total = round(seconds * SR)
    step = round(AUTOMATION_STEP_S * SR)
    cmds = []
    for t, (_, base, _, automated) in enumerate(TRACKS):
        if not automated:
            continue
        level = base
        lo, hi = base + AUTOMATION_RANGE_DB[0], base + AUTOMATION_RANGE_DB[1]
        for frame in range(step, total, step):
            level = float(np.clip(level + rng.normal(0.0, AUTOMATION_SIGMA_DB), lo, hi))
            cmds.append((frame, P_GAIN, t, round(level, 3)))
    cmds.sort(key=lambda c: (c[0], c[2]))
    return cmds


# --- 1. numba kernel -----------------------------------------------------------------

def engine_kernel_pass(session, commands, blocksize: int, out: np.ndarray) -> dict:
    """Mix len(out) frames with run_blocks; only the run_blocks calls are timed.

    Drives the kernel as engine/backends/offline.py does: chunks of ~CHUNK_S,
    sources filled and the chunk's commands queued before each call, RNNoise
    states made for the tracks whose strip denoises (untimed).
    Returns wall seconds of run_blocks and the engine's counters.
    """
    sr = session.engine.samplerate
    total = len(out)
    chunk = max(blocksize, int(CHUNK_S * sr) // blocksize * blocksize)
    st = allocate(session, maxblock=blocksize, ring_frames=2 * chunk + 16384)
    start_denoisers(st)
    sources = [FileSource(t, sr) for t in session.tracks]
    wall = 0.0
    fill_s = 0.0
    calls = 0
    ci = 0
    pos = 0
    try:
        while pos < total:
            n = min(chunk, total - pos)
            t0 = time.perf_counter()
            for src, ring, p in zip(sources, st.src_ring, st.src_pos):
                src.fill(ring, p, until=pos + n)
            fill_s += time.perf_counter() - t0
            while ci < len(commands) and commands[ci][0] < pos + n:
                if not command_push(st.cmd_ring, st.cmd_idx, *commands[ci]):
                    n = max(1, int(commands[ci][0]) - pos)
                    break
                ci += 1
            view = out[pos:pos + n]
            t0 = time.perf_counter()
            run_blocks(st, view, n, blocksize)
            wall += time.perf_counter() - t0
            calls += 1
            pos += n
    finally:
        for s in sources:
            s.close()
        stop_denoisers(st)
    return {"wall_s": wall, "calls": calls, "source_fill_s_untimed": round(fill_s, 4),
            "rnnoise_frames": int(st.dn_pos[:, DN_FRAMES].sum()),
            "limiter_reduced_samples": int(st.clock[K_CEIL]),
            "commands_applied": int(st.clock[K_CMD_APPLIED]),
            "commands_late": int(st.clock[K_CMD_LATE]),
            "commands_invalid": int(st.clock[K_CMD_INVALID]),
            "underruns": int(st.src_pos[:, S_UNDERRUNS].sum())}


def engine_warmup(session, blocksize: int) -> float:
    """Call run_blocks once on a fresh state (compiles, or loads numba's cache). Seconds."""
    st = allocate(session, maxblock=blocksize)
    out = np.zeros((4 * blocksize, session.engine.channels), np.float32)
    t0 = time.perf_counter()
    run_blocks(st, out, len(out), blocksize)
    return time.perf_counter() - t0


def dispatch_overhead_us(session, blocksize: int, calls: int = 2000) -> float:
    """Median microseconds of a run_blocks call that processes 0 frames (dispatch only)."""
    st = allocate(session, maxblock=blocksize)
    out = np.zeros((blocksize, session.engine.channels), np.float32)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run_blocks(st, out, 0, blocksize)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


# --- 2. numpy and 3. pedalboard ----------------------------------------------------

def numpy_pass(session, stems, commands, blocksize: int, out: np.ndarray) -> dict:
    """Mix len(out) frames with the numpy mixer; the whole block loop is timed."""
    mixer = NumpyMixer(session, stems, commands, maxblock=blocksize)
    t0 = time.perf_counter()
    mixer.run(out, blocksize)
    return {"wall_s": time.perf_counter() - t0,
            "limiter_reduced_samples": mixer.limiter.reduced,
            "limiter_gain_below_unity_samples": mixer.limiter.active,
            "limiter_gain_below_0.99_samples": mixer.limiter.audible,
            "limiter_slow_path_samples": mixer.limiter.slow}


def pedalboard_pass(session, stems, commands, blocksize: int, out: np.ndarray) -> dict:
    """The closest pedalboard chain, block by block with reset=False; the block loop is timed.

    Per track: its channel strip's nearest plugins (``strip_plugins``; none
    without a strip), pedalboard.Gain (fader; a command takes effect at the
    start of the block holding its frame), pan as a numpy multiply, and on
    ducking targets a pedalboard.Compressor keyed by the target itself
    (pedalboard has no sidechain input). Master: pedalboard.Gain when not 0 dB,
    then pedalboard.Limiter at the ceiling.
    """
    import pedalboard as pb

    sr = session.engine.samplerate
    gains, boards, pans = [], [], []
    for track in session.tracks:
        gain = pb.Gain(gain_db=track.gain_db)
        plugins = strip_plugins(track.strip) + [gain]
        for rule in session.ducking:
            if track.name in rule.targets:
                plugins.append(pb.Compressor(threshold_db=rule.threshold_db,
                                             ratio=COMPRESSOR_RATIO, attack_ms=rule.attack_ms,
                                             release_ms=rule.release_ms))
        gains.append(gain)
        boards.append(gain if len(plugins) == 1 else pb.Pedalboard(plugins))
        pans.append(np.array(pan_gains(track.pan), np.float32).reshape(2, 1))
    master_plugins = [pb.Limiter(threshold_db=session.master.ceiling_db,
                                 release_ms=LIMITER_RELEASE_MS)]
    if session.master.gain_db != 0.0:
        master_plugins.insert(0, pb.Gain(gain_db=session.master.gain_db))
    master = pb.Pedalboard(master_plugins)
    total = len(out)
    ci = 0
    short = 0
    t0 = time.perf_counter()
    for f0 in range(0, total, blocksize):
        n = min(blocksize, total - f0)
        while ci < len(commands) and commands[ci][0] < f0 + n:
            gains[int(commands[ci][2])].gain_db = commands[ci][3]
            ci += 1
        bus = np.zeros((2, n), np.float32)
        for stem, board, pan in zip(stems, boards, pans):
            bus += pan * board.process(stem[:, f0:f0 + n], sr, buffer_size=blocksize, reset=False)
        y = master.process(bus, sr, buffer_size=blocksize, reset=False)
        short += n - y.shape[1]
        out[f0:f0 + y.shape[1]] = y.T
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "frames_short": short}


def strip_plugins(strip) -> list:
    """pedalboard's nearest plugins for a livemix ``Strip``, in the strip's order:
    HighpassFilter (first order, 6 dB/octave: pedalboard has no steeper high-pass),
    NoiseGate (a downward expander of ratio PB_GATE_RATIO: no range, hold nor
    hysteresis), a PeakFilter per EQ band (peak bands only), Compressor (hard
    knee, peak detector). Denoise has no pedalboard counterpart."""
    import pedalboard as pb

    plugins = []
    if strip.hpf is not None:
        plugins.append(pb.HighpassFilter(cutoff_frequency_hz=strip.hpf.freq_hz))
    if strip.gate is not None:
        g = strip.gate
        plugins.append(pb.NoiseGate(threshold_db=g.threshold_db, ratio=PB_GATE_RATIO,
                                    attack_ms=g.attack_ms, release_ms=g.release_ms))
    for band in strip.eq:
        if band.type != "peak":
            raise ValueError(f"no pedalboard counterpart here for a {band.type} band")
        plugins.append(pb.PeakFilter(cutoff_frequency_hz=band.freq_hz, gain_db=band.gain_db,
                                     q=band.q))
    if strip.comp is not None:
        c = strip.comp
        plugins.append(pb.Compressor(threshold_db=c.threshold_db, ratio=c.ratio,
                                     attack_ms=c.attack_ms, release_ms=c.release_ms))
    return plugins


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """How far output b is from output a: max and RMS difference in dBFS, identical samples."""
    d = (a.astype(np.float64) - b.astype(np.float64)).ravel()
    peak = float(np.abs(d).max())
    rms = float(np.sqrt(np.mean(d * d)))
    return {"max_abs_diff_dbfs": round(20 * math.log10(peak), 1) if peak > 0 else None,
            "rms_diff_dbfs": round(20 * math.log10(rms), 1) if rms > 0 else None,
            "identical_fraction": round(float(np.mean(d == 0.0)), 4)}


def signal_stats(x: np.ndarray) -> dict:
    """Peak and RMS of an output, dBFS."""
    peak = float(np.abs(x).max())
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return {"peak_dbfs": round(20 * math.log10(max(peak, 1e-12)), 2),
            "rms_dbfs": round(20 * math.log10(max(rms, 1e-12)), 2)}


def digest(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


def bench_in_process(session, stems, commands, frames: int, reps: int) -> dict:
    """Sections 1-3: numba kernel, numpy and pedalboard at each block size, interleaved.

    Repetitions are the outer loop so machine noise hits every contender alike;
    each figure is the best repetition.
    """
    ntracks = len(session.tracks)
    seconds = frames / session.engine.samplerate
    eng_out = np.zeros((frames, 2), np.float32)
    np_out = np.zeros((frames, 2), np.float32)
    pb_out = np.zeros((frames, 2), np.float32)
    runs = {impl: {bs: [] for bs in BLOCKSIZES} for impl in ("numba", "numpy", "pedalboard")}
    extra = {"numba": {}, "numpy": {}, "pedalboard": {}}
    digests = {}
    for rep in range(reps):
        for bs in BLOCKSIZES:
            log(f"rep {rep + 1}/{reps} block {bs}: numba")
            r = engine_kernel_pass(session, commands, bs, eng_out)
            runs["numba"][bs].append(r["wall_s"])
            if rep == 0:
                extra["numba"][bs] = dict(r, output=signal_stats(eng_out))
            digests[bs] = digest(eng_out)
            log(f"rep {rep + 1}/{reps} block {bs}: numpy")
            r = numpy_pass(session, stems, commands, bs, np_out)
            runs["numpy"][bs].append(r["wall_s"])
            if rep == 0:
                r.update(vs_engine=compare(eng_out, np_out))
                extra["numpy"][bs] = r
            log(f"rep {rep + 1}/{reps} block {bs}: pedalboard")
            r = pedalboard_pass(session, stems, commands, bs, pb_out)
            runs["pedalboard"][bs].append(r["wall_s"])
            if rep == 0:
                r.update(output=signal_stats(pb_out), vs_engine=compare(eng_out, pb_out))
                extra["pedalboard"][bs] = r
    result = {impl: {str(bs): summarise(walls, frames, ntracks, seconds, extra[impl].get(bs))
                     for bs, walls in per_bs.items()} for impl, per_bs in runs.items()}
    result["numba"]["blocksize_invariant_output"] = len(set(digests.values())) == 1
    for impl in ("numpy", "pedalboard"):
        for bs in BLOCKSIZES:
            ratio = min(runs[impl][bs]) / min(runs["numba"][bs])
            result[impl][str(bs)]["numba_over_this"] = round(ratio, 1)
    return result


def summarise(walls: list, frames: int, ntracks: int, seconds: float, extra=None) -> dict:
    """Best of the repetitions' wall times (s) as realtime factor and ns/sample/track."""
    best = min(walls)
    entry = {"realtime_factor": round(seconds / best, 1),
             "wall_s": round(best, 5),
             "wall_s_all_reps": [round(w, 5) for w in walls],
             "ns_per_sample_per_track": round(best / (frames * ntracks) * 1e9, 2)}
    entry.update({k: v for k, v in (extra or {}).items() if k != "wall_s"})
    return entry


def engine_breakdown(session, commands, frames: int, reps: int) -> dict:
    """Kernel cost with features switched off, to see where the time goes.

    Per variant and block size: ns per sample per track and realtime factor
    (best of ``reps``). Derived: the cost of each feature in ns per frame (all
    tracks), and the fixed cost per block call estimated from ``plain_mix`` at
    the smallest and largest block sizes.
    """
    # The master at -20 dB keeps the limiter idle without changing anything before it
    # (the fader walks change the level reaching the limiter, so they are compared idle).
    quiet = dataclasses.replace(session, master=Master(gain_db=-20.0,
                                                       ceiling_db=session.master.ceiling_db))
    plain = dataclasses.replace(quiet, ducking=())
    variants = {
        "reference": (session, commands),
        "limiter_idle": (quiet, commands),
        "limiter_idle_no_ducking": (plain, commands),
        "limiter_idle_no_automation": (quiet, ()),
        "plain_mix": (plain, ()),
        "plain_mix_one_track": (dataclasses.replace(plain, tracks=plain.tracks[:1]), ()),
    }
    out = np.zeros((frames, 2), np.float32)
    best = {(name, bs): math.inf for name in variants for bs in BLOCKSIZES}
    for rep in range(reps):
        log(f"engine breakdown rep {rep + 1}/{reps}")
        for bs in BLOCKSIZES:
            for name, (s, cmds) in variants.items():
                w = engine_kernel_pass(s, cmds, bs, out)["wall_s"]
                best[name, bs] = min(best[name, bs], w)
    seconds = frames / session.engine.samplerate
    result = {}
    for bs in BLOCKSIZES:
        per = {}
        for name, (s, _) in variants.items():
            w = best[name, bs]
            per[name] = {"ns_per_sample_per_track": round(w / (frames * len(s.tracks)) * 1e9, 2),
                         "realtime_factor": round(seconds / w, 1)}
        frame_ns = {name: best[name, bs] / frames * 1e9 for name in variants}
        per["ns_per_frame_of"] = {
            "limiter_slow_path": round(frame_ns["reference"] - frame_ns["limiter_idle"], 2),
            "ducking": round(frame_ns["limiter_idle"] - frame_ns["limiter_idle_no_ducking"], 2),
            "automation": round(frame_ns["limiter_idle"]
                                - frame_ns["limiter_idle_no_automation"], 2)}
        result[str(bs)] = per
    lo, hi = min(BLOCKSIZES), max(BLOCKSIZES)
    extra_blocks = frames / lo - frames / hi
    for name in ("plain_mix", "plain_mix_one_track"):
        ns = (best[name, lo] - best[name, hi]) / extra_blocks * 1e9
        result[f"{name}_ns_per_block_call"] = round(ns, 1)
    return result


# --- 7. channel strip ------------------------------------------------------------------

def bench_strip(session, stems, frames: int, reps: int) -> dict:
    """Section 7: the channel strip. ``session``: the reference tracks, each with
    ``strip_tables``' strip; stems in its track order; ``frames`` of audio."""
    track = next(t for t in session.tracks if t.name == STRIP_COST_TRACK)
    result = {"seconds": round(frames / SR, 3),
              "tracks": {t.name: strip_summary(t.strip) for t in session.tracks},
              "pedalboard_chain": [type(p).__name__ for p in strip_plugins(track.strip)],
              "vs_pedalboard": strip_vs_pedalboard(session, stems, frames, reps),
              "one_track": strip_cost(session, track, frames, reps)}
    if library_problem() is None:
        x = stems[[t.name for t in session.tracks].index(STRIP_COST_TRACK)][:, :frames]
        result["one_track"]["rnnoise_alone"] = rnnoise_alone(x, max(reps, STRIP_COST_REPS))
    return result


def strip_summary(strip) -> str:
    """A strip's stages in words, e.g. "hpf 12 dB/oct, gate, eq x4, comp"."""
    stages = ["denoise"] if strip.denoise else []
    if strip.hpf is not None:
        stages.append(f"hpf {strip.hpf.slope} dB/oct")
    if strip.gate is not None:
        stages.append("gate")
    if strip.eq:
        stages.append(f"eq x{len(strip.eq)}")
    if strip.comp is not None:
        stages.append("comp")
    return ", ".join(stages) or "none"


def strip_vs_pedalboard(session, stems, frames: int, reps: int) -> dict:
    """Every track with its strip, mixed and limited: the numba kernel against
    pedalboard_pass (the strips' nearest plugins, block by block with reset=False),
    at each block size, interleaved, best of ``reps``. Realtime factors and the ratio."""
    ntracks = len(session.tracks)
    seconds = frames / SR
    outs = {impl: np.zeros((frames, 2), np.float32) for impl in ("livemix", "pedalboard")}
    walls = {impl: {bs: [] for bs in BLOCKSIZES} for impl in outs}
    extra = {impl: {} for impl in outs}
    for rep in range(reps):
        for bs in BLOCKSIZES:
            log(f"strip rep {rep + 1}/{reps} block {bs}: livemix, pedalboard")
            r = engine_kernel_pass(session, (), bs, outs["livemix"])
            walls["livemix"][bs].append(r["wall_s"])
            extra["livemix"][bs] = {"underruns": r["underruns"],
                                    "output": signal_stats(outs["livemix"])}
            r = pedalboard_pass(session, stems, (), bs, outs["pedalboard"])
            walls["pedalboard"][bs].append(r["wall_s"])
            extra["pedalboard"][bs] = {"frames_short": r["frames_short"],
                                       "output": signal_stats(outs["pedalboard"])}
    result = {}
    for bs in BLOCKSIZES:
        entry = {impl: summarise(walls[impl][bs], frames, ntracks, seconds, extra[impl][bs])
                 for impl in outs}
        entry["livemix_over_pedalboard"] = round(min(walls["pedalboard"][bs])
                                                 / min(walls["livemix"][bs]), 2)
        result[str(bs)] = entry
    return result


def strip_variants(strip) -> dict:
    """The one-track runs' strips: none, the full strip without denoise, each stage
    alone, and denoise alone (when RNNoise loads here)."""
    from engine.strip import Strip

    variants = {"none": Strip(), "full": dataclasses.replace(strip, denoise=False),
                "hpf": Strip(hpf=strip.hpf), "gate": Strip(gate=strip.gate),
                "eq": Strip(eq=strip.eq), "comp": Strip(comp=strip.comp)}
    if library_problem() is None:
        variants["denoise"] = Strip(denoise=True)
    return variants


def strip_cost(session, track, frames: int, reps: int) -> dict:
    """What the strip costs on one track, ns per sample (a stereo frame): the kernel's
    best wall time on ``track`` alone with a strip minus the same with no strip.

    Interleaved, best of max(reps, STRIP_COST_REPS), at each block size. Stages alone
    too (their costs need not add up to the full strip's: the loop over a grid span
    is shared), and denoise: its cost per channel (RNNoise on both).
    """
    sessions = {name: dataclasses.replace(session, ducking=(),
                                          tracks=(dataclasses.replace(track, strip=v),))
                for name, v in strip_variants(track.strip).items()}
    out = np.zeros((frames, 2), np.float32)
    reps = max(reps, STRIP_COST_REPS)
    best = {(name, bs): math.inf for name in sessions for bs in BLOCKSIZES}
    rnnoise_frames = 0
    for rep in range(reps):
        log(f"strip on one track, rep {rep + 1}/{reps}")
        for bs in BLOCKSIZES:
            for name, s in sessions.items():
                r = engine_kernel_pass(s, (), bs, out)
                best[name, bs] = min(best[name, bs], r["wall_s"])
                rnnoise_frames = max(rnnoise_frames, r["rnnoise_frames"])
    result = {
        "method": "(best wall time of run_blocks mixing one track with the strip - best with "
                  "the same track and no strip) / frames, same stem, block size and session "
                  f"(no ducking, no automation), best of {reps} interleaved repetitions; a "
                  "sample is one frame of the stereo track (both channels), as "
                  "ns_per_sample_per_track elsewhere; denoise per channel is its difference "
                  "/ 2 (RNNoise runs on each channel)",
        "track": track.name, "full_strip": strip_summary(track.strip), "frames": frames,
        "repetitions": reps, "rnnoise_frames_per_run": rnnoise_frames}
    for bs in BLOCKSIZES:
        ns = {name: best[name, bs] / frames * 1e9 for name in sessions}
        per = {"kernel_ns_per_sample": {name: round(v, 2) for name, v in ns.items()},
               "strip_ns_per_sample": {name: round(v - ns["none"], 2) for name, v in ns.items()
                                       if name not in ("none", "denoise")}}
        if "denoise" in ns:
            per["denoise_ns_per_sample_per_channel"] = round((ns["denoise"] - ns["none"]) / 2, 2)
        result[str(bs)] = per
    # the worst block size is the figure (the strip works on 32-sample grid spans anyway)
    result["full_strip_ns_per_sample"] = max(result[str(bs)]["strip_ns_per_sample"]["full"]
                                             for bs in BLOCKSIZES)
    if "denoise" in sessions:
        result["denoise_ns_per_sample_per_channel"] = max(
            result[str(bs)]["denoise_ns_per_sample_per_channel"] for bs in BLOCKSIZES)
    return result


def rnnoise_alone(x: np.ndarray, reps: int) -> dict:
    """engine.dsp.denoise.denoise_segment alone over the stereo (2, n) signal ``x`` in one
    call (its frame FIFO and RNNoise on both channels, no kernel around it): best of
    ``reps``, ns per sample per channel; a cross-check of the kernel difference."""
    from engine.dsp.denoise import (FIFO_ROWS, FRAME, N_POS, create_states, denoise_segment,
                                    destroy_states)

    best = math.inf
    for _ in range(reps + 1):                    # the first call compiles or loads
        states = create_states(2)
        fifo = np.zeros((2, FIFO_ROWS, FRAME), np.float32)
        pos = np.zeros(N_POS)
        y = np.array(x, np.float32, order="C")       # a copy: denoised in place
        try:
            t0 = time.perf_counter()
            denoise_segment(states, fifo, pos, y, 0, y.shape[1])
            best = min(best, time.perf_counter() - t0)
        finally:
            destroy_states(states)
    return {"ns_per_sample_per_channel": round(best / (2 * x.shape[1]) * 1e9, 2),
            "us_per_480_sample_frame_per_channel": round(best / (2 * x.shape[1]) * FRAME
                                                         * 1e6, 2)}


# --- 4. whole process ---------------------------------------------------------------

def tree_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with this tree first on PYTHONPATH, so that a
    child importing ``engine`` gets this tree's: the venv's editable install may point
    at another checkout (a git worktree's benchmark would otherwise time, and compile,
    the main checkout's engine), and a console script's sys.path starts with its own
    directory, not the working directory."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run a subprocess to completion (with ``tree_env(env)``); wall and CPU (user +
    system) seconds, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=tree_env(env), cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": p.stdout}


def livemix_command(session_path: Path, out_path: Path) -> list[str]:
    """The `livemix render` command line (the venv's console script)."""
    exe = Path(sys.executable).parent / "livemix"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]
    return base + ["render", str(session_path), "-o", str(out_path), "--subtype", "FLOAT",
                   "--force"]


def ffmpeg_filtergraph(session) -> str:
    """amix of the tracks (gain and pan folded into a pan filter), sidechaincompress from
    each rule's key onto its targets, master volume and alimiter (level=0: no rescaling)."""
    names = {t.name: i for i, t in enumerate(session.tracks)}
    uses = {i: [] for i in range(len(session.tracks))}     # key track -> sidechain labels
    sidechains = {i: [] for i in range(len(session.tracks))}  # target -> (label, rule)
    for r, rule in enumerate(session.ducking):
        if len(rule.key) != 1:
            raise ValueError("the ffmpeg chain supports one key track per rule")
        k = names[rule.key[0]]
        for tname in rule.targets:
            label = f"sc{r}_{names[tname]}"
            uses[k].append(label)
            sidechains[names[tname]].append((label, rule))
    parts = []
    for i, track in enumerate(session.tracks):
        g = db_to_lin(track.gain_db)
        pl, pr = pan_gains(track.pan)
        if uses[i]:   # a key: its fader before the split, as the engine keys after the fader
            outs = "".join(f"[{lab}]" for lab in uses[i])
            parts.append(f"[{i}:a]volume={g:.6f},asplit={len(uses[i]) + 1}[k{i}]{outs}")
            src, g = f"[k{i}]", 1.0
        else:
            src = f"[{i}:a]"
        for j, (label, rule) in enumerate(sidechains[i]):
            mix = 1.0 - db_to_lin(rule.depth_db)
            parts.append(f"{src}[{label}]sidechaincompress=threshold="
                         f"{db_to_lin(rule.threshold_db):.6f}:ratio={COMPRESSOR_RATIO}:"
                         f"attack={rule.attack_ms}:release={rule.release_ms}:detection=peak:"
                         f"link=maximum:mix={mix:.4f}[d{i}_{j}]")
            src = f"[d{i}_{j}]"
        parts.append(f"{src}pan=stereo|c0={g * pl:.6f}*c0|c1={g * pr:.6f}*c1[t{i}]")
    inputs = "".join(f"[t{i}]" for i in range(len(session.tracks)))
    ceiling = db_to_lin(session.master.ceiling_db)
    parts.append(f"{inputs}amix=inputs={len(session.tracks)}:normalize=0:duration=longest,"
                 f"volume={db_to_lin(session.master.gain_db):.6f},"
                 f"alimiter=limit={ceiling:.6f}:attack={LIMITER_ATTACK_MS}:"
                 f"release={LIMITER_RELEASE_MS}:level=0[out]")
    return ";".join(parts)


def ffmpeg_command(session, out_path: Path) -> list[str]:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for track in session.tracks:
        cmd += ["-i", str(track.file)]
    return cmd + ["-filter_complex", ffmpeg_filtergraph(session), "-map", "[out]",
                  "-c:a", "pcm_f32le", str(out_path)]


def bench_whole_process(session, session_path: Path, tmp: Path, seconds: float,
                        reps: int) -> dict:
    """Section 4: `livemix render` vs ffmpeg, WAV to WAV, best of ``reps`` (interleaved)."""
    lm_out, ff_out = tmp / "livemix.wav", tmp / "ffmpeg.wav"
    lm_cmd = livemix_command(session_path, lm_out)
    ff_cmd = ffmpeg_command(session, ff_out)
    best = {"livemix": None, "ffmpeg": None}
    for rep in range(reps):
        for name, cmd in (("livemix", lm_cmd), ("ffmpeg", ff_cmd)):
            log(f"whole process rep {rep + 1}/{reps}: {name}")
            r = run_timed(cmd)
            if best[name] is None or r["wall_s"] < best[name]["wall_s"]:
                best[name] = r
    result = {}
    for name, r in best.items():
        out = sf.read(lm_out if name == "livemix" else ff_out, dtype="float32")[0]
        result[name] = {"wall_s": round(r["wall_s"], 3), "cpu_s": round(r["cpu_s"], 3),
                        "realtime_factor": round(seconds / r["wall_s"], 1),
                        "output": signal_stats(out)}
    result["livemix"]["stdout"] = best["livemix"]["stdout"].strip()
    result["livemix"]["command"] = " ".join(lm_cmd)
    result["ffmpeg"]["filtergraph"] = ffmpeg_filtergraph(session)
    result["livemix_over_ffmpeg"] = round(result["livemix"]["realtime_factor"]
                                          / result["ffmpeg"]["realtime_factor"], 2)
    return result


def bench_offline_render(session, commands, tmp: Path, reps: int) -> dict:
    """engine.backends.offline.render in this process (automation included, file I/O
    included, start-up excluded), at the session's block size."""
    best = None
    for _ in range(reps):
        r = render(session, str(tmp / "inprocess.wav"), subtype="FLOAT", commands=commands)
        if best is None or r.seconds < best.seconds:
            best = r
    return {"blocksize": session.engine.blocksize, "wall_s": round(best.seconds, 4),
            "realtime_factor": round(best.realtime_factor, 1),
            "peak_dbfs": round(best.peak_dbfs, 2), "notices": best.notices}


# --- 5. start-up and compile time ------------------------------------------------------

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from engine.session import load_session
from engine.backends.offline import render
t1 = time.perf_counter()
render(load_session({session!r}), {out!r}, subtype="FLOAT")
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "first_render_s": t2 - t1}}))
"""


def startup_probe(session_path: Path, out_path: Path, cache_dir: Path) -> dict:
    """A fresh interpreter imports the engine and renders ``session_path`` once, with
    NUMBA_CACHE_DIR=cache_dir. Wall time of the whole process and of each step, seconds."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    code = _PROBE.format(root=str(ROOT), session=str(session_path), out=str(out_path))
    r = run_timed([sys.executable, "-c", code], env=env)
    inner = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"process_wall_s": round(r["wall_s"], 3), "cpu_s": round(r["cpu_s"], 3),
            "import_s": round(inner["import_s"], 3),
            "first_render_s": round(inner["first_render_s"], 3)}


def bench_startup(short_session: Path, tmp: Path, reps: int, cold_compile: bool = True) -> dict:
    """Section 5: numba compile cold vs cached (unless not ``cold_compile``: a minute of
    compiling), and `livemix render` on 1 s, warm cache."""
    cold = cached = None
    if cold_compile:
        cache = tmp / "numba-cold-cache"
        cache.mkdir()
        log("start-up: cold numba cache (compiles everything)")
        cold = startup_probe(short_session, tmp / "short-cold.wav", cache)
        log("start-up: same cache, now warm")
        cached = startup_probe(short_session, tmp / "short-cached.wav", cache)
    cmd = livemix_command(short_session, tmp / "short-cli.wav")
    run_timed(cmd)   # make sure the default cache is warm for this exact engine source
    walls = []
    for rep in range(max(reps, 3)):
        walls.append(run_timed(cmd)["wall_s"])
    python_only = min(run_timed([sys.executable, "-c", "pass"])["wall_s"] for _ in range(3))
    return {"cold_cache": cold, "cached": cached,
            "compile_s": round(cold["first_render_s"] - cached["first_render_s"], 3)
            if cold_compile else None,
            "livemix_render_1s_warm_cache_s": round(min(walls), 3),
            "livemix_render_1s_all_reps_s": [round(w, 3) for w in walls],
            "python_interpreter_start_s": round(python_only, 3)}


# --- report ------------------------------------------------------------------------

def machine_info() -> dict:
    import numba

    try:
        import pedalboard
        pb_version = pedalboard.__version__
    except ImportError:
        pb_version = None
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ff = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
            "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "numba": numba.__version__,
            "numpy": np.__version__, "pedalboard": pb_version,
            "soundfile": sf.__version__, "ffmpeg": ff.splitlines()[0] if ff else None,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def targets(inproc: dict, whole: dict, startup: dict) -> dict:
    out = {}
    for bs, goal in TARGET_RT.items():
        v = inproc["numba"][str(bs)]["realtime_factor"]
        out[f"numba_kernel_realtime_bs{bs}"] = {"target": f">= {goal:g}x", "value": v,
                                                "met": v >= goal}
    v = whole["livemix_over_ffmpeg"]
    out["whole_process_vs_ffmpeg"] = {"target": f">= {TARGET_VS_FFMPEG:g}x", "value": v,
                                      "met": v >= TARGET_VS_FFMPEG}
    v = startup["livemix_render_1s_warm_cache_s"]
    out["cached_startup_s"] = {"target": f"< {TARGET_STARTUP_S:g} s", "value": v,
                               "met": v < TARGET_STARTUP_S}
    v = inproc["metering"]["meters_vs_mix"]
    out["metering_vs_mix_32_tracks"] = {"target": "< 0.15", "value": v, "met": v < 0.15}
    out.update(strip_targets(inproc["strip"]))
    return out


def strip_targets(strip: dict) -> dict:
    """The strip section's goals: livemix against pedalboard's chain, the full strip's
    cost per sample on one track, and RNNoise's cost per channel (stated, no goal)."""
    out = {}
    for bs, goal in TARGET_STRIP_VS_PEDALBOARD.items():
        v = strip["vs_pedalboard"][str(bs)]["livemix_over_pedalboard"]
        out[f"strip_vs_pedalboard_bs{bs}"] = {"target": f">= {goal:g}x", "value": v,
                                              "met": v >= goal}
    one = strip["one_track"]
    v = one["full_strip_ns_per_sample"]
    out["strip_full_ns_per_sample"] = {"target": f"<= {TARGET_STRIP_NS:g} ns (worst block "
                                                 "size; method in strip.one_track)",
                                       "value": v, "met": v <= TARGET_STRIP_NS}
    out["strip_denoise_ns_per_sample_per_channel"] = {
        "target": "stated, no goal", "value": one.get("denoise_ns_per_sample_per_channel"),
        "met": None}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=None,
                    help="length of the reference session, seconds (default 60; 10 with --quick)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions, the best is reported (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="10 s session, 1 repetition")
    ap.add_argument("--no-cold-compile", action="store_true",
                    help="skip timing a compile into an empty numba cache (about a minute)")
    args = ap.parse_args(argv)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    reps = args.reps or (1 if args.quick else 3)
    if shutil.which("ffmpeg") is None:
        log("ffmpeg not found on PATH")
        return 1
    report = {"benchmark": "livemix render", "quick": args.quick, "seconds": seconds,
              "samplerate": SR, "reps": reps, "machine": machine_info()}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="livemix-bench-") as tmpname:
        tmp = Path(tmpname)
        log(f"generating {len(TRACKS)} stems of {seconds:g} s in {tmp}")
        stems = make_stems(seconds)
        write_stems(stems, tmp / "stems")
        write_stems({k: v[:, :SR] for k, v in stems.items()}, tmp / "stems-1s")
        session_path = write_session(tmp / "reference.toml", tmp / "stems")
        short_path = write_session(tmp / "short.toml", tmp / "stems-1s")
        session = load_session(session_path)
        commands = fader_automation(seconds)
        stem_list = [stems[t.name] for t in session.tracks]
        frames = round(seconds * SR)
        report["session"] = {
            "tracks": [{"name": n, "gain_db": g, "pan": p, "fader_automation": a}
                       for n, g, p, a in TRACKS],
            "ducking": DUCKING, "master": MASTER, "fader_commands": len(commands),
            "fader_step_s": AUTOMATION_STEP_S}

        log("warm-up (numba compile or cache load)")
        report["numba_first_call_in_process_s"] = round(
            sum(engine_warmup(session, bs) for bs in BLOCKSIZES), 3)
        report["numba_dispatch_us_per_run_blocks_call"] = round(
            dispatch_overhead_us(session, 256), 2)

        report.update(bench_in_process(session, stem_list, commands, frames, reps))
        npr = report["numpy"][str(BLOCKSIZES[0])]
        report["session"]["limiter"] = {
            "samples_starting_a_reduction": report["numba"][str(BLOCKSIZES[0])][
                "limiter_reduced_samples"],
            "fraction_gain_below_0.99": round(npr["limiter_gain_below_0.99_samples"] / frames, 4),
            "fraction_gain_below_1": round(npr["limiter_gain_below_unity_samples"] / frames, 4),
            "fraction_on_slow_path": round(npr["limiter_slow_path_samples"] / frames, 4)}

        report["engine_breakdown"] = engine_breakdown(session, commands, frames, reps)
        strip_s = min(seconds, STRIP_SECONDS_QUICK if args.quick else STRIP_SECONDS)
        log(f"channel strip ({strip_s:g} s)")
        strip_session = load_session(write_session(tmp / "strip.toml", tmp / "stems",
                                                   strip=True))
        report["strip"] = bench_strip(strip_session, stem_list, round(strip_s * SR), reps)
        log("metering cost (32 tracks, 128-frame blocks)")
        report["metering"] = metering_cost(session, stem_list, seconds, bs=128, reps=reps)
        log("offline render in process")
        report["offline_render_in_process"] = bench_offline_render(session, commands, tmp,
                                                                   reps)
        report["whole_process"] = bench_whole_process(session, session_path, tmp, seconds,
                                                      reps)
        report["startup"] = bench_startup(short_path, tmp, reps,
                                          cold_compile=not args.no_cold_compile)
    report["targets"] = targets(report, report["whole_process"], report["startup"])
    report["notes"] = NOTES
    report["benchmark_wall_s"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


NOTES = [
    "numba_kernel: run_blocks only; file reading, ring filling and command queueing are "
    "outside the timed region. Includes numba dispatch (see "
    "numba_dispatch_us_per_run_blocks_call, one call per ~0.5 s chunk).",
    "numpy: same definitions as the engine (fader ramps with exact command frames, pan law, "
    "ducking hold/attack/release, lookahead limiter, meters), stems in memory; "
    "vs_engine is the difference to the engine's output.",
    "pedalboard: fader commands take effect at block starts; the ducker is a Compressor "
    "keyed by the target itself (no sidechain in pedalboard); JUCE's Limiter has no "
    "lookahead and is not a hard ceiling.",
    "whole_process: `livemix render` reads no automation (the CLI has none), so both sides "
    "mix the static session; ffmpeg's ducker is sidechaincompress (ratio 20, dry/wet mix "
    "setting the -10 dB floor), its limiter alimiter with level=0.",
    "strip: pedalboard's chain is the nearest, not the same: its HighpassFilter is first "
    "order (6 dB/octave against livemix's 12), its NoiseGate an expander (ratio 10, no "
    "range, hold nor hysteresis), its Compressor has no knee; livemix's parameters glide "
    "on a 32-sample grid and its filters run in float64. Outputs are not compared. "
    "one_track differences are of best-of-N wall times on a shared machine: a stage's "
    "figure can be off by a few ns.",
]


if __name__ == "__main__":
    sys.exit(main())
