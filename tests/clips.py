"""Small video clips with known audio, made by the real ffmpeg command line."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

VIDEO = {".mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
         ".mov": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
         ".mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
         ".webm": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"]}
AUDIO = {"aac": ["-c:a", "aac", "-b:a", "192k"], "opus": ["-c:a", "libopus", "-b:a", "128k"],
         "pcm": ["-c:a", "pcm_f32le"], "pcm16": ["-c:a", "pcm_s16le"],
         "ac3": ["-c:a", "ac3", "-b:a", "384k"]}


def need_ffmpeg():
    import pytest
    if not shutil.which("ffmpeg") or not shutil.which("ffprobe"):
        pytest.fail("ffmpeg/ffprobe are not installed (apt-get install ffmpeg): the video "
                    "tests make their clips with it")


def sine(freq, seconds, sr=48000, amp=0.5, channels=2, phase=0.0):
    t = np.arange(round(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t + phase)
    return np.repeat(x[:, None], channels, axis=1)


def noise(seconds, sr=48000, amp=0.1, seed=1, channels=2):
    return amp * np.random.default_rng(seed).standard_normal((round(seconds * sr), channels))


def make_clip(path, audio=None, sr=48000, codec="aac", seconds=None, size="160x120",
              extra_audio=(), rate=25):
    """Write a clip: a test picture ``seconds`` long (default: the audio's length) and the
    audio arrays (frames, channels) encoded with ``codec``; ``audio=None``: no sound."""
    path = Path(path)
    if seconds is None:
        seconds = len(audio) / sr
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    wavs = []
    for k, a in enumerate([audio, *extra_audio] if audio is not None else []):
        wav = path.with_name(f"{path.stem}.src{k}.wav")
        sf.write(wav, np.asarray(a, np.float32), sr, subtype="FLOAT")
        wavs.append(wav)
        cmd += ["-i", str(wav)]
    cmd += ["-map", "0:v"] + sum((["-map", f"{k + 1}:a"] for k in range(len(wavs))), [])
    cmd += VIDEO[path.suffix.lower()]
    if wavs:
        cmd += AUDIO[codec]
    cmd += ["-t", str(seconds), str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    for w in wavs:
        w.unlink()
    return path


def ffprobe(path) -> dict:
    """ffprobe's streams and format of ``path`` (JSON)."""
    p = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
                        str(path)], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def packets(path, kind="video", index=0):
    """(pts seconds, bytes) of every packet of a clip's stream, through PyAV."""
    import av
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[index]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(s)
                if p.size and p.pts is not None]


def decode_audio(path, index=0):
    """(samples (frames, channels) float32, rate) of a clip's audio stream, through PyAV."""
    import av
    out = []
    with av.open(str(path)) as c:
        s = c.streams.audio[index]
        rate = s.rate
        r = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        for f in c.decode(s):
            for g in r.resample(f):
                out.append(g.to_ndarray().T)
    return np.concatenate(out), rate


_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410)]


def speech(seconds, sr=48000, rms_db=-20.0, seed=1, syllable=0.25):
    """A voice-like mono signal at ``rms_db`` dBFS RMS: a glottal pulse train (f0 wandering
    over 125-185 Hz, with jitter and breath noise) through five formant resonators,
    cycling through five vowels in ``syllable``-long syllables (as in test_denoise)."""
    from scipy.signal import lfilter
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    f0 = 150 + 25 * np.sin(2 * np.pi * 0.5 * t) + 10 * np.sin(2 * np.pi * 1.7 * t)
    f0 *= 1 + 0.1 * lfilter([0.01], [1, -0.99], rng.standard_normal(n))
    frac = np.cumsum(f0 / sr) % 1.0
    flow = np.where(frac < 0.6, 0.5 * (1 - np.cos(np.pi * frac / 0.6)),
                    np.maximum(np.cos(np.pi * (frac - 0.6) / 0.8), 0.0))
    src = np.diff(flow, prepend=0.0)
    src = src / np.std(src) + 0.03 * rng.standard_normal(n) * flow
    out = np.zeros(n)
    m = round(syllable * sr)
    for s, a in enumerate(range(0, n, m)):
        y = src[a:a + m]
        for f, bw in zip(_VOWELS[s % len(_VOWELS)] + (3300, 3750), (90, 110, 170, 250, 300)):
            r = np.exp(-np.pi * bw / sr)
            b, c = 2 * r * np.cos(2 * np.pi * f / sr), -r * r
            y = lfilter([1 - b - c], [1, -b, -c], y)
        out[a:a + m] = y * np.sin(np.pi * np.arange(len(y)) / m) ** 0.5
    return out * 10 ** (rms_db / 20) / np.sqrt(np.mean(out ** 2))


def phrases(pattern, sr=48000, rms_db=-20.0, seed=1, channels=2):
    """Speech in phrases with gaps of digital silence: ``pattern`` alternates phrase and
    gap lengths in seconds, starting with a phrase. Returns (audio (frames, channels),
    gap mask (frames,))."""
    parts, gaps = [], []
    for k, sec in enumerate(pattern):
        n = round(sec * sr)
        if k % 2 == 0:
            parts.append(speech(sec, sr, rms_db, seed + k))
        else:
            parts.append(np.zeros(n))
        gaps.append(np.full(n, k % 2 == 1))
    x = np.concatenate(parts)
    return np.repeat(x[:, None], channels, axis=1), np.concatenate(gaps)
