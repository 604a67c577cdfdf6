"""The demo: synthetic stems in the shape of a real job, and ``livemix demo``.

The stems are generated (seeded, so every machine gets the same files):
  voice.wav      a voice-over: formant-synthesised syllables in three phrases
  music.flac     a music bed: a four-chord pad with a bass line
  clip.mp4       an AI clip: a drifting sky (H.264, 320x180) whose native audio is
                 wind and room noise, AAC at 44.1 kHz (so the demo exercises the
                 video decoder and the resampler); the demo's takes come out as
                 copies of it with the mix (``[output] video``)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

DEMO_SECONDS = 20.0
PHRASES = ((2.0, 6.0), (8.0, 12.5), (14.5, 18.0))   # when the voice speaks, seconds
STEMS = ("voice.wav", "music.flac", "clip.mp4")

# (F1, F2, F3) in Hz for a few vowels
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410))


def _voice(sr: int, seconds: float, rng) -> np.ndarray:
    n = int(sr * seconds)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for start, end in PHRASES:
        pos = start
        while pos < end - 0.15:
            dur = rng.uniform(0.12, 0.28)
            a, b = int(pos * sr), int(min(pos + dur, end) * sr)
            seg_t = t[a:b] - pos
            f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * (t[a:b]))) * rng.uniform(0.9, 1.15)
            phase = 2 * np.pi * np.cumsum(f0) / sr
            formants = _VOWELS[rng.integers(len(_VOWELS))]
            seg = np.zeros(b - a)
            for h in range(1, 34):
                fh = h * f0.mean()
                if fh > 4000:
                    break
                amp = sum(np.exp(-((fh - f) / 90.0) ** 2) * (0.8 ** k)
                          for k, f in enumerate(formants)) + 0.02
                seg += amp / h ** 0.5 * np.sin(h * phase)
            env = np.sin(np.pi * np.clip(seg_t / dur, 0, 1)) ** 1.5
            out[a:b] += seg * env
            pos += dur + rng.uniform(0.02, 0.12)
    return (out / np.abs(out).max() * 0.5).astype(np.float32)   # -6 dBFS peak


def _music(sr: int, seconds: float) -> np.ndarray:
    n = int(sr * seconds)
    t = np.arange(n) / sr
    chords = ((220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (261.63, 329.63, 392.0),
              (196.0, 246.94, 293.66))
    left = np.zeros(n)
    right = np.zeros(n)
    for i, start in enumerate(np.arange(0, seconds, 2.0)):
        a, b = int(start * sr), min(n, int((start + 2.0) * sr))
        seg = t[a:b] - start
        env = np.minimum(1, seg / 0.3) * np.minimum(1, (2.0 - seg) / 0.3)
        chord = chords[i % len(chords)]
        for k, f in enumerate(chord):
            tone = sum(np.sin(2 * np.pi * f * h * seg + k) / h ** 1.5 for h in (1, 2, 3))
            pan = (k - 1) * 0.5
            left[a:b] += tone * env * (1 - pan) * 0.5
            right[a:b] += tone * env * (1 + pan) * 0.5
        bass = np.sin(2 * np.pi * chord[0] / 2 * seg) * env
        left[a:b] += bass * 0.6
        right[a:b] += bass * 0.6
    x = np.stack([left, right], axis=1)
    return (x / np.abs(x).max() * 0.35).astype(np.float32)     # about -9 dBFS peak


def _ambience(sr: int, seconds: float, rng) -> np.ndarray:
    n = int(sr * seconds)
    noise = rng.standard_normal((n, 2))
    # wind: low-passed noise (cumulative sum, leaky) with a slow swell
    wind = np.empty_like(noise)
    spec = np.fft.rfft(noise, axis=0)
    f = np.fft.rfftfreq(n, 1 / sr)[:, None]
    spec *= 1.0 / np.sqrt(1.0 + (f / 400.0) ** 2) / np.sqrt(1.0 + (30.0 / (f + 1e-9)) ** 2)
    wind[:] = np.fft.irfft(spec, n, axis=0)
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * np.arange(n) / sr / 7.0)[:, None]
    x = wind * swell
    return (x / np.abs(x).max() * 0.25).astype(np.float32)     # about -12 dBFS peak


def _clip(path: Path, audio: np.ndarray, sr: int, seconds: float, fps: int = 25) -> None:
    """Encode the demo clip with PyAV: a drifting sky gradient and ``audio`` as AAC."""
    from fractions import Fraction

    import av
    w, h = 320, 180
    with av.open(str(path), "w") as out:
        try:
            v = out.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        except Exception:                       # a PyAV built without x264
            v = out.add_stream("mpeg4", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = out.add_stream("aac", rate=sr, layout="stereo")
        a.bit_rate = 160_000
        y = np.linspace(0.0, 1.0, h)[:, None, None]
        x = np.linspace(0.0, 1.0, w)[None, :, None]
        sky, ground = np.array([70.0, 120.0, 200.0]), np.array([60.0, 80.0, 50.0])
        for k in range(int(seconds * fps)):
            horizon = 0.62 + 0.03 * np.sin(2 * np.pi * k / fps / 7.0)
            cloud = 25.0 * np.sin(2 * np.pi * (x * 3.0 + k / fps / 10.0)) * (y < horizon)
            img = np.where(y < horizon, sky + 60.0 * y, ground) + cloud
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8),
                                               format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        step = 1 << 14
        for i in range(0, len(audio), step):
            chunk = np.ascontiguousarray(audio[i:i + step].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = sr, i, Fraction(1, sr)
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)


def make_stems(directory, seconds: float = DEMO_SECONDS, samplerate: int = 48000) -> Path:
    """Write the demo stems into ``directory`` (created if needed); returns it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261125)
    sf.write(d / "voice.wav", _voice(samplerate, seconds, rng), samplerate, subtype="PCM_24")
    sf.write(d / "music.flac", _music(samplerate, seconds), samplerate, subtype="PCM_24")
    _clip(d / "clip.mp4", _ambience(44100, seconds, rng), 44100, seconds)
    return d


def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"


def ensure_stems(directory=None) -> Path:
    """Generate the demo stems unless they are already there."""
    d = Path(directory) if directory else examples_dir() / "stems"
    if not all((d / s).exists() for s in STEMS):
        print(f"livemix: generating the demo stems in {d}")
        make_stems(d)
    return d


def run_demo(args) -> int:
    """Play the demo session live (or on the virtual backend) and record a take."""
    from .cli import run_live
    from .errors import LivemixError
    from .session import load_session

    session_path = examples_dir() / "demo.toml"
    if not session_path.exists():
        raise LivemixError(f"{session_path}: the demo session is missing "
                           "(run `livemix demo` from a livemix source checkout)")
    ensure_stems(session_path.parent / "stems")
    session = load_session(session_path)
    if args.duration is None:
        args.duration = DEMO_SECONDS
    if not getattr(args, "midi", None) and not getattr(args, "midi_virtual", None):
        from controllers.virtual import DEMO_RIDE, ride
        args.script = ride(DEMO_RIDE)      # a scripted controller rides the faders
    print(f"livemix demo: {session_path.name}: a voice-over, a music bed and an AI clip's "
          "native ambience; music and ambience duck 10 dB whenever the voice speaks, a "
          "scripted MIDI controller rides the music and ambience faders, and the take "
          "comes out as the clip with the mix")
    return run_live(session, args)
