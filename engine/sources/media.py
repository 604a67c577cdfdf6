"""Decoders: audio files (libsndfile) and the audio of video clips (PyAV / FFmpeg).

Both give the same small interface, so a track's source does not care where
its samples come from::

    m = open_media(path, stream=None)   # SourceError naming the path if unusable
    m.samplerate, m.channels, m.frames  # Hz, 1 or 2, frames (None: unknown)
    x = m.read(n)                       # (k, channels) float32, k <= n; k == 0 at the end
    m.rewind(); m.close()

A video clip's audio stream (MP4, MOV, MKV, WebM; AAC, Opus, PCM, AC-3, any
codec FFmpeg decodes) is decoded packet by packet, converted to float and
folded to stereo by FFmpeg's swresample (a 5.1 AC-3 stream gets FFmpeg's
standard downmix), and placed on the clip's timeline: silence before a stream
that starts late, nothing before time 0, nothing past the stream's declared
duration (the encoder's padding of the last frame). Memory: one decoded frame
and what ``read`` asks for. Producer threads / processes only.
"""
from __future__ import annotations

import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SourceError

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
SHORT_S = 0.05     # audio this much shorter than its clip declares is reported


def is_video(path) -> bool:
    """True when ``path`` is decoded through PyAV (by its extension)."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def open_media(path, stream: int | None = None):
    """A decoder for an audio file or a video clip's audio stream ``stream``
    (counted from 0 among the clip's audio streams, as ffmpeg's ``0:a:N``)."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory")
    if is_video(path):
        return VideoAudio(path, stream)
    if stream is not None:
        raise SourceError(f"{path}: stream = {stream} is for video clips")
    return SoundFileAudio(path)


class SoundFileAudio:
    """An audio file through libsndfile."""

    def __init__(self, path: Path):
        import soundfile as sf
        self.path = path
        try:
            self._f = sf.SoundFile(str(path))
        except Exception as e:
            reason = str(e).split("': ")[-1].strip() or type(e).__name__
            raise SourceError(f"{path}: cannot open as audio ({reason.rstrip('.')})") from None
        if self._f.channels > 2:
            self._f.close()
            raise SourceError(f"{path}: has {self._f.channels} channels (livemix plays mono "
                              "and stereo files; mix it down to stereo first)")
        self.samplerate = self._f.samplerate
        self.channels = self._f.channels
        self.frames = self._f.frames
        self.notices: list[str] = []

    def read(self, n: int) -> np.ndarray:
        try:
            return self._f.read(n, dtype="float32", always_2d=True)
        except Exception as e:
            raise SourceError(f"{self.path}: read failed ({e})") from None

    def rewind(self) -> None:
        self._f.seek(0)

    def close(self) -> None:
        self._f.close()


def load_av():
    """PyAV, with FFmpeg's own log silenced (errors reach the user as one line from us)."""
    try:
        import av
    except ImportError:   # pragma: no cover - a dependency of the package
        raise SourceError("video clips need PyAV: pip install av") from None
    av.logging.set_level(av.logging.PANIC)
    return av


def reason(e: Exception) -> str:
    """FFmpeg's error text, short: no path, no trailing period."""
    text = getattr(e, "strerror", None) or str(e)
    return text.split(": '")[0].strip().rstrip(".") or type(e).__name__


def audio_streams(container) -> list[str]:
    """One line per audio stream of an open container: 'N: codec, channels, rate'."""
    out = []
    for i, s in enumerate(container.streams.audio):
        cc = s.codec_context
        lang = s.metadata.get("language")
        out.append(f"{i}: {cc.name if cc else '?'} {s.channels} ch {s.rate} Hz"
                   + (f" {lang}" if lang else ""))
    return out


