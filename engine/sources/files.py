"""Track sources: audio files, video clips' audio and sequences of clips, streamed
into a source ring in session time.

``FileSource`` plays one file or clip: silence until ``offset_s``, then the
media (looped if asked), resampled to the session rate by libsoxr
(python-soxr, "HQ"), mono spread to both channels, levelled to
``match_loudness`` when the track asks. ``ClipsSource`` strings clips
together the way an edit does: each clip starts at its ``at_s`` (in sync with
its picture), fades in over ``crossfade_ms``, and is cut where the next clip
starts, fading out over the same time past the cut (an equal-power crossfade:
sin / cos, so uncorrelated ambiences keep their loudness through the cut); a
clip that ends on its own before the next one fades out over its last
``crossfade_ms``. Sources read ``CHUNK`` input frames at a time, whatever the
engine's block size, so the signal does not depend on how the engine is driven.

Memory: a source holds one chunk of input and its resampled output at most
(``CHUNK`` frames, 512 KiB as stereo float32; a clip sequence one per clip
that is sounding); the ring it fills is the read-ahead
(``engine.rt.state.READ_AHEAD_S``). A file of any length costs that, no more.
Called from one producer per source (the offline loop, or the reader process).
"""
from __future__ import annotations

import math

import numpy as np

from ..dsp.layout import S_EOF, S_WRITE
from ..rt.rings import ring_push, ring_space
from .media import measure, open_media

CHUNK = 65536          # input frames per read (fewer, larger reads: half the decode cost of 8192)
MAX_MATCH_GAIN_DB = 24.0   # match_loudness raises a quiet clip by at most this (dB)


def make_source(track, samplerate: int, true_peak: bool = False):
    """The source of a file, video or clips track (None for a live input)."""
    if track.input:
        return None
    if track.clips:
        return ClipsSource(track, samplerate, true_peak)
    return FileSource(track, samplerate, true_peak)


def level_gain(lufs: float, target_lufs: float, what: str, notices: list) -> float:
    """Linear gain that brings integrated loudness ``lufs`` to ``target_lufs`` (capped
    at +MAX_MATCH_GAIN_DB; 1.0 for silence), with a notice naming ``what`` if so."""
    if not math.isfinite(lufs):
        notices.append(f"{what} is silent (no gated loudness): match_loudness leaves it "
                       "as it is")
        return 1.0
    db = target_lufs - lufs
    if db > MAX_MATCH_GAIN_DB:
        notices.append(f"{what} measures {lufs:.1f} LUFS: raised by "
                       f"{MAX_MATCH_GAIN_DB:.0f} dB at most, not {db:.1f}")
        db = MAX_MATCH_GAIN_DB
    return 10.0 ** (db / 20.0)


class _Source:
    """A timeline of stereo float32 chunks pushed into a source ring."""

    def __init__(self, track, samplerate: int, true_peak: bool):
        self.track = track
        self.samplerate = samplerate
        self._pending = np.zeros((0, 2), np.float32)
        self._done = False
        self.nonfinite = 0          # NaN/Inf samples replaced by 0
        self.notices: list[str] = []
        self._meter = None
        if true_peak:
            from ..dsp.meters import new_meter
            self._meter = new_meter(samplerate, 2, CHUNK)
            self._mbuf = np.zeros((2, CHUNK), np.float32)

    def _next(self) -> np.ndarray:  # pragma: no cover - subclasses
        """The next chunk of the timeline, (k, 2) float32; sets ``_done`` at the end."""
        raise NotImplementedError

    def chunks(self):
        """The whole timeline, chunk by chunk ((k, 2) float32), outside any ring: for
        analysis and tests. Producer thread."""
        while not self._done:
            x = self._next()
            if len(x):
                yield x

    def _scrub(self, x: np.ndarray, name) -> np.ndarray:
        bad = ~np.isfinite(x)
        if bad.any():
            if self.nonfinite == 0:
                self.notices.append(f"track {self.track.name!r}: {name} contains "
                                    "NaN/Inf samples; they play as silence")
            self.nonfinite += int(bad.sum())
            x[bad] = 0.0
        return x

    def _measure(self, x: np.ndarray) -> None:
        """Raise ``true_peak`` with this chunk (the reader's decode, not the audio thread)."""
        from ..dsp.meters import tp_max
        buf = self._mbuf
        for a in range(0, len(x), CHUNK):
            n = min(CHUNK, len(x) - a)
            buf[:, :n] = x[a:a + n].T
            tp_max(self._meter, buf, 0, n)

    @property
    def true_peak(self) -> float:
        """The source's true peak so far (linear; 0.0 when not measured)."""
        from ..dsp.meters import MS_TP
        return float(self._meter.state[MS_TP]) if self._meter is not None else 0.0

    def fill(self, ring, pos, until: int | None = None) -> None:
        """Push frames into the ring until it is full, the track ends, or it holds
        frames up to session frame ``until``. Never blocks. Producer thread."""
        while True:
            if until is not None and int(pos[S_WRITE]) >= until:
                return
            if len(self._pending) == 0:
                if self._done:
                    if pos[S_EOF] < 0:
                        pos[S_EOF] = pos[S_WRITE]
                    return
                self._pending = self._next()
                if self._meter is not None and len(self._pending):
                    self._measure(self._pending)
                continue
            if ring_space(pos, ring.shape[1]) == 0:
                return
            k = ring_push(ring, pos, self._pending)
            self._pending = self._pending[k:]


