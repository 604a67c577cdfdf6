"""Delivering a video: the mix muxed into a copy of the picture (PyAV / FFmpeg).

``mux(videos, mix, out)`` writes ``out`` (.mp4, .m4v, .mov, .mkv or .webm)
with:

- the video stream of ``videos`` copied packet for packet, never re-encoded;
  several clips are joined in order (their timestamps shifted by the length of
  the clips before them), which a stream copy allows only when they were
  encoded alike (same codec, size, pixel format and codec headers);
- the mix as the default audio stream, encoded at 256 kb/s as AAC in MP4 and
  MOV, as Opus in Matroska and WebM (see MATROSKA), exactly as long as the video: a mix
  that runs longer is cut at the video's end, a shorter one is padded with
  silence, and the result says which;
- with ``keep_native``, the clips' own audio (each clip's first audio stream,
  packets copied) as a second audio stream that is not the default (a
  player's audio menu still offers it; MP4 marks the track disabled).

Packets of all streams are interleaved in time order as they are written, so
memory stays at one packet per stream whatever the video's length.

``deliver_render`` (``livemix render SESSION -o final.mp4``) renders the
session offline as long as the video, streaming the mix into the encoder as
it is made (``MixPipe``);
``python -m engine.video TAKE.json`` (``livemix video TAKE.json`` by hand)
does the same for a take of ``livemix run``: the live engine starts it in a
subprocess after each take when the session has ``[output] video``. Control
threads / child processes only.
"""
from __future__ import annotations

import argparse
import heapq
import os
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import LivemixError
from .outputs import part_path
from .sources.media import load_av, reason

VIDEO_OUTPUTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
# Matroska / WebM get Opus: its encoder delay (pre-skip) is in its header, whereas
# FFmpeg's Matroska muxer cannot signal AAC's 1024-sample priming, which would play
# the mix 21 ms late against the picture. MP4 / MOV carry AAC's delay in an edit list.
MATROSKA = (".mkv", ".webm")
AUDIO_BITRATE = 256_000            # bits per second of the mix
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000)
CHUNK = 1 << 15                    # mix frames encoded at a time


class VideoError(LivemixError):
    """A video that cannot be read or written."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration_s: float          # of the video stream, from its first picture
    start_s: float             # time of its first picture in the container (often 0)
    codec: str
    width: int
    height: int
    pix_fmt: str
    extradata: bytes
    time_base: Fraction
    audio: tuple               # (codec, rate, channels, codec headers) of its first audio stream

    def describe(self) -> str:
        return f"{self.codec} {self.width}x{self.height} {self.pix_fmt}"


def start_s(s) -> float:
    """Container time of a stream's first packet, seconds."""
    return float(s.start_time * s.time_base) if s.start_time is not None else 0.0


def _duration(c, s) -> float:
    """The video stream's length in seconds: its declared duration, else from its first
    picture to the end of its last packet (Matroska and WebM often declare none)."""
    if s.duration:
        return float(s.duration * s.time_base)
    end = None
    for p in c.demux(s):
        if p.pts is not None:
            end = max(end or 0, p.pts + (p.duration or 0))
    if end is None:
        return float((c.duration or 0) / 1_000_000)
    return float(end * s.time_base) - start_s(s)


_probed: dict = {}


