"""Audio files as track sources: read, scrub, resample, and feed a source ring.

A ``FileSource`` produces its track's signal in session time: silence until
``offset_s``, then the file (looped if asked), resampled to the session rate
by libsoxr (python-soxr, "HQ"), mono spread to both channels. It reads
``CHUNK`` input frames at a time, whatever the engine's block size, so the
signal does not depend on how the engine is driven.

Memory: a source holds one chunk of input and its resampled output at most
(``CHUNK`` frames, 512 KiB each as stereo float32); the ring it fills is the read-ahead
(``engine.rt.state.READ_AHEAD_S``). A file of any length costs that, no more.
Called from one producer thread per source (the offline loop, or a reader
thread in live runs).
"""
from __future__ import annotations

import numpy as np
import soundfile as sf

from ..dsp.layout import S_EOF, S_WRITE
from ..errors import SourceError
from ..rt.rings import ring_push, ring_space

CHUNK = 65536  # input frames per read (fewer, larger reads: half the decode cost of 8192)


class FileSource:
    """One track's file, streamed into its source ring."""

    def __init__(self, track, samplerate: int, true_peak: bool = False):
        """true_peak: measure the source's true peak as it is decoded (``true_peak``)."""
        self.track = track
        self.samplerate = samplerate
        try:
            self._file = sf.SoundFile(str(track.file))
        except Exception as e:
            raise SourceError(f"{track.file}: cannot open ({e})") from None
        if self._file.channels > 2:
            raise SourceError(f"{track.file}: has {self._file.channels} channels "
                              "(livemix plays mono and stereo files)")
        self.file_rate = self._file.samplerate
        self._resampler = None
        if self.file_rate != samplerate:
            import soxr
            self._resampler = soxr.ResampleStream(self.file_rate, samplerate, 2,
                                                  dtype="float32", quality="HQ")
        self.offset_frames = round(track.offset_s * samplerate)
        self._pending = np.zeros((0, 2), np.float32)
        self._produced = 0          # timeline frames produced so far
        self._done = False
        self.nonfinite = 0          # NaN/Inf samples replaced by 0
        self.notices: list[str] = []
        self._meter = None
        if true_peak:
            from ..dsp.meters import new_meter
            self._meter = new_meter(samplerate, 2, CHUNK)
            self._mbuf = np.zeros((2, CHUNK), np.float32)

    @property
    def length_frames(self) -> int | None:
        """Session frames until this track ends (offset included); None when it loops."""
        if self.track.loop:
            return None
        n = self._file.frames
        if self._resampler is not None:
            n = round(n * self.samplerate / self.file_rate)
        return self.offset_frames + n

    def _read(self) -> np.ndarray | None:
        """Next chunk of the timeline, (k, 2) float32; None at the end."""
        if self._produced < self.offset_frames:
            k = min(CHUNK, self.offset_frames - self._produced)
            self._produced += k
            return np.zeros((k, 2), np.float32)
        try:
            x = self._file.read(CHUNK, dtype="float32", always_2d=True)
            if len(x) < CHUNK and self.track.loop and self._file.frames > 0:
                parts = [x]
                have = len(x)
                while have < CHUNK:
                    self._file.seek(0)
                    y = self._file.read(CHUNK - have, dtype="float32", always_2d=True)
                    parts.append(y)
                    have += len(y)
                x = np.concatenate(parts)
        except Exception as e:
            raise SourceError(f"{self.track.file}: read failed ({e})") from None
        last = len(x) < CHUNK
        if x.shape[1] == 1:
            x = np.repeat(x, 2, axis=1)
        bad = ~np.isfinite(x)
        if bad.any():
            n = int(bad.sum())
            if self.nonfinite == 0:
                self.notices.append(f"track {self.track.name!r}: {self.track.file} contains "
                                    "NaN/Inf samples; they play as silence")
            self.nonfinite += n
            x[bad] = 0.0
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        if last:
            self._done = True
        self._produced += len(x)
        if self._meter is not None and len(x):
            self._measure(x)
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
        size = ring.shape[1]
        while True:
            if until is not None and int(pos[S_WRITE]) >= until:
                return
            if len(self._pending) == 0:
                if self._done:
                    if pos[S_EOF] < 0:
                        pos[S_EOF] = pos[S_WRITE]
                    return
                self._pending = self._read()
                continue
            if ring_space(pos, size) == 0:
                return
            k = ring_push(ring, pos, self._pending)
            self._pending = self._pending[k:]

    def close(self) -> None:
        self._file.close()
