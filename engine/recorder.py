"""Recording takes: a writer thread empties the record ring into sound files.

Threads (who calls what):

* audio thread: ``engine.rt.cycle._record`` copies every output block (and the
  pre-fader stems) into ``io.rec_ring``, then publishes ``rec_idx[RI_WRITE]``;
  when the ring is full it writes nothing and logs ``(ring frame, frames)`` in
  ``io.rec_drops``. It never sees this module and never waits for it.
* writer thread (``Recorder._run``, a daemon): wakes every ``POLL_S`` seconds,
  copies what the ring holds into the files and owns ``RI_READ`` and
  ``RI_DROP_R`` (single producer / single consumer, no lock shared with the
  audio thread). It also checks free disk space about once a second.
* control thread: ``Recorder.start``, ``stop``, ``note``, ``recover``. ``stop``
  and ``note`` share one lock with the writer thread (never with the audio
  thread).

Units: frames (one sample per channel) unless a name says seconds or bytes.
Frame numbers in events and in the sidecar count from the start of the take,
silence included.

Files, in ``takes_dir`` (created if missing), for a take named
``<session name>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` ... when taken):

* ``<take>.wav`` (``.w64``, ``.rf64``, ``.flac``): the master bus;
* ``<take>.<track>.wav``: each track's pre-fader signal (stereo) when stems are on;
* ``<take>.json``: the sidecar, written when the take starts (``"complete":
  false``), when a file or an event is added, and at the end (``"complete": true``).

Formats:

* ``wav``, ``w64``: written plainly; libsndfile repairs an unfinished WAV/W64
  header when it reads the file, so a take cut by ``kill -9`` still opens
  (``recover`` fixes the header for every other reader).
* ``rf64``: libsndfile's header auto-update is on (``SFC_SET_UPDATE_HEADER_AUTO``),
  so the header is right after every write.
* ``flac``: never written live. The take is recorded as WAV and transcoded to
  FLAC when it ends (``stop``); the WAV is deleted only after the FLAC has been
  written, read back and found sample-for-sample equal. If that fails the WAV stays.

Rollover: only WAV rolls over (its RIFF sizes are 32-bit; W64 and RF64 have
64-bit sizes). Before a WAV file's data would pass ``WAV_LIMIT_BYTES``, every
file of the take (master and stems together, at the same frame) continues in
``<take>-part2.wav``, ``<take>-part2.<track>.wav``, then ``-part3`` ...; the
sidecar lists each file with its ``start_frame``. The WAV of a FLAC take rolls
over the same way and its parts are joined into one FLAC at the end.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

from .dsp.layout import (IO_LATENCY, IO_OUTCH, IO_RECORD, IO_STEMS, ST_REC_ON, RI_ANCHOR, RI_ANCHOR_SEQ, RI_DROP_R,
                         RI_DROP_W, RI_READ, RI_WRITE, ST_CALLBACKS, ST_FRAMES, ST_LAST_NOW, ST_REC_DROPPED,
                         ST_XRUNS)
from .dsp.meters import MC_NCH, loudness_figures, meter_feed, new_meter, tp_flush
from .errors import LivemixError

# Data bytes one WAV file may hold: RIFF sizes are unsigned 32-bit and include the
# header chunks, so leave 1 MiB for those. Read when a take starts (tests shrink it).
WAV_LIMIT_BYTES = 2**32 - 2**20
POLL_S = 0.020                # writer thread period, seconds
DISK_CHECK_S = 1.0            # free-space check period, seconds
LOW_DISK_BYTES = 1 << 30      # warn below max(this, LOW_DISK_S of recording)
LOW_DISK_S = 120.0
CHUNK = 16384                 # frames copied / written at once
SIDECAR_RESERVE = 16384       # the sidecar is padded to this many bytes (see _write_sidecar)
AUDIO_QUIET_TIMEOUT_S = 1.0   # stop(): longest wait for the audio thread's last callback

# libsndfile sf_command() codes (sndfile.h)
SFC_SET_UPDATE_HEADER_AUTO = 0x1061
SFC_SET_CLIPPING = 0x10C0

FORMATS = {"wav": "WAV", "w64": "W64", "rf64": "RF64", "flac": "FLAC"}
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                 "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1}


def _now() -> datetime:
    """The local time, with its UTC offset (tests replace this)."""
    return datetime.now().astimezone()


@dataclass
class TakeResult:
    """What ``Recorder.stop`` returns.

    paths: the audio files, master first (in part order), then each stem.
    frames: frames in the master take (all parts, silence for drops included).
    dropped_frames: frames the record ring had no room for (written as silence).
    stopped_reason: why recording stopped before ``stop()`` (disk full ...), else None.
    """
    paths: list
    frames: int
    dropped_frames: int
    stopped_reason: str | None
    sidecar: Path | None = None
    events: list = field(default_factory=list)


class _WriteFailed(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class _Stream:
    """One logical output (the master or one stem) and its files (parts)."""
    kind: str                  # "master" | "stem"
    track: str | None
    label: str | None          # file-name-safe track name
    row: int                   # first ring row
    channels: int
    buf: np.ndarray            # (CHUNK, channels) float32 scratch, C-contiguous
    zeros: np.ndarray          # (CHUNK, channels) float32 silence
    parts: list = field(default_factory=list)   # [{"path", "start_frame", "frames"}]
    file: sf.SoundFile | None = None


def _safe_name(name: str) -> str:
    s = re.sub(r"[^\w.\- ]+", "_", name).strip(" .")
    return s or "track"


def _sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def _size_text(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


def _duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class Recorder:
    """Writes one take from the record ring of ``io`` (an ``IoState``).

    session: the running ``Session`` (name, path, samplerate, channels, tracks).
    takes_dir: where the files go (created if missing).
    format: "wav" | "w64" | "rf64" | "flac"; subtype: a soundfile subtype ("PCM_24" ...).
    stems: also record each track's pre-fader signal (the ring must have the rows:
    ``allocate_io(stems=True)``). samplerate: Hz (default: the session's).
    on_event(kind, detail): called for "drop", "disk_low", "recording_stopped",
    "transcode_failed" events, from the writer thread or the control thread, never
    with the recorder's lock held.
    ring: where ``io`` lives in shared memory, ``(block name, [(array, shape, dtype,
    offset)])`` (``engine.rt.shm.Layout.groups["io"]``): written into the sidecar so
    that ``livemix recover`` can salvage the frames a killed run had not yet written
    (``engine.salvage``). While the take records, the master's first file is held
    with a shared ``flock``: the sign, for ``recover``, that its run is alive.

    ``warning`` (str or None) is the latest disk warning or stop reason for a UI;
    ``sidecar_extra`` (dict): the engine's own fields (device, latency, load, underruns,
    automation), merged into the top level of the sidecar at each write.
    One take per Recorder: ``start()`` then ``stop()``.
    """

    def __init__(self, session, io, takes_dir, format: str = "wav", subtype: str = "PCM_24",
                 stems: bool = False, samplerate: int | None = None, on_event=None,
                 ring=None):
        fmt = str(format).lower()
        if fmt not in FORMATS:
            raise LivemixError(f"recording format {format!r}: use one of {', '.join(FORMATS)}")
        subtype = str(subtype).upper()
        self.format = fmt
        self.subtype = subtype
        self.container = FORMATS[fmt]
        # what is written while recording: FLAC takes are WAV until stop()
        self.live_container = "WAV" if fmt == "flac" else self.container
        self.ext = {"WAV": "wav", "W64": "w64", "RF64": "rf64"}[self.live_container]
        for c in {self.container, self.live_container}:
            if not sf.check_format(c, subtype):
                raise LivemixError(f"cannot record {fmt} with subtype {subtype} "
                                   f"(libsndfile has no such {c} subtype)")
        self.session = session
        self.io = io
        self.takes_dir = Path(takes_dir)
        self.samplerate = int(samplerate or session.engine.samplerate)
        self.channels = int(io.io_cfg[IO_OUTCH])
        self.stems = bool(stems)
        self.on_event = on_event
        ntracks = len(session.tracks)
        if self.stems:
            need = self.channels + 2 * ntracks
            if io.rec_ring.shape[0] < need or int(io.io_cfg[IO_STEMS]) == 0:
                raise LivemixError("stems requested but the record ring has no stem rows "
                                   "(the engine was started without stem recording)")
        self.sidecar_extra: dict = {}
        self.warning: str | None = None
        self.stopped_reason: str | None = None
        self.events: list[dict] = []
        self.frames = 0                 # master frames written, silence included
        self.dropped_frames = 0         # frames written as silence for ring overflows
        self.take: str | None = None
        self.sidecar: Path | None = None
        self.ring = ring
        self._preroll = 0              # ring frames to skip at the start (IO_LATENCY)
        self._alive_fd: int | None = None   # flock(LOCK_SH) on the master's first file

        self._lock = threading.Lock()   # writer thread <-> control thread only
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "new"             # new -> recording -> (failed) -> done
        self._closed = False            # files closed (failure or stop)
        self._pending: list[tuple[str, str]] = []   # on_event calls to make
        self._sidecar_dirty = False
        self._next_sidecar = 0.0
        self._next_disk = 0.0
        self._disk_low = False
        self._result: TakeResult | None = None
        self._part = 0
        self._part_frames = 0
        self._limit_frames: int | None = None
        self._start_time: datetime | None = None
        self._end_time: datetime | None = None
        self._session_sha = None
        self._dropped0 = 0
        self._flac_error: str | None = None

        bps = _SAMPLE_BYTES.get(subtype, 8)
        self._streams = [self._new_stream("master", None, 0, self.channels)]
        if self.stems:
            labels: set[str] = set()
            for t, track in enumerate(session.tracks):
                label = _safe_name(track.name)
                while label in labels:
                    label += "_"
                labels.add(label)
                self._streams.append(self._new_stream("stem", track.name, self.channels + 2 * t,
                                                      2, label))
        self._frame_bytes = [s.channels * bps for s in self._streams]
        self._bytes_per_s = self.samplerate * sum(self._frame_bytes)
        # the take's loudness, measured on exactly the frames written (writer thread)
        self.meter = new_meter(self.samplerate, min(self.channels, 2), CHUNK)
        self._mbuf = np.zeros((2, CHUNK), np.float32)
        meter_feed(self.meter, self._mbuf, 0, 0)   # compiled (or loaded) now, not mid-take
        tp_flush(self.meter)                       # (on silence: changes no figure)

    @property
    def bytes_written(self) -> int:
        """Audio bytes written so far (all files, headers aside). Any thread."""
        return self.frames * sum(self._frame_bytes)

    def note(self, kind: str, detail: str, frame: int) -> None:
        """Add an engine event (xrun, underrun, ceiling) at take frame ``frame``
        to the sidecar's events. Control thread."""
        with self._lock:
            self.events.append({"frame": int(frame), "kind": kind, "detail": detail})
            self._sidecar_dirty = True

    def loudness(self) -> dict:
        """The take's loudness so far (the `loudness` contract of ``analyze``), JSON-safe."""
        return loudness_figures(self.meter)

    @staticmethod
    def _new_stream(kind, track, row, channels, label=None) -> _Stream:
        return _Stream(kind=kind, track=track, label=label, row=row, channels=channels,
                       buf=np.zeros((CHUNK, channels), np.float32),
                       zeros=np.zeros((CHUNK, channels), np.float32))

    # -- control thread ---------------------------------------------------------
    def start(self) -> None:
        """Create the take files and the sidecar, start the writer thread, then set
        ``IO_RECORD`` so the audio thread starts filling the ring. Control thread.

        Raises LivemixError (one line, naming the directory) when the take cannot be
        created, and when another take is already recording on this ``io``."""
        if self._state != "new":
            raise RuntimeError("a Recorder records one take; create a new one")
        io = self.io
        if int(io.io_cfg[IO_RECORD]) != 0:
            raise LivemixError("already recording: another take is running")
        d = self.takes_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LivemixError(f"cannot create the takes directory {d}: "
                               f"{e.strerror or e}") from None
        self._start_time = _now()
        self._claim_name()
        self._limit_frames = None
        if self.live_container == "WAV":
            self._limit_frames = max(1, int(WAV_LIMIT_BYTES) // max(self._frame_bytes))
        try:
            self._open_part(1)
        except _WriteFailed as e:
            self._abandon()
            raise LivemixError(f"cannot record in {d}: {e.message}") from None
        self._alive_fd = os.open(self._streams[0].parts[0]["path"], os.O_RDONLY)
        fcntl.flock(self._alive_fd, fcntl.LOCK_SH)
        self._session_sha = _sha256(Path(self.session.path))
        self._dropped0 = int(io.stats[ST_REC_DROPPED])
        if not self._write_sidecar(complete=False):
            self._abandon()
            raise LivemixError(f"cannot record in {d}: cannot write the sidecar {self.sidecar}")
        # stale ring content from before this take: discard it (the writer owns RI_READ)
        idx = io.rec_idx
        idx[RI_READ] = idx[RI_WRITE]
        idx[RI_DROP_R] = idx[RI_DROP_W]
        self._preroll = int(io.io_cfg[IO_LATENCY])
        self._anchor(int(idx[RI_READ]), int(idx[RI_DROP_R]))
        with self._lock:
            self._check_disk()
        self._dispatch()
        self._next_disk = time.monotonic() + DISK_CHECK_S
        self._state = "recording"
        self._thread = threading.Thread(target=self._run, name=f"livemix-rec-{self.take}",
                                        daemon=True)
        self._thread.start()
        io.io_cfg[IO_RECORD] = 1

    def stop(self) -> TakeResult:
        """Stop recording: clear ``IO_RECORD``, wait for the audio thread's current
        callback, write what is left in the ring, close the files, transcode FLAC,
        finish the sidecar. Returns the ``TakeResult``; never raises for a write
        error (see ``stopped_reason``). Idempotent. Control thread."""
        if self._result is not None:
            return self._result
        if self._state == "new":
            raise RuntimeError("stop() before start()")
        self.end_audio()
        self._quit.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if not self._closed:
                try:
                    self._drain(final=True)
                except _WriteFailed as e:
                    self._fail(e.message)
            self._close_files()
            tp_flush(self.meter)
            self._count_unlogged_drops()
            if self.format == "flac":
                self._transcode()
            self._end_time = _now()
            self._write_sidecar(complete=True, sync=True)
            self._state = "done"
            self._result = TakeResult(
                paths=[p["path"] for s in self._streams for p in s.parts],
                frames=self.frames, dropped_frames=self.dropped_frames,
                stopped_reason=self.stopped_reason, sidecar=self.sidecar,
                events=[dict(e) for e in self.events])
        self._dispatch()
        return self._result

    def end_audio(self) -> None:
        """Stop the audio thread recording this take (IO_RECORD = 0) and wait until it
        has (its callback in progress and the tail after it). The first step of
        ``stop``: the engine calls it alone first, to drain the take's last events
        before the sidecar is finished. Control thread."""
        if int(self.io.io_cfg[IO_RECORD]) != 0:
            self.io.io_cfg[IO_RECORD] = 0
            self._wait_audio_quiet()

    @property
    def recording(self) -> bool:
        """True from start() until stop() or a write error."""
        return self._state == "recording" and not self._closed

    # -- writer thread ----------------------------------------------------------
    def _run(self) -> None:
        while not self._quit.wait(POLL_S):
            try:
                alive = self._tick()
            except Exception as e:   # a bug must not take the engine down: stop the take
                with self._lock:
                    self._fail(f"recorder error: {type(e).__name__}: {e}")
                alive = False
            self._dispatch()
            if not alive:
                break

    def _tick(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            try:
                self._drain()
            except _WriteFailed as e:
                self._fail(e.message)
                return False
            now = time.monotonic()
            if now >= self._next_disk:
                self._next_disk = now + DISK_CHECK_S
                self._check_disk()
            if self._sidecar_dirty and now >= self._next_sidecar:
                self._write_sidecar(complete=False)
        return True

    # -- ring -> files (lock held) ----------------------------------------------
    def _drain(self, final: bool = False) -> None:
        """Copy ring frames up to RI_WRITE into the files, inserting
        silence for logged drops at their ring positions. A drop at the ring's current
        end may still be growing (the audio thread extends the last entry while the
        ring stays full), so it is taken only once data follows it, or when ``final``
        (the audio thread has stopped recording). Lock held."""
        io = self.io
        ring = io.rec_ring
        size = ring.shape[1]
        mask = size - 1
        idx = io.rec_idx
        drops = io.rec_drops
        dmask = drops.shape[0] - 1
        w = int(idx[RI_WRITE])        # the data counter first: every drop before w is
        dw = int(idx[RI_DROP_W])      # already in the log when we read its counter
        r = int(idx[RI_READ])
        dr = int(idx[RI_DROP_R])
        if self._preroll and r < w:
            # the take's first frames in the ring are the master's delay (the limiter's
            # lookahead): what came out before the take began. Session time starts after.
            k = min(self._preroll, w - r)
            r += k
            self._preroll -= k
            self._anchor(r, dr)
            idx[RI_READ] = r
        while True:
            pos = cnt = None
            if dr < dw:
                pos = int(drops[dr & dmask, 0])
                cnt = int(drops[dr & dmask, 1])
            end = w if pos is None else max(r, min(pos, w))
            while r < end:
                n = min(CHUNK, end - r)
                a = r & mask
                n1 = min(n, size - a)
                for s in self._streams:
                    rows = ring[s.row:s.row + s.channels]
                    s.buf[:n1] = rows[:, a:a + n1].T
                    if n1 < n:
                        s.buf[n1:n] = rows[:, :n - n1].T
                self._emit(n)
                r += n
                self._anchor(r, dr)
                idx[RI_READ] = r      # written: the audio thread may reuse these slots now
            if pos is not None and (pos < w or (pos == w and final)):
                at = self.frames
                self._silence(cnt)
                self.dropped_frames += cnt
                self._event("drop", f"{cnt} frames dropped (record ring full): silence",
                            at, cnt)
                dr += 1
                self._anchor(r, dr)
                idx[RI_DROP_R] = dr
                continue
            break

    def _anchor(self, r: int, dr: int) -> None:
        """Publish where the files end in ring terms: (RI_READ, RI_DROP_R, frames in the
        files) in the slot not in use, then switch slots. A kill -9 at any instant leaves
        one consistent anchor for ``engine.salvage``. Lock held."""
        idx = self.io.rec_idx
        seq = int(idx[RI_ANCHOR_SEQ]) + 1
        k = RI_ANCHOR + 3 * (seq & 1)
        idx[k] = r
        idx[k + 1] = dr
        idx[k + 2] = self.frames
        idx[RI_ANCHOR_SEQ] = seq

    def _emit(self, n: int, silence: bool = False) -> None:
        """Write n frames (each stream's buf[:n], or silence; n <= CHUNK) to every
        file, rolling WAV files over at the part limit. Lock held."""
        off = 0
        while off < n:
            k = n - off
            if self._limit_frames is not None:
                room = self._limit_frames - self._part_frames
                if room <= 0:
                    self._roll()
                    continue
                k = min(k, room)
            for s in self._streams:
                data = s.zeros[:k] if silence else s.buf[off:off + k]
                try:
                    s.file.write(data)
                except Exception as e:
                    raise _WriteFailed(self._write_error(s.parts[-1]["path"], e)) from None
                s.parts[-1]["frames"] += k
                if s.kind == "master":
                    self._measure(data)
            self._part_frames += k
            self.frames += k
            off += k

    def _measure(self, data: np.ndarray) -> None:
        """Feed written master frames (frames x channels) to the take's meter."""
        k = len(data)
        m = self._mbuf
        for c in range(self.meter.cfg[MC_NCH]):
            m[c, :k] = data[:, c]
        meter_feed(self.meter, m, 0, k)

    def _silence(self, frames: int) -> None:
        while frames > 0:
            n = min(CHUNK, frames)
            self._emit(n, silence=True)
            frames -= n

    def _part_path(self, s: _Stream, part: int, ext: str | None = None) -> Path:
        name = self.take if part == 1 else f"{self.take}-part{part}"
        if s.label is not None:
            name += f".{s.label}"
        return self.takes_dir / f"{name}.{ext or self.ext}"

    def _open_part(self, part: int) -> None:
        """Open the files of part ``part`` (1-based) starting at take frame self.frames."""
        for s in self._streams:
            path = self._part_path(s, part)
            try:
                f = sf.SoundFile(path, "w", self.samplerate, s.channels, self.subtype,
                                 format=self.live_container)
            except Exception as e:
                raise _WriteFailed(self._write_error(path, e)) from None
            # values beyond full scale saturate instead of wrapping around
            sf._snd.sf_command(f._file, SFC_SET_CLIPPING, sf._ffi.NULL, 1)
            if self.live_container == "RF64":
                sf._snd.sf_command(f._file, SFC_SET_UPDATE_HEADER_AUTO, sf._ffi.NULL, 1)
            s.file = f
            s.parts.append({"path": path, "start_frame": self.frames, "frames": 0})
        self._part = part
        self._part_frames = 0

    def _roll(self) -> None:
        for s in self._streams:
            f, s.file = s.file, None
            try:
                f.close()
            except Exception as e:
                raise _WriteFailed(self._write_error(s.parts[-1]["path"], e)) from None
        self._open_part(self._part + 1)
        self._write_sidecar(complete=False)   # list the new files at once

    def _write_error(self, path: Path, exc: Exception) -> str:
        """A one-line reason for a failed write/open of ``path``."""
        err = sf._ffi.errno   # errno of libsndfile's last C call in this thread
        if isinstance(exc, OSError) and exc.errno:
            err = exc.errno
        try:
            free = shutil.disk_usage(self.takes_dir).free
        except OSError:
            free = None
        if err in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < 65536):
            return f"disk full: no space left on {self.takes_dir}"
        reason = os.strerror(err) if err else (str(exc) or type(exc).__name__)
        return f"cannot write {path}: {reason}"

    def _fail(self, message: str) -> None:
        """Recording stops (write error): audio keeps playing, files stay valid. Lock held."""
        self.io.io_cfg[IO_RECORD] = 0
        if self.stopped_reason is None:
            self.stopped_reason = message
            self.warning = message
            self._event("recording_stopped", message, self.frames)
        self._close_files()
        self._write_sidecar(complete=False)

    def _release_alive(self) -> None:
        if self._alive_fd is not None:
            os.close(self._alive_fd)       # releases the flock
            self._alive_fd = None

    def _close_files(self) -> None:
        """Close every open file, then take the frame counts from the files. Lock held."""
        self._release_alive()
        if self._closed:
            return
        self._closed = True
        for s in self._streams:
            f, s.file = s.file, None
            if f is None:
                continue
            try:
                f.close()
            except Exception as e:
                self._event("close_error", f"closing {s.parts[-1]['path']}: {e}", self.frames)
        for s in self._streams:
            for p in s.parts:
                try:
                    p["frames"] = sf.info(str(p["path"])).frames
                except Exception:
                    pass
        master = self._streams[0]
        self.frames = sum(p["frames"] for p in master.parts)

    def _count_unlogged_drops(self) -> None:
        """Drops beyond the drop log's capacity have no position: count them."""
        total = int(self.io.stats[ST_REC_DROPPED]) - self._dropped0
        missing = total - self.dropped_frames
        if missing > 0 and self.stopped_reason is None:
            self.dropped_frames += missing
            self._event("drop", f"{missing} more frames dropped but not logged (drop log "
                        "full): the take is shorter than real time by that much", self.frames,
                        missing)

    # -- disk space ----------------------------------------------------------------
    def _check_disk(self) -> None:
        """Warn when free space is below max(LOW_DISK_BYTES, LOW_DISK_S of recording)."""
        try:
            free = shutil.disk_usage(self.takes_dir).free
        except OSError:
            return
        threshold = max(LOW_DISK_BYTES, LOW_DISK_S * self._bytes_per_s)
        if free < threshold:
            left = free / self._bytes_per_s
            self.warning = (f"disk space low on {self.takes_dir}: {_size_text(free)} free, "
                            f"about {_duration_text(left)} of recording left")
            if not self._disk_low:
                self._disk_low = True
                self._event("disk_low", self.warning, self.frames)
        elif self._disk_low and free > 1.05 * threshold:
            self._disk_low = False
            if self.stopped_reason is None:
                self.warning = None

    # -- events and sidecar --------------------------------------------------------
    def _event(self, kind: str, detail: str, frame: int, frames: int | None = None) -> None:
        """Add an event (merging back-to-back drops). Lock held; on_event runs later."""
        last = self.events[-1] if self.events else None
        if (kind == "drop" and last is not None and last["kind"] == "drop"
                and last.get("frames") is not None and frames is not None
                and last["frame"] + last["frames"] == frame):
            last["frames"] += frames
            last["detail"] = f"{last['frames']} frames dropped (record ring full): silence"
        else:
            e = {"frame": int(frame), "kind": kind, "detail": detail}
            if frames is not None:
                e["frames"] = int(frames)
            self.events.append(e)
            self._pending.append((kind, detail))
        self._sidecar_dirty = True

    def _dispatch(self) -> None:
        """Call on_event for new events, without the lock."""
        with self._lock:
            pending, self._pending = self._pending, []
        if self.on_event is None:
            return
        for kind, detail in pending:
            try:
                self.on_event(kind, detail)
            except Exception:
                pass

    def _sidecar_data(self, complete: bool) -> dict:
        stats = self.io.stats
        files = []
        for s in self._streams:
            for i, p in enumerate(s.parts):
                files.append({"path": p["path"].name, "kind": s.kind, "track": s.track,
                              "part": i + 1, "start_frame": p["start_frame"],
                              "frames": p["frames"]})
        try:
            extra = dict(self.sidecar_extra)
        except RuntimeError:     # changed size while being copied: take it next time
            extra = {}
        data = {
            "take": self.take,
            "complete": complete,
            "session": str(Path(self.session.path).resolve()),
            "session_sha256": self._session_sha,
            "samplerate": self.samplerate,
            "channels": self.channels,
            "format": self.format,
            "subtype": self.subtype,
            "stems": [s.track for s in self._streams[1:]],
            "frames": self.frames,
            "seconds": self.frames / self.samplerate,
            "dropped_frames": self.dropped_frames,
            # the take's own: xruns the engine noted at frames inside it
            "xruns": sum(1 for e in self.events if e["kind"] == "xrun"),
            "xruns_engine_total": int(stats[ST_XRUNS]),
            "engine_frames": int(stats[ST_FRAMES]),
            "start_time": self._start_time.isoformat(timespec="milliseconds"),
            "end_time": (self._end_time.isoformat(timespec="milliseconds")
                         if self._end_time else None),
            "events": sorted((dict(e) for e in self.events), key=lambda e: e["frame"]),
            "loudness": self.loudness(),
            "files": files,
            "stopped_reason": self.stopped_reason,
        }
        for key, value in extra.items():     # the engine's fields sit at the top level
            data.setdefault(key, value)
        if self.ring is not None and not complete:
            block, specs = self.ring
            data["record_ring"] = {
                "block": block, "pid": os.getpid(),
                "arrays": {n: [list(shape), dt, off] for n, shape, dt, off in specs
                           if n in ("rec_ring", "rec_idx", "rec_drops")},
                "streams": [{"kind": s.kind, "track": s.track, "row": s.row,
                             "channels": s.channels} for s in self._streams]}
        if self._flac_error:
            data["flac_error"] = self._flac_error
        return data

    def _write_sidecar(self, complete: bool, sync: bool = False) -> bool:
        """Write the sidecar: atomically (temp file + rename) when the disk allows,
        else in place over the existing file, which is padded to SIDECAR_RESERVE bytes
        so that a full disk still takes the final version. Never raises."""
        self._sidecar_dirty = False
        self._next_sidecar = time.monotonic() + 1.0
        try:
            text = json.dumps(self._sidecar_data(complete), indent=2, default=str)
        except Exception as e:
            self.warning = f"cannot encode the sidecar: {e}"
            return False
        raw = text.encode() + b"\n"
        if len(raw) < SIDECAR_RESERVE:
            raw += b" " * (SIDECAR_RESERVE - len(raw) - 1) + b"\n"
        tmp = self.sidecar.with_name(f".{self.sidecar.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(raw)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.sidecar)
            return True
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
        try:
            with open(self.sidecar, "r+b") as f:
                f.write(raw)
                f.truncate(len(raw))
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            return True
        except OSError as e:
            self.warning = f"cannot write the sidecar {self.sidecar}: {e.strerror or e}"
            return False

    # -- start / stop helpers --------------------------------------------------------
    def _claim_name(self) -> None:
        """Pick ``<session>-<YYYYmmdd-HHMMSS>[-N]`` and create its sidecar exclusively."""
        base = f"{self.session.name}-{self._start_time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while True:
            take = base if n == 1 else f"{base}-{n}"
            n += 1
            self.take = take
            names = [self._part_path(s, 1, ext).name for s in self._streams
                     for ext in ("wav", "w64", "rf64", "flac")]
            if any((self.takes_dir / name).exists() for name in names):
                continue
            sidecar = self.takes_dir / f"{take}.json"
            try:
                fd = os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except OSError as e:
                raise LivemixError(f"cannot record in {self.takes_dir}: "
                                   f"{e.strerror or e}") from None
            os.close(fd)
            self.sidecar = sidecar
            return

    def _abandon(self) -> None:
        """start() failed: close and remove what it created."""
        self._release_alive()
        for s in self._streams:
            if s.file is not None:
                try:
                    s.file.close()
                except Exception:
                    pass
                s.file = None
            for p in s.parts:
                try:
                    p["path"].unlink()
                except OSError:
                    pass
            s.parts.clear()
        if self.sidecar is not None:
            try:
                self.sidecar.unlink()
            except OSError:
                pass

    def _wait_audio_quiet(self) -> None:
        """After IO_RECORD = 0: wait until the audio thread has stopped copying into the
        ring (the callback in progress, and the tail of IO_LATENCY frames that follows
        a stop). No wait when the audio thread is not running (stale heartbeat)."""
        stats = self.io.stats
        c0 = int(stats[ST_CALLBACKS])
        frames = int(stats[ST_FRAMES])
        period_ns = int(1e9 * frames / max(1, c0) / self.samplerate) if c0 else 0
        quiet_ns = 2 * period_ns + 20_000_000
        deadline = time.monotonic() + AUDIO_QUIET_TIMEOUT_S
        while time.monotonic() < deadline:
            last = int(stats[ST_LAST_NOW])
            if last == 0 or time.monotonic_ns() - last > quiet_ns:
                return
            if int(stats[ST_CALLBACKS]) > c0 and int(stats[ST_REC_ON]) == 0:
                return
            time.sleep(0.001)

    # -- FLAC ---------------------------------------------------------------------------
    def _transcode(self) -> None:
        """Replace each stream's WAV parts by one FLAC; delete the WAVs only after the
        FLAC reads back equal. Control thread (stop), lock held."""
        for s in self._streams:
            wavs = [p["path"] for p in s.parts]
            if not wavs:
                continue
            flac = self._part_path(s, 1, "flac")
            try:
                with sf.SoundFile(flac, "w", self.samplerate, s.channels, self.subtype,
                                  format="FLAC") as out:
                    for block in _int_blocks(wavs):
                        out.write(block)
                frames = _compare_int(wavs, [flac])
            except Exception as e:
                reason = self._write_error(flac, e) if not isinstance(e, _Mismatch) else str(e)
                try:
                    flac.unlink()
                except OSError:
                    pass
                self._flac_error = reason
                self._event("transcode_failed", f"FLAC not written, the WAV stays: {reason}",
                            self.frames)
                continue
            for w in wavs:
                try:
                    w.unlink()
                except OSError:
                    pass
            s.parts = [{"path": flac, "start_frame": 0, "frames": frames}]


class _Mismatch(Exception):
    pass


def _int_blocks(paths, frames: int = CHUNK):
    """int32 blocks (frames x channels) of the files in ``paths``, one after the other."""
    for p in paths:
        with sf.SoundFile(str(p)) as f:
            while True:
                b = f.read(frames, dtype="int32", always_2d=True)
                if not len(b):
                    break
                yield b


def _compare_int(a_paths, b_paths) -> int:
    """Frames in common; raises _Mismatch unless both sequences hold the same samples."""
    b_iter = _int_blocks(b_paths)
    pending = np.zeros((0, 0), np.int32)
    total = 0
    for a in _int_blocks(a_paths):
        while len(pending) < len(a):
            nxt = next(b_iter, None)
            if nxt is None:
                raise _Mismatch(f"FLAC check: {b_paths[0]} is shorter than the WAV")
            pending = nxt if not len(pending) else np.concatenate([pending, nxt])
        if not np.array_equal(a, pending[:len(a)]):
            raise _Mismatch(f"FLAC check: {b_paths[0]} differs from the WAV near frame {total}")
        pending = pending[len(a):]
        total += len(a)
    if len(pending) or next(b_iter, None) is not None:
        raise _Mismatch(f"FLAC check: {b_paths[0]} is longer than the WAV")
    return total


# --- recover ------------------------------------------------------------------------

_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_W64_SUFFIX = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"


@dataclass
class _Header:
    kind: str            # "WAV" | "RF64" | "W64"
    filesize: int
    block_align: int     # bytes per frame
    data_hdr: int        # offset of the data chunk's header
    data_offset: int     # offset of the first audio byte
    declared: int        # data bytes the header declares
    riff_size: int       # the RIFF size the header declares
    ds64: int | None     # RF64: offset of the ds64 chunk's body
    fact: int | None = None        # offset of the fact chunk's sample count (float files)
    fact_size: int = 4             # its width, bytes (4 in WAV, 8 in W64)


def _printable(cid: bytes) -> bool:
    return len(cid) == 4 and all(32 <= c < 127 for c in cid)


def _parse_header(path: Path) -> _Header:
    """Locate fmt and data chunks of a WAV, RF64 or W64 file. LivemixError if none."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(min(size, 1 << 20))
    fmt = data = ds64 = fact = None
    fact_size = 4
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        kind = "WAV" if head[:4] == b"RIFF" else "RF64"
        riff = struct.unpack_from("<I", head, 4)[0]
        pos = 12
        while pos + 8 <= len(head):
            cid = head[pos:pos + 4]
            csize = struct.unpack_from("<I", head, pos + 4)[0]
            if cid == b"ds64" and csize >= 24:
                ds64 = pos + 8
            elif cid == b"fact" and csize >= 4:
                fact = pos + 8
            elif cid == b"fmt " and pos + 22 <= len(head):
                fmt = struct.unpack_from("<H", head, pos + 8 + 12)[0]
            elif cid == b"data":
                data = pos
                break
            elif not _printable(cid):
                break
            pos += 8 + csize + (csize & 1)
        if data is None or fmt is None:
            raise LivemixError(f"{path}: no fmt/data chunk: not a recoverable take")
        declared = struct.unpack_from("<I", head, data + 4)[0]
        if kind == "RF64":
            if ds64 is None:
                raise LivemixError(f"{path}: RF64 file without a ds64 chunk")
            riff, declared = struct.unpack_from("<QQ", head, ds64)
        return _Header(kind, size, fmt, data, data + 8, declared, riff, ds64, fact)
    if head[:16] == _W64_RIFF and head[24:28] == b"wave":
        riff = struct.unpack_from("<Q", head, 16)[0]
        pos = 40
        while pos + 24 <= len(head):
            cid = head[pos:pos + 4]
            csize = struct.unpack_from("<Q", head, pos + 16)[0]
            if cid == b"fmt " and pos + 38 <= len(head):
                fmt = struct.unpack_from("<H", head, pos + 24 + 12)[0]
            elif cid == b"fact" and csize >= 28:
                fact, fact_size = pos + 24, (8 if csize >= 32 else 4)
            elif cid == b"data":
                data = pos
                break
            if csize < 24 or not _printable(cid):
                break
            pos += (csize + 7) & ~7
        if data is None or fmt is None:
            raise LivemixError(f"{path}: no fmt/data chunk: not a recoverable take")
        declared = max(0, struct.unpack_from("<Q", head, data + 16)[0] - 24)
        return _Header("W64", size, fmt, data, data + 24, declared, riff, None, fact, fact_size)
    raise LivemixError(f"{path}: not a WAV, RF64 or W64 file")


def _riff_ok(h: _Header) -> bool:
    return h.riff_size == (h.filesize if h.kind == "W64" else h.filesize - 8)


def _chunks_fill_file(path: Path, h: _Header) -> bool:
    """True if well-formed chunks follow the declared data chunk up to the end of file."""
    pos = h.data_offset + h.declared
    if h.kind != "W64":
        pos += h.declared & 1
    else:
        pos = (pos + 7) & ~7
    with open(path, "rb") as f:
        while pos < h.filesize:
            f.seek(pos)
            if h.kind == "W64":
                hd = f.read(24)
                if len(hd) < 24 or not _printable(hd[:4]):
                    return False
                csize = struct.unpack_from("<Q", hd, 16)[0]
                if csize < 24:
                    return False
                pos += (csize + 7) & ~7
            else:
                hd = f.read(8)
                if len(hd) < 8 or not _printable(hd[:4]):
                    return False
                csize = struct.unpack_from("<I", hd, 4)[0]
                pos += 8 + csize + (csize & 1)
    return pos <= h.filesize + 7


def _true_data_bytes(path: Path, h: _Header) -> tuple[int, bool]:
    """(audio bytes actually in the file, whether the data chunk runs to the end)."""
    avail = h.filesize - h.data_offset
    if h.declared <= 0 or h.declared > avail:
        data_last = True       # unfinished (size 0 from the open) or cut short
    elif _riff_ok(h) or _chunks_fill_file(path, h):
        data_last = False      # the data size is right (other chunks follow it)
    else:
        data_last = True       # written past the last header update
    n = avail if data_last else h.declared
    return n - n % h.block_align, data_last


def _read_fact(path: Path, h: _Header) -> int:
    with open(path, "rb") as f:
        f.seek(h.fact)
        return int.from_bytes(f.read(h.fact_size), "little")


def _patch(path: Path, h: _Header, nbytes: int, data_last: bool) -> None:
    """Rewrite the size fields (RIFF/ds64/data, and the fact chunk's sample count
    when there is one) in place, and cut a partial last frame."""
    frames = nbytes // h.block_align
    with open(path, "r+b") as f:
        if h.fact is not None and h.kind != "RF64":
            f.seek(h.fact)
            f.write(min(frames, 256 ** h.fact_size - 1).to_bytes(h.fact_size, "little"))
        final = h.filesize
        if data_last:
            end = h.data_offset + nbytes
            f.truncate(end)
            final = end
            if h.kind != "W64" and nbytes & 1:
                f.seek(end)
                f.write(b"\0")
                final += 1
        if h.kind == "WAV":
            if final - 8 > 0xFFFFFFFF:
                raise LivemixError(f"{path}: {nbytes} bytes of audio do not fit a WAV header "
                                   "(4 GiB); convert it with libsndfile to W64 or RF64")
            f.seek(4)
            f.write(struct.pack("<I", final - 8))
            f.seek(h.data_hdr + 4)
            f.write(struct.pack("<I", nbytes))
        elif h.kind == "RF64":
            f.seek(4)
            f.write(b"\xff\xff\xff\xff")
            f.seek(h.ds64)
            f.write(struct.pack("<QQQ", final - 8, nbytes, frames))
            f.seek(h.data_hdr + 4)
            f.write(b"\xff\xff\xff\xff")
        else:
            f.seek(16)
            f.write(struct.pack("<Q", final))
            f.seek(h.data_hdr + 16)
            f.write(struct.pack("<Q", nbytes + 24))
        f.flush()
        os.fsync(f.fileno())


def _rewrite(path: Path) -> None:
    """Copy the audio libsndfile reads into a new file, then atomically replace."""
    info = sf.info(str(path))
    need = path.stat().st_size
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise LivemixError(f"{path}: rewriting it needs {_size_text(need)} free on "
                           f"{path.parent} ({_size_text(free)} free)")
    tmp = path.with_name(f".{path.name}.recover.tmp")
    # integers for PCM (exact), floats for float files
    dtype = "float64" if info.subtype in ("FLOAT", "DOUBLE") else "int32"
    try:
        with sf.SoundFile(str(path)) as src, \
                sf.SoundFile(str(tmp), "w", info.samplerate, info.channels, info.subtype,
                             format=info.format) as dst:
            while True:
                b = src.read(CHUNK, dtype=dtype, always_2d=True)
                if not len(b):
                    break
                dst.write(b)
        if sf.info(str(tmp)).frames != info.frames:
            raise LivemixError(f"{path}: the rewritten copy has the wrong length")
        os.replace(tmp, path)
    except Exception:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def sidecar_of(path: Path) -> tuple[Path, dict, dict] | None:
    """The sidecar of the take that ``path`` belongs to: (sidecar, its data, the file's
    entry in it), or None when no readable sidecar beside it lists the file."""
    name = path.name
    for js in sorted(path.parent.glob("*.json"), key=lambda p: -len(p.name)):
        if not name.startswith(js.stem):
            continue
        try:
            data = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        files = data.get("files") or []
        entry = next((e for e in files if isinstance(e, dict) and e.get("path") == name), None)
        if entry is not None:
            return js, data, entry
    return None


def write_json(path: Path, data: dict) -> None:
    """Replace a JSON file atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _mark_sidecar(path: Path, frames: int) -> Path | None:
    """Find the take's sidecar listing ``path`` and mark it recovered. None if none."""
    found = sidecar_of(path)
    if found is None:
        return None
    js, data, entry = found
    name = path.name
    files = data["files"]
    entry["frames"] = frames
    entry["recovered"] = True
    data["recovered"] = True
    data.setdefault("recovered_files", {})[name] = frames
    master = [e.get("frames") for e in files if e.get("kind") == "master"]
    if entry.get("kind") == "master" and all(isinstance(f, int) for f in master):
        data["frames"] = sum(master)
        sr = data.get("samplerate")
        if sr:
            data["seconds"] = data["frames"] / sr
    write_json(js, data)
    return js


def recover(path, rewrite: bool = False) -> str:
    """Repair the header of a take whose process died (WAV, W64, RF64).

    Counts the frames actually in the file (whole frames only; a partial last
    frame is cut), rewrites the RIFF/ds64/data sizes in place (no copy, so it
    works on a full disk) and checks that libsndfile and the header agree. With
    ``rewrite=True`` it then also copies the audio into a new file written by
    libsndfile and atomically replaces the old one with it. Marks the sidecar
    (``"recovered": true``, the frame count). Returns a one-line summary; raises
    LivemixError naming the file when it is missing or not such a file. Control
    thread (``livemix recover FILE``).
    """
    p = Path(path)
    if not p.is_file():
        raise LivemixError(f"{p}: no such file")
    try:
        info = sf.info(str(p))
    except Exception as e:
        raise LivemixError(f"{p}: not an audio file libsndfile can read "
                           f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if info.format not in ("WAV", "WAVEX", "W64", "RF64"):
        raise LivemixError(f"{p}: {info.format} files are never written live: nothing to "
                           "recover (only WAV, W64 and RF64 takes)")
    try:
        h = _parse_header(p)
    except OSError as e:
        raise LivemixError(f"{p}: {e.strerror or e}") from None
    if h.block_align <= 0:
        raise LivemixError(f"{p}: the fmt chunk gives 0 bytes per frame")
    header_frames = h.declared // h.block_align
    nbytes, data_last = _true_data_bytes(p, h)
    frames = nbytes // h.block_align
    pad = nbytes & 1 if h.kind != "W64" else 0
    consistent = (h.declared == nbytes and _riff_ok(h)
                  and (not data_last or h.filesize == h.data_offset + nbytes + pad))
    if h.kind == "RF64" and consistent:
        with open(p, "rb") as f:
            f.seek(h.ds64 + 16)
            consistent = struct.unpack("<Q", f.read(8))[0] == frames
    if h.fact is not None and h.kind != "RF64" and consistent:
        consistent = _read_fact(p, h) == min(frames, 256 ** h.fact_size - 1)
    how = "header already correct"
    try:
        if not consistent:
            _patch(p, h, nbytes, data_last)
            how = "header repaired"
        if rewrite:
            _rewrite(p)
            how += ", file rewritten"
    except OSError as e:
        raise LivemixError(f"{p}: cannot repair: {e.strerror or e}") from None
    after = sf.info(str(p))
    h2 = _parse_header(p)
    if after.frames != frames or h2.declared != nbytes or not _riff_ok(h2):
        raise LivemixError(f"{p}: repair failed: libsndfile reads {after.frames} frames, "
                           f"the file holds {frames}")
    sidecar = _mark_sidecar(p, frames)
    return (f"{p}: {how}: {frames} frames ({frames / after.samplerate:.3f} s at "
            f"{after.samplerate} Hz); the header said {header_frames}"
            + (f"; {sidecar.name} marked recovered" if sidecar else ""))