def probe(path) -> VideoInfo:
    """The picture of a clip; VideoError naming it if it has none or cannot be read.
    Remembered per file (path, size, mtime): a Matroska clip is read through to
    find its length."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _probed:
        _probed[key] = _probe(path)
    return _probed[key]


def _probe(path: Path) -> VideoInfo:
    av = load_av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError(f"{path}: has no video stream")
            s = c.streams.video[0]
            cc = s.codec_context
            return VideoInfo(path=path, duration_s=_duration(c, s), start_s=start_s(s),
                             codec=cc.name, width=cc.width, height=cc.height,
                             pix_fmt=str(cc.format.name if cc.format else "?"),
                             extradata=bytes(cc.extradata or b""), time_base=s.time_base,
                             audio=tuple(_audio_params(a) for a in c.streams.audio[:1]))
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{path}: not a readable video ({reason(e)})") from None


def _audio_params(a) -> tuple:
    cc = a.codec_context
    return (cc.name if cc else "?", a.rate, a.channels, bytes(cc.extradata or b"") if cc else b"")


def native_joinable(infos: list[VideoInfo]) -> None:
    """VideoError unless every clip has an audio stream that a stream copy can join
    (keep_native): nothing of the native audio is dropped without a word."""
    for v in infos:
        if not v.audio:
            raise VideoError(f"{v.path}: has no audio stream to keep (keep_native); "
                             "set keep_native = false, or give every clip its audio")
    first = infos[0]
    for v in infos[1:]:
        if v.audio[0] != first.audio[0]:
            c0, r0, n0, _ = first.audio[0]
            c1, r1, n1, _ = v.audio[0]
            why = (f"{c1} {r1} Hz {n1} ch vs {c0} {r0} Hz {n0} ch" if (c0, r0, n0) != (c1, r1, n1)
                   else "different encoder settings")
            raise VideoError(f"{v.path}: its audio cannot be joined to {first.path.name}'s "
                             f"without re-encoding ({why}); set keep_native = false")


def joinable(infos: list[VideoInfo]) -> None:
    """VideoError unless the clips can be joined by stream copy."""
    first = infos[0]
    for v in infos[1:]:
        if (v.codec, v.width, v.height, v.pix_fmt, v.extradata) != \
                (first.codec, first.width, first.height, first.pix_fmt, first.extradata):
            why = (f"{v.describe()} vs {first.describe()}" if v.describe() != first.describe()
                   else "different encoder settings")
            raise VideoError(f"{v.path}: cannot be joined to {first.path.name} without "
                             f"re-encoding ({why}); join the clips into one video first")


@dataclass
class MuxResult:
    path: Path
    duration_s: float          # the video's
    audio_codec: str
    mix_s: float               # length of the mix given (from its first frame)
    offset_s: float            # where the mix starts in the video
    native: bool
    notes: list = field(default_factory=list)

    def fit(self) -> str:
        """What was done to the mix's length, in words."""
        end = self.offset_s + self.mix_s
        lead = f"silence for the first {self.offset_s:.3f} s, " if self.offset_s > 0 else ""
        if end > self.duration_s + 1e-6:
            return f"{lead}the mix cut at the video's end ({end - self.duration_s:.3f} s unused)"
        if end < self.duration_s - 1e-6:
            return f"{lead}the mix padded with {self.duration_s - end:.3f} s of silence"
        return f"{lead}the mix exactly as long as the video".replace(", the", ", then the")

    def summary(self) -> str:
        return (f"{self.path}: video copied ({self.duration_s:.3f} s), mix as "
                f"{self.audio_codec} {AUDIO_BITRATE // 1000} kb/s"
                + (", native audio kept as a second stream" if self.native else "")
                + f"; {self.fit()}")


def _copy_packets(c, s, out_stream, offset_s: float, end_s: float | None):
    """(time s, packet) of stream ``s`` shifted by ``offset_s``, for muxing as
    ``out_stream``; packets starting at or after ``end_s`` (container time of the
    clip) are left out."""
    shift = round(Fraction(offset_s).limit_denominator(10**9) / s.time_base)
    for p in c.demux(s):
        if p.dts is None and p.pts is None:
            continue                        # the demuxer's flush packet
        if end_s is not None and p.pts is not None and p.pts * s.time_base >= end_s:
            continue
        if p.pts is not None:
            p.pts += shift
        if p.dts is not None:
            p.dts += shift
        p.stream = out_stream
        t = (p.dts if p.dts is not None else p.pts) * s.time_base
        yield float(t), p


