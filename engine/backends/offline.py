"""Offline render: the block function in a loop, as fast as the machine goes.

The loop hands the kernel about half a second at a time (``run_blocks`` calls
``process_block`` once per block inside nopython code), so Python costs
nothing per block. Sources fill their rings up to the end of each chunk first,
and timed commands (automation) are queued with their exact frames; the
kernel applies each at its sample, so a render does not depend on the block
size. Control thread.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..dsp.layout import C_LATENCY, C_OUTCH, K_CEIL, K_CMD_INVALID, K_CMD_LATE, K_NAN, S_EOF, S_UNDERRUNS
from ..errors import LivemixError
from ..outputs import atomic
from ..params import lin_to_db
from ..rt.block import run_blocks
from ..rt.rings import command_push
from ..rt.state import allocate, start_denoisers, stop_denoisers
from ..sources.files import make_source

CHUNK_S = 0.5
SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT")


@dataclass
class RenderResult:
    path: str
    frames: int
    samplerate: int
    peak_dbfs: float
    seconds: float                  # wall time
    ceiling_samples: int            # samples the limiter reduced
    notices: list = field(default_factory=list)
    natural_frames: int | None = None   # the session's own length (None: it loops)
    nbytes: int = 0                     # audio bytes written

    @property
    def duration_s(self) -> float:
        return self.frames / self.samplerate

    @property
    def realtime_factor(self) -> float:
        return self.duration_s / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        return (f"rendered {self.duration_s:.2f} s ({_size(self.nbytes)}) to {self.path}: "
                f"peak {self.peak_dbfs:.2f} dBFS, {self.realtime_factor:.0f}x realtime")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _check_space(out_path, nbytes: int) -> None:
    """A render that cannot fit on its disk is refused before it starts."""
    import shutil
    parent = Path(out_path).parent
    free = shutil.disk_usage(parent if str(parent) else ".").free
    if nbytes > free:
        raise LivemixError(f"{out_path}: the render needs {_size(nbytes)} and "
                           f"{parent or '.'} has {_size(free)} free")


def default_duration_frames(sources) -> int:
    """The longest non-looping source, in session frames."""
    n = natural_frames(sources)
    if n is None:
        raise LivemixError("every track loops, so the render has no natural end: "
                           "give --duration SECONDS")
    return n


def natural_frames(sources) -> int | None:
    """The longest non-looping source, in session frames; None if there is none."""
    lengths = [s.length_frames for s in sources if s is not None and s.length_frames is not None]
    return max(lengths) if lengths else None


class Progress:
    """A one-line progress bar on stderr.

    enabled=None: on a terminal, once the work has taken 1 s; True: always, at once.
    """

    def __init__(self, total_s: float, enabled: bool | None = None):
        self.total = total_s
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.delay = 1.0 if enabled is None else 0.0
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, done_s: float) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.start < self.delay or now - self.last < 0.1:
            return
        self.last = now
        frac = min(1.0, done_s / self.total) if self.total else 1.0
        bar = "#" * int(frac * 30)
        speed = done_s / (now - self.start)
        sys.stderr.write(f"\rrendering {frac * 100:3.0f}% [{bar:<30}] "
                         f"{done_s:.1f}/{self.total:.1f} s  {speed:.0f}x realtime")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4}
WAV_MAX_BYTES = 2**32 - 2**20      # a WAV's sizes are 32-bit (and the header counts too)


def output_format(path, subtype: str, nbytes: int = 0) -> str:
    """libsndfile's format for an output file named ``path``; a .wav that would pass
    4 GiB (``nbytes`` of audio) is RF64 (the same file with 64-bit sizes, which any
    reader of broadcast WAV opens). LivemixError naming the file if impossible."""
    if subtype not in SUBTYPES:
        raise LivemixError(f"--subtype {subtype}: use one of {', '.join(SUBTYPES)}")
    ext = str(path).rsplit(".", 1)[-1].upper() if "." in Path(path).name else ""
    fmt = {"W64": "W64", "RF64": "RF64", "AIF": "AIFF"}.get(ext, ext)
    if fmt not in sf.available_formats():
        raise LivemixError(f"{path}: unknown audio file type {ext or '(no extension)'!r} "
                           "(use .wav, .flac, .w64, .rf64, .aiff or .ogg)")
    if not sf.check_format(fmt, subtype):
        raise LivemixError(f"{path}: {fmt} cannot hold {subtype} samples")
    if fmt == "WAV" and nbytes > WAV_MAX_BYTES:
        return "RF64"
    return fmt


def open_output(path, samplerate: int, channels: int, subtype: str, fmt: str | None = None,
                name=None) -> sf.SoundFile:
    """Open an output file for writing (``name``: what to call it in messages, when
    ``path`` is its temporary name); LivemixError with a one-line reason if impossible."""
    name = name or path
    fmt = fmt or output_format(name, subtype)
    try:
        return sf.SoundFile(str(path), "w", samplerate, channels, subtype, format=fmt)
    except Exception as e:
        reason = str(e).split("Error :")[-1].strip() or str(e)
        raise LivemixError(f"{name}: cannot write ({reason})") from None


def render(session, out_path: str, duration_s: float | None = None, subtype: str = "PCM_24",
           blocksize: int | None = None, commands=(), progress: bool | None = None,
           start_frame: int = 0, sink=None) -> RenderResult:
    """Render ``session`` to ``out_path``. ``commands`` are (frame, param, target, value)
    tuples in frame order (see engine.params), applied at their exact frames. The
    file is in session time: the master's delay (the limiter's lookahead) is rendered
    past the end and cut from the start, so an impulse at session frame F is at F.
    start_frame: the session is rendered from its start, but only frames from this
    one on are written (a take that began mid-run); duration counts from here.
    sink: instead of a file, an object whose ``write(frames)`` takes each chunk
    ((n, channels) float32, a view it must copy to keep) as it is rendered."""
    sr = session.engine.samplerate
    notices_early = []
    blocksize = int(blocksize or session.engine.blocksize)
    if blocksize < 1:
        raise LivemixError(f"--blocksize {blocksize}: must be at least 1")
    chunk = max(blocksize, int(CHUNK_S * sr) // blocksize * blocksize)
    st = allocate(session, maxblock=blocksize, ring_frames=2 * chunk + 16384)
    start_denoisers(st)
    sources = [make_source(t, sr) for t in session.tracks]
    for t, pos in zip(session.tracks, st.src_pos):
        if t.input:
            pos[S_EOF] = 0        # a live input is silent in an offline render
    try:
        if duration_s is not None:
            if not duration_s > 0:
                raise LivemixError(f"--duration {duration_s}: must be more than 0 seconds")
            total = start_frame + round(duration_s * sr)
        else:
            total = default_duration_frames(sources)
        outch = int(st.cfg[C_OUTCH])
        buf = np.zeros((chunk, outch), np.float32)
        nbytes = (total - min(total, start_frame)) * outch * _BYTES.get(subtype, 4)
        files = contextlib.ExitStack()
        if sink is None:
            fmt = output_format(out_path, subtype, nbytes)
            if fmt == "RF64" and not str(out_path).lower().endswith(".rf64"):
                notices_early.append(f"{out_path}: {nbytes / 2**30:.1f} GiB is past a WAV's "
                                     "4 GiB: written as RF64 (a WAV with 64-bit sizes)")
            _check_space(out_path, nbytes)
            tmp = files.enter_context(atomic(out_path))
            sink = files.enter_context(open_output(tmp, sr, outch, subtype, fmt, out_path))
        cmds = sorted(commands, key=lambda c: c[0])
        ci = 0
        bar = Progress(total / sr, progress)
        t0 = time.perf_counter()
        # the master comes out `lat` frames late (the limiter's lookahead): render that
        # much further and drop as much at the start, so that the file is session time
        lat = int(st.cfg[C_LATENCY])
        with files:
            out = sink
            pos = 0
            while pos < total + lat:
                n = min(chunk, total + lat - pos)
                for src, ring, p in zip(sources, st.src_ring, st.src_pos):
                    if src is not None:
                        src.fill(ring, p, until=pos + n)
                while ci < len(cmds) and cmds[ci][0] < pos + n:
                    if not command_push(st.cmd_ring, st.cmd_idx, *cmds[ci]):
                        n = max(1, int(cmds[ci][0]) - pos)
                        break
                    ci += 1
                run_blocks(st, buf, n, blocksize)
                skip = min(n, max(0, start_frame + lat - pos))
                try:
                    out.write(buf[skip:n])
                except LivemixError:      # a sink's own one-line reason
                    raise
                except Exception as e:
                    raise LivemixError(f"{out_path}: write failed ({e})") from None
                pos += n
                bar.update(pos / sr)
        seconds = time.perf_counter() - t0
        bar.close()
    finally:
        stop_denoisers(st)
        for s in sources:
            if s is not None:
                s.close()
    notices = notices_early + [n for s in sources if s is not None for n in s.notices]
    notices += [f"track {t.name!r} is a live input: silent in an offline render"
                for t in session.tracks if t.input]
    for t, s in zip(session.tracks, st.src_pos):
        if s[S_UNDERRUNS]:
            notices.append(f"track {t.name!r}: {s[S_UNDERRUNS]} blocks ran dry")
    if st.clock[K_NAN]:
        notices.append(f"{st.clock[K_NAN]} non-finite samples scrubbed from the master bus")
    if st.clock[K_CMD_INVALID] or st.clock[K_CMD_LATE]:
        notices.append(f"commands: {st.clock[K_CMD_INVALID]} invalid, "
                       f"{st.clock[K_CMD_LATE]} late")
    return RenderResult(path=str(out_path), frames=total - min(total, start_frame), samplerate=sr,
                        nbytes=nbytes,
                        peak_dbfs=lin_to_db(float(st.peak_hold.max())), seconds=seconds,
                        ceiling_samples=int(st.clock[K_CEIL]), notices=notices,
                        natural_frames=natural_frames(sources))
