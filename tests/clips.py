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