def _mix_packets(read, total: int, offset: int, rate: int, channels: int, stream,
                 t0: int = 0):
    """(time s, packet) of the mix encoded from container frame ``t0`` (the first
    picture): ``offset`` frames of silence, then ``read(n)`` until ``total`` frames
    (padding with silence when it runs out)."""
    av = load_av()
    layout = "mono" if channels == 1 else "stereo"
    pos = 0
    while pos < total:
        n = min(CHUNK, total - pos)
        x = np.zeros((n, channels), np.float32)
        lead = max(0, min(n, offset - pos))
        if lead < n:
            y = read(n - lead)
            x[lead:lead + len(y)] = y
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp",
                                           layout=layout)
        frame.sample_rate = rate
        frame.pts = t0 + pos
        frame.time_base = Fraction(1, rate)
        for p in stream.encode(frame):
            yield float(p.pts * p.time_base) if p.pts is not None else 0.0, p
        pos += n
    for p in stream.encode(None):
        yield float(p.pts * p.time_base) if p.pts is not None else (t0 + total) / rate, p


class _WriterGone(VideoError):
    """The muxer stopped (its own error says why)."""


class FileMix:
    """The mix from audio files played one after another (a take's parts)."""

    def __init__(self, paths):
        import soundfile as sf
        self._files = []
        for p in paths:
            try:
                self._files.append(sf.SoundFile(str(p)))
            except Exception as e:
                self.close()
                raise VideoError(f"{p}: cannot read the mix ({reason(e)})") from None
        self.rate = self._files[0].samplerate
        self.channels = min(2, self._files[0].channels)
        self.frames = sum(f.frames for f in self._files)
        self._k = 0

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` frames, across the parts (short only at the very end)."""
        parts, have = [], 0
        while have < n and self._k < len(self._files):
            y = self._files[self._k].read(n - have, dtype="float32", always_2d=True)
            if len(y) < n - have:
                self._k += 1
            parts.append(y[:, :self.channels])
            have += len(y)
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)

    def close(self) -> None:
        for f in self._files:
            f.close()


class MixPipe:
    """The mix handed from an offline render (``write``, the render's thread) to the
    muxer (``read``, another thread) as it is made: the encoder runs beside the
    render, and no temporary file holds the mix. At most ``DEPTH`` chunks wait."""

    DEPTH = 8

    def __init__(self, rate: int, channels: int):
        import queue
        self.rate, self.channels = rate, channels
        self.frames = 0                     # frames written so far
        self._q = queue.Queue(self.DEPTH)
        self._pending = np.zeros((0, channels), np.float32)
        self._end = False
        self.reader_gone = False

    def write(self, x: np.ndarray) -> None:
        import queue
        while True:
            if self.reader_gone:
                raise _WriterGone("the video writer stopped")
            try:
                self._q.put(np.array(x, np.float32), timeout=0.1)
                break
            except queue.Full:
                continue
        self.frames += len(x)

    def close(self, error: BaseException | None = None) -> None:
        """The end of the mix, or the render's failure (raised in the reader)."""
        import queue
        while not self.reader_gone:
            try:
                self._q.put(error, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int) -> np.ndarray:
        parts, have = [self._pending], len(self._pending)
        while have < n and not self._end:
            item = self._q.get()
            if item is None:
                self._end = True
            elif isinstance(item, BaseException):
                self._end = True
                raise VideoError(f"the render failed: {item}")
            else:
                parts.append(item)
                have += len(item)
        x = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._pending = x[n:]
        return x[:n]


def mux(videos, mix, out_path, keep_native: bool = False, offset_frames: int = 0) -> MuxResult:
    """Write ``out_path``: the picture of ``videos`` (joined), the mix (a FileMix or
    MixPipe: ``rate``, ``channels``, ``read(n)``, ``frames``) starting
    ``offset_frames`` into the video, and with ``keep_native`` the clips' own audio."""
    av = load_av()
    out_path = Path(out_path)
    ext = out_path.suffix.lower()
    if ext not in VIDEO_OUTPUTS:
        raise VideoError(f"{out_path}: a video needs one of {', '.join(VIDEO_OUTPUTS)}")
    infos = [probe(v) for v in videos]
    joinable(infos)
    if keep_native:
        native_joinable(infos)
    starts, t = [], 0.0
    for v in infos:
        starts.append(t)
        t += v.duration_s
    duration = t
    rate, channels = mix.rate, mix.channels
    total = round(duration * rate)
    codec = "libopus" if ext in MATROSKA else "aac"
    enc_rate = 48000 if codec == "libopus" else (rate if rate in AAC_RATES else 48000)
    tmp = part_path(out_path)
    ins = []
    try:
        for v in videos:
            try:
                ins.append(av.open(str(v)))
            except Exception as e:
                raise VideoError(f"{v}: not a readable video ({reason(e)})") from None
        try:
            out = av.open(str(tmp), "w", format=_format(ext))
        except Exception as e:
            raise VideoError(f"{out_path}: cannot write ({reason(e)})") from None
        try:
            try:
                vout = out.add_stream_from_template(ins[0].streams.video[0])
                aout = out.add_stream(codec, rate=enc_rate,
                                      layout="mono" if channels == 1 else "stereo")
                aout.bit_rate = AUDIO_BITRATE
                nout = None
                if keep_native:
                    nout = out.add_stream_from_template(ins[0].streams.audio[0])
            except Exception as e:
                raise VideoError(f"{out_path}: {ext[1:].upper()} cannot hold this video "
                                 f"({infos[0].codec}): {reason(e)}; use .mp4 or "
                                 ".mkv") from None
            aout.disposition = av.stream.Disposition.default
            aout.metadata["title"] = "livemix mix"
            if nout is not None:
                nout.disposition = 0
                nout.metadata["title"] = "native audio (original)"
            # the output's timeline is the first clip's: its packets keep their times,
            # each later clip's first picture lands where the previous clip ends
            t0 = infos[0].start_s
            shifts = [t0 + s - v.start_s for s, v in zip(starts, infos)]
            gens = [_copy_packets(c, c.streams.video[0], vout, sh, None)
                    for c, sh in zip(ins, shifts)]
            if nout is not None:          # a second demuxer per clip for its audio
                ins += [av.open(str(v)) for v in videos]
                gens += [_copy_packets(c, c.streams.audio[0], nout, sh,
                                       v.start_s + v.duration_s)
                         for c, sh, v in zip(ins[len(videos):], shifts, infos)]
            gens.append(_mix_packets(mix.read, total, offset_frames, rate, channels, aout,
                                     round(t0 * rate)))
            try:
                for _, p in heapq.merge(*gens, key=lambda tp: tp[0]):
                    out.mux(p)
            except LivemixError:
                raise
            except Exception as e:
                raise VideoError(f"{out_path}: writing failed ({reason(e)})") from None
        finally:
            try:
                out.close()               # writes the trailer (MP4's index)
            except Exception as e:
                raise VideoError(f"{out_path}: writing failed ({reason(e)})") from None
        try:
            os.replace(tmp, out_path)
        except OSError as e:
            raise VideoError(f"{out_path}: cannot write ({e.strerror})") from None
    finally:
        for c in ins:
            c.close()
        if tmp.exists():
            tmp.unlink()
    return MuxResult(path=out_path, duration_s=duration,
                     audio_codec="Opus" if codec == "libopus" else "AAC",
                     mix_s=mix.frames / rate, offset_s=offset_frames / rate,
                     native=nout is not None)


def _format(ext: str) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
            ".webm": "webm"}[ext]


def check_video_output(session, out_path) -> None:
    """LivemixError unless ``out_path`` can be a render of ``session``: a video render
    needs [output] video (what else the output must not be: engine.outputs)."""
    if Path(out_path).suffix.lower() in VIDEO_OUTPUTS and not session.output.video:
        raise LivemixError(f"{out_path}: a video render needs the picture: add [output] "
                           f"video = \"clip.mp4\" to {session.path.name}")


def deliver_render(session, out_path, render_kwargs: dict) -> tuple:
    """``livemix render SESSION -o final.mp4``: render as long as the video while the
    muxer encodes it (a MixPipe between the two threads). Returns (RenderResult,
    MuxResult)."""
    import threading

    from .backends.offline import render
    infos = [probe(v) for v in session.output.video]
    joinable(infos)
    duration = sum(v.duration_s for v in infos)
    pipe = MixPipe(session.engine.samplerate, session.engine.channels)
    done = {}

    def writer():
        try:
            done["mux"] = mux(session.output.video, pipe, out_path, session.output.keep_native)
        except BaseException as e:     # handed to the render's thread below
            done["error"] = e
        finally:
            pipe.reader_gone = True

    t = threading.Thread(target=writer, name="livemix-mux", daemon=True)
    t.start()
    try:
        result = render(session, str(out_path), duration_s=duration, sink=pipe,
                        **render_kwargs)
    except BaseException as e:
        pipe.close(e)
        t.join()
        if isinstance(e, _WriterGone) and "error" in done:
            raise done["error"] from None
        raise
    pipe.close()
    t.join()
    if "error" in done:
        raise done["error"]
    muxed = done["mux"]
    if result.natural_frames is not None:       # say what the video's length did to it
        muxed.mix_s = result.natural_frames / result.samplerate
    result.path = str(out_path)
    return result, muxed


# --- takes -----------------------------------------------------------------------

def deliver_take(take, out_path=None, force: bool = False) -> MuxResult:
    """The video of a take of ``livemix run`` (``take``: its sidecar or any of its
    audio files): the take's master audio placed at its session frame in the session's
    ``[output] video``. The output follows engine.outputs' rule."""
    from .outputs import check_output
    from .report import find_sidecar, load_sidecar, master_paths, take_files
    from .session import load_session, session_sources
    sidecar_path = find_sidecar(take)
    data = load_sidecar(sidecar_path)
    session_file = data.get("session")
    if not session_file:
        raise VideoError(f"{sidecar_path}: the take does not name its session")
    session = load_session(session_file, check_files=False)
    if not session.output.video:
        raise VideoError(f"{session.path}: no [output] video to deliver the take into")
    mix = FileMix([p for p, _ in master_paths(sidecar_path, data)])
    ext = session.output.video[0].suffix.lower()
    out = Path(out_path) if out_path else Path(sidecar_path).with_suffix(
        ext if ext in VIDEO_OUTPUTS else ".mkv")
    if out.suffix.lower() not in VIDEO_OUTPUTS:
        raise VideoError(f"{out}: a video is {', '.join(VIDEO_OUTPUTS)}")
    check_output(out, [*take_files(sidecar_path, data), session.path,
                       *session_sources(session)], force=force,
                 what="one of the take's or the session's files")
    try:
        return mux(session.output.video, mix, out, session.output.keep_native,
                   offset_frames=int(data.get("start_frame") or 0))
    finally:
        mix.close()


def add_video_parser(sub):
    """Add ``video`` to the CLI's subparsers: the job ``run`` starts after each take,
    by hand (a take recovered after a crash, or another output name)."""
    p = sub.add_parser("video", help="mux a take's audio into its session's [output] video")
    p.add_argument("take", metavar="TAKE", help="the take's sidecar (.json) or audio file")
    p.add_argument("-o", "--output", metavar="OUT.mp4",
                   help="default: <take>.mp4 (the extension of the session's video)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=lambda args: print(deliver_take(args.take, args.output,
                                                        args.force).summary()) or 0)
    return p


def main(argv=None) -> int:
    """``python -m engine.video TAKE.json [-o OUT.mp4]``: prints the video's summary;
    errors as one line on stderr, exit 1. Runs at nice +10 (next to a live engine)."""
    p = argparse.ArgumentParser(prog="python -m engine.video",
                                description="Mux a take's mix into the session's video.")
    p.add_argument("take", metavar="TAKE.json")
    p.add_argument("-o", "--output", metavar="OUT.mp4")
    args = p.parse_args(argv)
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    try:
        print(deliver_take(args.take, args.output).summary())
    except LivemixError as e:
        print(f"livemix video: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