class _Stream:
    """One medium decoded, resampled to the session rate, as stereo, times ``gain``."""

    def __init__(self, path, stream, samplerate: int, gain: float = 1.0):
        self.path = path
        self.media = open_media(path, stream)
        self.rate = self.media.samplerate
        self.gain = gain
        self.samplerate = samplerate
        self._resampler = None
        if self.rate != samplerate:
            import soxr
            self._resampler = soxr.ResampleStream(self.rate, samplerate, 2,
                                                  dtype="float32", quality="HQ")
        self.done = False

    @property
    def frames(self) -> int | None:
        """Session-rate frames of the medium (None: unknown until decoded)."""
        n = self.media.frames
        if n is None or self._resampler is None:
            return n
        return round(n * self.samplerate / self.rate)

    def read(self, n: int, loop: bool = False) -> np.ndarray:
        """Up to ``n`` input frames (more or fewer after resampling), (k, 2) float32."""
        x = self.media.read(n)
        if len(x) < n and loop and (self.media.frames or len(x)):
            parts, have = [x], len(x)
            while have < n:
                self.media.rewind()
                y = self.media.read(n - have)
                if len(y) == 0:
                    break
                parts.append(y)
                have += len(y)
            x = np.concatenate(parts)
        last = len(x) < n
        if x.shape[1] == 1:
            x = np.repeat(x, 2, axis=1)
        if self.gain != 1.0:
            x = x * np.float32(self.gain)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        self.done = last
        return x

    @property
    def notices(self) -> list[str]:
        return self.media.notices

    def close(self) -> None:
        self.media.close()


class FileSource(_Source):
    """One track's file or video clip, streamed into its source ring."""

    def __init__(self, track, samplerate: int, true_peak: bool = False):
        """true_peak: measure the source's true peak as it is decoded (``true_peak``)."""
        super().__init__(track, samplerate, true_peak)
        gain = 1.0
        if track.match_loudness is not None:
            lufs, _, _ = measure(track.file, track.stream)
            gain = level_gain(lufs, track.match_loudness,
                              f"track {track.name!r}: {track.file.name}", self.notices)
        self._s = _Stream(track.file, track.stream, samplerate, gain)
        self._frames = self._s.frames
        if self._frames is None and not track.loop:   # a clip that does not say: count
            _, n, rate = measure(track.file, track.stream)
            self._frames = round(n * samplerate / rate)
        self.offset_frames = round(track.offset_s * samplerate)
        self._produced = 0          # timeline frames produced so far

    @property
    def length_frames(self) -> int | None:
        """Session frames until this track ends (offset included); None when it loops
        or the clip does not say how long it is."""
        n = self._s.frames
        if n is not None and self._frames is not None:
            n = min(n, self._frames)          # a truncated clip, once decoded, says so
        n = self._frames if n is None else n
        if self.track.loop or n is None:
            return None
        return self.offset_frames + n

    def _next(self) -> np.ndarray:
        if self._produced < self.offset_frames:
            k = min(CHUNK, self.offset_frames - self._produced)
            self._produced += k
            return np.zeros((k, 2), np.float32)
        x = self._scrub(self._s.read(CHUNK, self.track.loop), self.track.file)
        self._done = self._s.done
        self._produced += len(x)
        self.notices.extend(n for n in self._s.notices if n not in self.notices)
        return x

    def close(self) -> None:
        self._s.close()