class VideoAudio:
    """One audio stream of a video clip, decoded as a stream."""

    def __init__(self, path: Path, stream: int | None):
        self.path = path
        self.index = 0 if stream is None else int(stream)
        self.notices: list[str] = []
        self.corrupt_packets = 0
        self._open()

    def _open(self) -> None:
        av = load_av()
        path = self.path
        try:
            self._c = av.open(str(path))
        except Exception as e:
            raise SourceError(f"{path}: not a readable video ({reason(e)})") from None
        audio = self._c.streams.audio
        if not audio:
            self._c.close()
            raise SourceError(f"{path}: has no audio stream")
        if self.index >= len(audio) or self.index < 0:
            have = "; ".join(audio_streams(self._c))
            self._c.close()
            raise SourceError(f"{path}: stream = {self.index}, but the clip has "
                              f"{len(audio)} audio stream{'s' if len(audio) != 1 else ''} "
                              f"(counted from 0: {have})")
        s = self._s = audio[self.index]
        cc = s.codec_context
        if cc is None or not s.rate:
            name = s.codec.name if getattr(s, "codec", None) else "unknown"
            self._c.close()
            raise SourceError(f"{path}: audio stream {self.index} ({name}) cannot be decoded")
        self.samplerate = int(s.rate)
        self.channels = 1 if s.channels == 1 else 2
        self.codec = cc.name
        tb = s.time_base or Fraction(1, self.samplerate)
        start = s.start_time or 0
        # The clip's time 0 is its first picture (a video's audio may start a little
        # before it, an encoder's pre-roll, or after it); an audio-only file's, its audio.
        pictures = self._c.streams.video
        zero = start * tb
        if pictures and pictures[0].start_time is not None:
            zero = pictures[0].start_time * pictures[0].time_base
        self._origin = round(zero * self.samplerate)
        # Timestamps are only as fine as the time base (Matroska: 1 ms = 48 samples):
        # a frame is placed by its timestamp only when it is off by more than that.
        self._slack = math.ceil(tb * self.samplerate) + 1
        if s.duration:
            end = (start + s.duration) * tb
        elif self._c.duration:
            end = Fraction(self._c.duration, 1_000_000) + Fraction(self._c.start_time or 0,
                                                                   1_000_000)
        else:
            end = None
        self.frames = None if end is None else max(0, round((end - zero) * self.samplerate))
        self._resampler = av.AudioResampler(format="fltp",
                                            layout="mono" if self.channels == 1 else "stereo",
                                            rate=self.samplerate)
        self._frames = self._decode()
        self._pending = np.zeros((0, self.channels), np.float32)
        self._pos = 0          # clip frames handed out so far
        self._end = False
        # Decode the first frame now: an unsupported codec fails here, naming the clip.
        try:
            self._fill(1)
        except BaseException:
            self.close()
            raise
        if self._end and self._pos == 0 and len(self._pending) == 0:
            self.close()
            raise SourceError(f"{path}: audio stream {self.index} ({self.codec}) holds no "
                              "decodable audio")

    def _decode(self):
        av = load_av()
        for packet in self._c.demux(self._s):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                if packet.size == 0:
                    continue
                self.corrupt_packets += 1
                if self.corrupt_packets == 1:
                    self.notices.append(f"{self.path}: corrupt audio skipped ({reason(e)})")
                if self.corrupt_packets > 50 and self._pos == 0:
                    raise SourceError(f"{self.path}: audio stream {self.index} "
                                      f"({self.codec}) cannot be decoded "
                                      f"({reason(e)})") from None
                continue
            for frame in frames:
                for out in self._resampler.resample(frame):
                    yield out
        for out in self._resampler.resample(None):
            yield out

    def _fill(self, n: int) -> None:
        """Decode until ``n`` frames are pending or the stream ends."""
        parts = [self._pending]
        have = len(self._pending)
        while have < n and not self._end:
            try:
                frame = next(self._frames)
            except StopIteration:
                self._end = True
                self._check_length(self._pos + have)
                break
            except SourceError:
                raise
            except Exception as e:
                raise SourceError(f"{self.path}: audio decode failed ({reason(e)})") from None
            x = frame.to_ndarray().T
            if frame.pts is not None:            # place the frame on the clip's timeline
                at = round(frame.pts * frame.time_base * self.samplerate) - self._origin
                due = self._pos + have
                if at - due > self._slack:       # a gap (or a late start): silence
                    parts.append(np.zeros((at - due, self.channels), np.float32))
                    have += at - due
                elif due - at > self._slack and self._pos + have == 0:
                    x = x[min(len(x), due - at):]   # samples before time 0
            parts.append(np.ascontiguousarray(x, dtype=np.float32))
            have += len(x)
        self._pending = np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _check_length(self, total: int) -> None:
        """At the end of the stream: a clip whose audio stops well short of the length
        it declares (a truncated download) is said, and its length corrected."""
        if self.frames is not None and self.frames - total > max(self._slack,
                                                                  SHORT_S * self.samplerate):
            self.notices.append(f"{self.path}: its audio ends at {total / self.samplerate:.2f}"
                                f" s of the {self.frames / self.samplerate:.2f} s it declares "
                                "(truncated?); the rest is silent")
            self.frames = total

    def read(self, n: int) -> np.ndarray:
        self._fill(n)
        x, self._pending = self._pending[:n], self._pending[n:]
        if self.frames is not None and self._pos + len(x) > self.frames:
            x = x[:max(0, self.frames - self._pos)]   # the last frame's padding
            self._pending = self._pending[:0]
            self._end = True
        self._pos += len(x)
        return x

    def rewind(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        try:
            self._c.close()
        except Exception:
            pass


MEASURE_CACHE_ENTRIES = 2000    # remembered measurements (about 150 bytes each)


def _measure_cache() -> Path:
    from .. import cache_dir
    return Path(cache_dir()) / "measured.json"


def measure(path, stream: int | None = None):
    """(integrated loudness LUFS, frames, sample rate Hz) of a file or clip's audio.

    Decoded once, then remembered per file (path, size, modification time, stream)
    in ``~/.cache/livemix/measured.json``, so renders and live starts of a session
    with many clips do not decode each clip twice every time. Producer side (start
    of a render or the reader process); an unreadable cache is ignored."""
    path = Path(path)
    st = path.stat() if path.exists() else None
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{stream}" if st else None
    cache = _measure_cache()
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
        hit = known.get(key) if isinstance(known, dict) else None
        if hit is not None:
            return (-math.inf if hit[0] is None else float(hit[0])), int(hit[1]), int(hit[2])
    except (OSError, ValueError, TypeError, IndexError):
        known = {}
    result = _measure(path, stream)
    if key is not None:
        if not isinstance(known, dict):
            known = {}
        known[key] = [result[0] if math.isfinite(result[0]) else None, result[1], result[2]]
        for old in list(known)[:max(0, len(known) - MEASURE_CACHE_ENTRIES)]:
            del known[old]
        try:                          # written whole, then renamed: readers never see half
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps(known), encoding="utf-8")
            os.replace(tmp, cache)
        except OSError:
            pass
    return result


def _measure(path: Path, stream: int | None):
    """measure() without the cache: decode and meter the whole stream."""
    from ..dsp.meters import integrated_lufs, meter_feed, new_meter
    m = open_media(path, stream)
    chunk = 65536
    try:
        meter = new_meter(m.samplerate, m.channels, chunk)
        buf = np.zeros((m.channels, chunk), np.float32)
        total = 0
        while True:
            x = m.read(chunk)
            if len(x) == 0:
                break
            buf[:, :len(x)] = x.T
            bad = ~np.isfinite(buf[:, :len(x)])
            if bad.any():
                buf[:, :len(x)][bad] = 0.0
            meter_feed(meter, buf, 0, len(x))
            total += len(x)
        return integrated_lufs(meter), total, m.samplerate
    finally:
        m.close()