class ClipsSource(_Source):
    """A sequence of clips on one track: cut at each ``at_s``, crossfaded."""

    def __init__(self, track, samplerate: int, true_peak: bool = False):
        super().__init__(track, samplerate, true_peak)
        self.fade = max(1, round(track.crossfade_ms * samplerate / 1000.0))
        self._spans = []            # [start, stop) session frames per clip
        self._gains = []
        for clip in track.clips:
            gain, n = 1.0, None
            if track.match_loudness is None:          # the length the clip declares
                m = open_media(clip.path, clip.stream)
                if m.frames is not None:
                    n = round(m.frames * samplerate / m.samplerate)
                m.close()
            if n is None:                             # measured: loudness and length
                lufs, frames, rate = measure(clip.path, clip.stream)
                n = round(frames * samplerate / rate)
                if track.match_loudness is not None:
                    gain = level_gain(lufs, track.match_loudness,
                                      f"track {track.name!r}: {clip.path.name}", self.notices)
            self._spans.append([round(clip.at_s * samplerate), n])
            self._gains.append(gain)
        for k, span in enumerate(self._spans):
            start, n = span
            cut = self._spans[k + 1][0] if k + 1 < len(self._spans) else None
            stop = start + n if cut is None else min(start + n, cut + self.fade)
            span[1] = stop
        self._open = {}             # clip index -> [_Stream, its pending frames, clip frame]
        self._produced = 0

    @property
    def length_frames(self) -> int:
        """Session frames until the last clip has faded out."""
        return max(stop for _, stop in self._spans)

    @property
    def spans_s(self) -> list[tuple[float, float]]:
        """(start, stop) of each clip in session seconds, fades included."""
        return [(a / self.samplerate, b / self.samplerate) for a, b in self._spans]

    def _clip_audio(self, k: int, frm: int, n: int) -> np.ndarray:
        """Clip k's session-rate audio for clip frames [frm, frm + n), (n, 2), zero-padded."""
        if k not in self._open:
            clip = self.track.clips[k]
            self._open[k] = [_Stream(clip.path, clip.stream, self.samplerate,
                                     self._gains[k]), np.zeros((0, 2), np.float32), 0]
        s, pend, at = self._open[k]
        assert frm == at, (frm, at)            # clips are read in order
        while len(pend) < n and not s.done:
            pend = np.concatenate([pend, self._scrub(s.read(CHUNK), s.path)])
        out = np.zeros((n, 2), np.float32)
        take = min(n, len(pend))
        out[:take] = pend[:take]
        self._open[k] = [s, pend[take:], at + n]
        return out

    def _envelope(self, k: int, t: np.ndarray) -> np.ndarray:
        """Fade weight of clip k at session frames t: sin fade-in over the first
        ``fade`` frames, cos fade-out over the last ``fade`` (equal power)."""
        start, stop = self._spans[k]
        f = float(self.fade)
        w = np.ones(len(t), np.float64)
        head = t - start < self.fade
        w[head] *= np.sin(0.5 * np.pi * (t[head] - start + 0.5) / f)
        tail = stop - t <= self.fade
        w[tail] *= np.sin(0.5 * np.pi * (stop - t[tail] - 0.5) / f)
        return w

    def _next(self) -> np.ndarray:
        p = self._produced
        n = min(CHUNK, self.length_frames - p)
        out = np.zeros((n, 2), np.float32)
        for k, (start, stop) in enumerate(self._spans):
            lo, hi = max(start, p), min(stop, p + n)
            if lo >= hi:
                if stop <= p and k in self._open:   # finished: let its decoder go
                    self._open.pop(k)[0].close()
                continue
            x = self._clip_audio(k, lo - start, hi - lo)
            w = self._envelope(k, np.arange(lo, hi))
            out[lo - p:hi - p] += (x * w[:, None]).astype(np.float32)
        for k, (s, _, _) in self._open.items():
            self.notices.extend(m for m in s.notices if m not in self.notices)
        self._produced += n
        self._done = self._produced >= self.length_frames
        return out

    def close(self) -> None:
        for s, _, _ in self._open.values():
            s.close()
        self._open.clear()
