"""A live run: shared state, reader process, recorder, backend, and the control API.

``LiveEngine`` lives in the parent process and owns everything that must
outlive an audio device. Its methods are for one control thread (the CLI
loop, the UI); ``set`` may also be called from the MIDI thread: commands go
through a single-producer queue guarded by a lock that only control threads
take, never the audio thread.
"""
from __future__ import annotations

import dataclasses
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .automation import drain as drain_automation
from .dsp.layout import (EV_UNDERRUN, EV_XRUN, Q_READ, Q_WRITE, PA_INPUT_OVERFLOW, PA_INPUT_UNDERFLOW,
                         PA_OUTPUT_OVERFLOW, PA_OUTPUT_UNDERFLOW, SN_CEIL, SN_M, SN_PEAK_L, SN_PEAK_R, SN_S,
                         ST_LAST_PPM, STK_COMP, STK_GATE, STK_OPEN, STK_PEAK, STK_TP, A_LOST, DS_DEPTH, IO_RECORD, ST_REC_START, M_GAIN_DB, T_GAIN_DB, T_MUTE, T_PAN,
                         T_SOLO, K_FRAME, LOAD_BIN_PPM, S_UNDERRUNS, ST_CALLBACKS,
                         ST_FRAMES, ST_MAX_NS, ST_MAX_PPM, ST_REC_DROPPED, ST_SUM_PPM, ST_XRUNS,
                         EngineState, IoState)
from . import control
from .errors import LivemixError
from .params import P_DUCK_DEPTH, P_GAIN, P_MASTER_GAIN, P_MUTE, P_PAN, P_SOLO, P_STRIP
from .dsp.strip import SP_TARGET
from .rt import shm
from .rt.cycle import engine_cycle
from .rt.rings import command_push
from .rt.snapshot import drain_events, read_snapshot
from .rt.state import allocate, allocate_io, master_meter
from .dsp.meters import MS_M_MAX, MS_S_MAX, MS_SP, MS_TP, integrated_lufs, lra_lu, lufs
from .sources.reader import ReaderProcess

READER_PERIOD_S = 0.02
LANE_HZ = 10                 # take report lanes: values per second
REPORT_TIMEOUT_S = 300.0     # longest wait for a take's report at the end of a run
VIDEO_TIMEOUT_S = 3600.0     # ... and for its video (AAC encodes about 60x realtime)
SWITCH_INTERVAL_S = 0.0005   # GIL switch interval while live (see _start)
SILENCE_LUFS = -120.0        # meters show -inf under this
MAX_AHEAD_S = 60.0           # the furthest ahead a timed change may be, seconds


def warm_up(session, maxblock: int) -> None:
    """Compile (or load from cache) every kernel the audio path runs, on a scratch state."""
    st = allocate(session, maxblock=maxblock, ring_frames=4 * maxblock)
    io = allocate_io(session, record_s=0.1)
    out = np.zeros((maxblock, session.engine.channels), np.float32)
    engine_cycle(st, io, out, out, maxblock, 0)


def xrun_text(status: int) -> str:
    """PortAudio's status flags in words ("output underflow", ...)."""
    names = [name for bit, name in ((PA_OUTPUT_UNDERFLOW, "output underflow"),
                                    (PA_OUTPUT_OVERFLOW, "output overflow"),
                                    (PA_INPUT_UNDERFLOW, "input underflow"),
                                    (PA_INPUT_OVERFLOW, "input overflow")) if status & bit]
    return ", ".join(names) or f"status {status:#x}"


def _loudness(energy: float) -> float:
    """LUFS of a meter's energy; -inf under SILENCE_LUFS (a decaying filter's residue,
    1e-130 and such, is silence, not -1296 LUFS)."""
    v = lufs(energy)
    return v if v >= SILENCE_LUFS else -math.inf


def _db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0.0 else -math.inf


def _num(v) -> str:
    return "-inf" if v is None else f"{v:.1f}"


@dataclass
class Summary:
    duration_s: float
    frames: int
    xruns: int
    dropped_frames: int
    underruns: dict
    load_mean: float          # fraction of the block period
    load_p999: float
    load_max: float
    callback_max_us: float
    latency_s: float
    backend: str
    device: str
    take: str | None
    events: list = field(default_factory=list)
    stopped_reason: str | None = None
    reports: list = field(default_factory=list)
    loudness: dict | None = None      # the last take's figures
    videos: list = field(default_factory=list)   # the takes muxed into [output] video

    def lines(self) -> list[str]:
        under = sum(self.underruns.values())
        out = [f"ran {self.duration_s:.2f} s ({self.frames} frames) on {self.backend}: "
               f"{self.device}, latency {self.latency_s * 1000:.1f} ms",
               f"xruns {self.xruns}, dropped frames {self.dropped_frames}, underruns {under}"
               + (f" ({', '.join(f'{k}: {v}' for k, v in self.underruns.items() if v)})"
                  if under else ""),
               f"callback load mean {self.load_mean * 100:.1f} %, p99.9 "
               f"{self.load_p999 * 100:.1f} %, max {self.load_max * 100:.1f} % "
               f"({self.callback_max_us:.0f} us)"]
        if self.take:
            out.append(f"take: {self.take}")
        if self.loudness:
            f = self.loudness
            out.append(f"take loudness: integrated {_num(f['integrated_lufs'])} LUFS, "
                       f"LRA {_num(f['lra_lu'])} LU, true peak {_num(f['true_peak_dbtp'])} dBTP, "
                       f"max short-term {_num(f['short_term_max_lufs'])} LUFS")
        for png in self.reports:
            out.append(f"take report: {png}")
        for line in self.videos:
            out.append(f"take video: {line}")
        if self.stopped_reason:
            out.append(f"recording stopped: {self.stopped_reason}")
        if self.dropped_frames:
            out.append(f"WARNING: {self.dropped_frames} frames could not be recorded in time; "
                       "the take holds silence in their place")
        return out



def _db_array(gains: np.ndarray) -> np.ndarray:
    """Linear gains -> dB (-inf for 0)."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(gains)


def _strip_meters(strip, row) -> dict:
    """A track's strip meters from its snapshot row: the gate's state and gain reduction
    (dB, <= 0), the compressor's reduction (dB, <= 0); None for a stage it does not have."""
    gate = strip.gate is not None
    return {"gate_open": bool(row[STK_OPEN]) if gate else None,
            "gate_gr_db": float(row[STK_GATE]) if gate else None,
            "comp_gr_db": -float(row[STK_COMP]) if strip.comp is not None else None}

class LiveEngine:
    """Runs a session in real time. ``start``, ``set``, ``status``, ``stop``."""

    def __init__(self, session, backend: str = "auto", device: str | None = None,
                 blocksize: int | None = None, samplerate: int | None = None,
                 client_name: str = "livemix", record: bool = True, takes_dir=None,
                 say=print, report: bool = True):
        from .session import blocksize_problem, samplerate_problem
        for name, value in (("samplerate", samplerate), ("blocksize", blocksize),
                            ("session blocksize", session.engine.blocksize)):
            why = value is not None and (samplerate_problem(value) if name == "samplerate"
                                         else blocksize_problem(value, live=True))
            if why:
                raise LivemixError(f"{name}: {why}")
        if backend not in ("auto", "portaudio", "virtual"):
            raise LivemixError(f"backend {backend!r}: use auto, portaudio or virtual")
        if samplerate:
            session = dataclasses.replace(
                session, engine=dataclasses.replace(session.engine, samplerate=samplerate))
        self.session = session
        self.backend_choice = backend
        self.device = device
        self.blocksize = blocksize          # None: the host API's choice (no added latency)
        self.client_name = client_name
        self.record = record
        self.takes_dir = takes_dir
        self.say = say
        self.events: list[dict] = []
        self.automation: list[dict] = []   # every change the audio thread applied
        self.takes: list[str] = []          # finished takes, in order
        self.report = report                # draw <take>.png after each take
        self.take_loudness = None           # the last take's loudness figures
        self.reports: list[str] = []        # the PNGs drawn
        self.videos: list[str] = []         # the takes muxed into the session's video
        self._jobs = []                     # (kind, child process) after each take
        self._take_lock = threading.Lock()
        self._cmd_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._take_q = queue.Queue()        # toggle_record_soon -> the takes thread
        self._take_q_lock = threading.Lock()
        self._take_worker = None
        self._pending: dict = {}            # (param id, target) -> (frame, value) awaiting room
        self._queued: dict = {}             # (param id, target) -> (queue index after it, value)
        self._last_timed = -1               # frame of the last timed change queued
        self.coalesced = 0                  # changes that waited for room in the queue
        self._stop_readers = threading.Event()
        self.backend = None
        self.recorder = None
        self.arena = None
        self._reader = None
        self.readers = None
        self.started_at = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Allocate, warm up, start readers, recorder and audio. On failure, Ctrl-C
        included, everything started so far is torn down, the take it began is
        removed (it is nobody's take), and the error raised."""
        try:
            self._start()
        except BaseException:
            self._teardown(discard_take=True)
            raise

    def _teardown(self, discard_take: bool = False) -> None:
        if self.backend is not None:
            self.backend.stop()
            self.backend = None
        if self.recorder is not None:
            result = self.recorder.stop()
            if result.frames == 0 or discard_take:
                for path in list(result.paths) + [getattr(result, "sidecar", None)]:
                    if path:
                        Path(path).unlink(missing_ok=True)
            self.recorder = None
        self._stop_readers.set()
        if getattr(self, "_reader", None) is not None:
            self._reader.join(timeout=2.0)
        if getattr(self, "readers", None) is not None:
            self.readers.stop()
            self.readers = None
        if getattr(self, "arena", None) is not None:
            self.arena.close()
            self.arena = None
        if getattr(self, "_switch_interval", None) is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    def _start(self) -> None:
        # The reader and writer threads share the GIL with whatever else runs in this
        # process (UI, MIDI, the user's code). Each GIL hand-off can cost a whole
        # switch interval (5 ms by default), and a reader makes hundreds of them per
        # second: a garbage-heavy thread beside it starved the readers into
        # underruns. A 0.5 ms interval keeps them fed (the audio thread never needs
        # the GIL at all).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        s = self.session
        maxblock = self.blocksize or s.engine.blocksize
        inputs = {i: (t.input[0] - 1, t.input[-1] - 1) for i, t in enumerate(s.tracks) if t.input}
        inch = max((max(t.input) for t in s.tracks if t.input), default=0)
        # the io block (record ring) outlives a killed parent: `livemix recover` salvages
        # the frames the writer had not yet written
        self.arena, g = shm.create({
            "st": lambda alloc: allocate(s, maxblock=maxblock, alloc=alloc),
            "io": lambda alloc: allocate_io(s, stems=s.record.stems, input_channels=inch,
                                            input_map=inputs, align=True, alloc=alloc),
        }, keep=("io",))
        self.st: EngineState = g["st"]
        self.io: IoState = g["io"]
        self.readers = ReaderProcess(self.arena.layout(), s, on_event=self._reader_event)
        self.readers.start()                  # every ring full before the audio starts
        warm_up(s, maxblock)
        self._denoise_note()
        self._reader = threading.Thread(target=self._housekeeping, name="livemix-automation",
                                        daemon=True)
        self._reader.start()
        if self.record:
            self._new_take()
        self._start_backend(inch, maxblock)
        self.started_at = time.monotonic()

    def _denoise_note(self) -> None:
        """Say so before the stream starts when the denoisers would load the audio thread
        past half a block on this machine (RNNoise's cost measured here, now)."""
        s = self.session
        n = sum(1 for t in s.tracks if t.strip.denoise)
        if n:
            from .dsp.denoise import frame_cost_s, load_note
            note = load_note(n, self.blocksize or s.engine.blocksize, s.engine.samplerate,
                             frame_cost_s())
            if note:
                self.say(f"livemix: note: {note}")

    def _start_backend(self, inch: int, maxblock: int) -> None:
        from .backends.child import AudioChild, StreamOptions
        from .backends.portaudio import NoOutputDevice
        s = self.session

        def child(kind):
            opts = StreamOptions(backend=kind, samplerate=s.engine.samplerate,
                                 blocksize=self.blocksize or 0, channels=s.engine.channels,
                                 input_channels=inch, device=self.device,
                                 client_name=self.client_name, maxblock=maxblock)
            return AudioChild(self.arena.layout(), self.io, opts, on_event=self._event)

        if self.backend_choice in ("auto", "portaudio"):
            # An explicit --backend portaudio tries twice: a busy JACK server can
            # refuse one client (PortAudio then lists no devices) and accept the next.
            tries = 2 if self.backend_choice == "portaudio" else 1
            for attempt in range(tries):
                backend = child("portaudio")
                try:
                    backend.start()
                    self.backend = backend
                    self._say_memory()
                    return
                except NoOutputDevice:
                    if attempt + 1 < tries:
                        time.sleep(0.5)
            if self.backend_choice == "portaudio":
                raise LivemixError("--backend portaudio: no audio output device found "
                                   "(see `livemix devices`)")
            if self.device:
                raise LivemixError(f"--device {self.device!r}: this machine has no audio "
                                   "output device (without --device, livemix would use the "
                                   "virtual backend)")
            self.say("livemix: no audio output device found: using the virtual backend "
                     "(clock-paced, no sound)")
        if inch:
            raise LivemixError("the session has live-input tracks, which need an audio device "
                               "(the virtual backend has no inputs)")
        self.backend = child("virtual")
        self.backend.start()
        self._say_memory()
        refused = self.backend.info.get("realtime_refused")
        if refused:
            self.say(f"livemix: note: the virtual clock has no real-time scheduling "
                     f"({refused}): other programs can make it late (raise the rtprio limit "
                     "to allow it)")

    def _say_memory(self) -> None:
        memory = self.backend.info.get("memory", "")
        if "not locked" in memory:
            self.say(f"livemix: note: the audio process's memory could not be locked "
                     f"({memory.split('(', 1)[-1].rstrip(')')}): if the system pages it out, "
                     "the audio will be late (raise the memlock limit to allow it)")

    def _housekeeping(self) -> None:
        """Move the audio thread's change log and events out of their rings, and sample
        the ducking lanes for the take (control thread)."""
        while not self._stop_readers.wait(READER_PERIOD_S):
            self._drain_rings()
            self._sample_lanes()
            if self._pending:
                with self._cmd_lock:
                    self._flush_pending()

    def _drain_rings(self) -> None:
        """Move the applied changes and the events out of the audio thread's rings. Each
        ring has one reader: whichever control thread holds ``_drain_lock``."""
        with self._drain_lock:
            self.automation.extend(drain_automation(self.st, self.session))
            self._drain_events()

    def _drain_events(self) -> None:
        """Audio-thread events (xruns, underruns, the limiter starting) -> events, take."""
        names = [t.name for t in self.session.tracks]
        for frame, kind, value in drain_events(self.st):
            if kind == EV_XRUN:
                e = ("xrun", xrun_text(int(value)))
            elif kind == EV_UNDERRUN:
                e = ("underrun", f"{names[int(value)]}: its source did not keep up")
            else:
                e = ("ceiling", f"limiter reducing ({int(value)} samples in the first block)")
            self.events.append({"frame": frame, "kind": e[0], "detail": e[1]})
            rec = self.recorder
            start = int(self.io.stats[ST_REC_START])
            if rec is not None and rec.recording and frame >= start:
                rec.note(e[0], e[1], frame - start)

    def _sample_lanes(self) -> None:
        """Gain reduction lanes at LANE_HZ for the take report: each ducking rule's and
        each compressor's, the most reduction (dB, <= 0) in each 1/LANE_HZ s (control
        thread)."""
        rec = self.recorder
        if rec is None or not rec.recording or not self._lane_names:
            return
        snap = read_snapshot(self.st)
        rules = snap.rules[:len(self.session.ducking)]     # (the array has at least one)
        now = np.concatenate([_db_array(rules), -snap.tracks[self._comp_tracks, STK_COMP]])
        step = self.session.engine.samplerate // LANE_HZ
        start = int(self.io.stats[ST_REC_START])
        bucket = (int(snap.frame) - start) // step
        lanes = self._lanes
        if lanes["frame0"] is None:
            lanes["frame0"] = max(0, bucket) * step
            lanes["_bucket"] = max(0, bucket)
            lanes["_min"] = now
        if bucket > lanes["_bucket"]:
            for (group, name), v in zip(self._lane_names, lanes["_min"]):
                lanes[group][name].append(round(float(v), 2))
            lanes["_bucket"] += 1
            while lanes["_bucket"] < bucket:      # a gap: repeat the last value
                for group, name in self._lane_names:
                    lanes[group][name].append(lanes[group][name][-1])
                lanes["_bucket"] += 1
            lanes["_min"] = now
        else:
            lanes["_min"] = np.minimum(lanes["_min"], now)

    def _reset_lanes(self) -> None:
        s = self.session
        self._comp_tracks = [t for t, track in enumerate(s.tracks) if track.strip.comp]
        self._lane_names = ([("duck_gr_db", f"ducking[{r + 1}]") for r in range(len(s.ducking))]
                            + [("comp_gr_db", s.tracks[t].name) for t in self._comp_tracks])
        self._lanes = {"rate_hz": LANE_HZ, "frame0": None, "_bucket": 0, "_min": None,
                       "duck_gr_db": {}, "comp_gr_db": {}}
        for group, name in self._lane_names:
            self._lanes[group][name] = []

    def snapshot(self) -> dict:
        """Meters and health for a UI (the contract in ``engine.ui``). Any control
        thread; never blocks the audio thread (it reads the seqlocked snapshot the
        audio thread publishes PUBLISH_HZ times a second)."""
        st, io, s = self.st, self.io, self.session
        snap = read_snapshot(st)
        sr = s.engine.samplerate
        tracks = []
        for t, track in enumerate(s.tracks):
            rules = st.track_rules[t, 1:1 + st.track_rules[t, 0]]
            gr = min((snap.rules[r] for r in rules), default=1.0)
            tracks.append({
                "name": track.name, "gain_db": float(st.track_ctl[t, T_GAIN_DB]),
                "pan": float(st.track_ctl[t, T_PAN]), "mute": bool(st.track_ctl[t, T_MUTE]),
                "solo": bool(st.track_ctl[t, T_SOLO]),
                "peak_dbfs": _db(snap.tracks[t, STK_PEAK]),
                "tp_dbtp": _db(snap.tracks[t, STK_TP]), "duck_gr_db": _db(gr),
                **_strip_meters(track.strip, snap.tracks[t])})
        m = master_meter(st)
        target = s.master.target
        master = {
            "gain_db": float(st.master[M_GAIN_DB]),
            "peak_dbfs": _db(max(snap.head[SN_PEAK_L], snap.head[SN_PEAK_R])),
            "peak_l_dbfs": _db(snap.head[SN_PEAK_L]), "peak_r_dbfs": _db(snap.head[SN_PEAK_R]),
            "true_peak_dbtp": _db(m.state[MS_TP]), "sample_peak_max_dbfs": _db(m.state[MS_SP]),
            "momentary_lufs": _loudness(snap.head[SN_M]),
            "short_term_lufs": _loudness(snap.head[SN_S]),
            "integrated_lufs": integrated_lufs(m), "lra_lu": lra_lu(m),
            "momentary_max_lufs": lufs(m.state[MS_M_MAX]),
            "short_term_max_lufs": lufs(m.state[MS_S_MAX]),
            "ceiling_db": s.master.ceiling_db, "ceiling_mode": s.master.ceiling_mode,
            "ceiling_hits": int(snap.head[SN_CEIL]),
            "target": None if target is None else {
                "name": target.name, "lufs": target.lufs,
                "true_peak_dbtp": target.true_peak_dbtp}}
        stats = io.stats
        rec = self.recorder
        recording = bool(io.io_cfg[IO_RECORD]) and rec is not None
        info = getattr(self.backend, "info", {}) or {}
        latency = info.get("latency_s")
        engine = {
            "backend": self.backend.name if self.backend else "none",
            "device": info.get("device") or "?",
            "load": int(stats[ST_LAST_PPM]) / 1e6, "load_max": int(stats[ST_MAX_PPM]) / 1e6,
            "xruns": int(stats[ST_XRUNS]), "dropped_frames": int(stats[ST_REC_DROPPED]),
            "underruns": int(st.src_pos[:, S_UNDERRUNS].sum()),
            "latency_ms": None if latency is None else float(latency) * 1000.0,
            "recording": recording, "take": rec.take if recording else None,
            "take_s": rec.frames / sr if recording else 0.0,
            "take_bytes": rec.bytes_written if recording else 0,
            "device_lost": bool(getattr(self.backend, "device_lost", False))}
        return {"time_s": int(stats[ST_FRAMES]) / sr, "frame": int(snap.frame),
                "tracks": tracks, "master": master, "engine": engine, "controller": None}

    def _reader_event(self, kind: str, detail: str) -> None:
        if kind == "notice":
            self.say(f"livemix: note: {detail}")
        self._event(kind, detail)

    def _event(self, kind: str, detail: str) -> None:
        frame = int(self.st.clock[K_FRAME]) if hasattr(self, "st") else 0
        self.events.append({"frame": frame, "kind": kind, "detail": detail})
        rec = self.recorder
        if kind in ("device_lost", "device_back") and rec is not None and rec.recording:
            rec.note(kind, detail, max(0, frame - int(self.io.stats[ST_REC_START])))
        if kind in ("device_lost", "device_back", "disk_low", "recording_stopped",
                    "source_error", "compiling"):
            self.say(f"livemix: {kind.replace('_', ' ')}: {detail}")

    # -- control API ------------------------------------------------------------
    def set(self, target, param: str, value: float, frame: int | None = None) -> None:
        """Change a parameter (``engine.control``): target is a track name or 0-based
        index, "master", or a 0-based ducking rule index for duck_depth; value in dB
        for gains (-inf allowed; clamped to +24), -1..1 for pan, 0/1 for mute and
        solo. frame: None (or -1) for as soon as possible, or the session frame to apply it
        at (an integer from a second ago, applied late, to MAX_AHEAD_S ahead; timed
        changes in non-decreasing order, and each holds the changes queued after it
        until its frame). LivemixError naming what is wrong.

        When the audio thread's queue is full (it stopped taking changes: a device
        outage) the change waits on this side, the latest per parameter, and goes in
        as soon as there is room: the last value set always arrives. Any control
        thread."""
        p, t = control.resolve(self.session, target, param)
        value = control.clamp(p, value)
        at = -1 if frame is None or frame == -1 else self._check_frame(frame)
        with self._cmd_lock:
            self._flush_pending()
            if self._pending or not command_push(self.st.cmd_ring, self.st.cmd_idx, at,
                                                 p.pid, t, value):
                self._pending.pop((p.pid, t), None)
                self._pending[(p.pid, t)] = (at, value)
                self.coalesced += 1
            self._queued[(p.pid, t)] = (int(self.st.cmd_idx[Q_WRITE]), value)

    def _check_frame(self, frame) -> int:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise LivemixError(f"frame {frame!r}: a session frame is a whole number")
        now = int(self.st.clock[K_FRAME])
        sr = self.session.engine.samplerate
        if frame < now - sr:
            raise LivemixError(f"frame {frame}: more than a second in the past "
                               f"(the engine is at frame {now})")
        if frame > now + MAX_AHEAD_S * sr:
            raise LivemixError(f"frame {frame}: more than {MAX_AHEAD_S:.0f} s ahead "
                               f"(the engine is at frame {now})")
        if frame < self._last_timed:
            raise LivemixError(f"frame {frame}: before a change already queued for "
                               f"frame {self._last_timed} (timed changes go in order)")
        self._last_timed = int(frame)
        return int(frame)

    def _flush_pending(self) -> None:
        """Queue the changes that waited for room, oldest first. _cmd_lock held."""
        while self._pending:
            key = next(iter(self._pending))
            at, value = self._pending[key]
            if not command_push(self.st.cmd_ring, self.st.cmd_idx, at, key[0], key[1], value):
                return
            del self._pending[key]

    def get(self, target, param: str) -> float:
        """The value the audio thread last applied: dB for gains (-inf for silence),
        -1..1 for pan, 0/1 for mute, solo and the strip's stage switches, a strip value in
        its unit (targets as for ``set``). Any control thread."""
        p, t = control.resolve(self.session, target, param)
        if p.pid >= P_STRIP:
            return float(self.st.sp[t, SP_TARGET, p.pid - P_STRIP])
        if p.pid == P_MASTER_GAIN:
            return float(self.st.master[M_GAIN_DB])
        if p.pid == P_DUCK_DEPTH:
            return float(self.st.rule_state[t, DS_DEPTH + 1])
        col = {P_GAIN: T_GAIN_DB, P_PAN: T_PAN, P_MUTE: T_MUTE, P_SOLO: T_SOLO}[p.pid]
        return float(self.st.track_ctl[t, col])

    def target(self, target, param: str) -> float:
        """Where the parameter is heading: the latest value ``set`` queued that the
        audio thread has not applied yet, else the applied value (``get``). What a
        relative encoder or a toggle button must start from. Any control thread."""
        p, t = control.resolve(self.session, target, param)
        with self._cmd_lock:
            if (p.pid, t) in self._pending:
                return self._pending[(p.pid, t)][1]
            queued = self._queued.get((p.pid, t))
            if queued is not None and int(self.st.cmd_idx[Q_READ]) < queued[0]:
                return queued[1]
        return self.get(target, param)

    def status(self) -> dict:
        """A snapshot of the engine's health and meters (control thread)."""
        stats = self.io.stats
        sr = self.session.engine.samplerate
        frames = int(stats[ST_FRAMES])
        return {
            "time_s": frames / sr,
            "callbacks": int(stats[ST_CALLBACKS]),
            "xruns": int(stats[ST_XRUNS]),
            "dropped_frames": int(stats[ST_REC_DROPPED]),
            "underruns": int(self.st.src_pos[:, S_UNDERRUNS].sum()),
            "load_max": int(stats[ST_MAX_PPM]) / 1e6,
            "peak_dbfs": float(20 * np.log10(max(self.st.master_meter[:, 0].max(), 1e-10))),
            "recording": bool(self.io.io_cfg[IO_RECORD]),
            "device_lost": bool(getattr(self.backend, "device_lost", False)),
        }

    def _load_p999(self) -> float:
        hist = self.io.load_hist
        total = int(hist.sum())
        if total == 0:
            return 0.0
        k = int(np.searchsorted(np.cumsum(hist), 0.999 * total))
        # the bin's upper edge, but never above the largest load measured
        return min((k + 1) * LOAD_BIN_PPM, int(self.io.stats[ST_MAX_PPM])) / 1e6

    # -- takes ------------------------------------------------------------------------
    def _new_take(self) -> None:
        from .recorder import Recorder
        s = self.session
        tdir = self.takes_dir or s.record.dir or (s.path.parent / "takes")
        recorder = Recorder(s, self.io, tdir, format=s.record.format,
                            subtype=s.record.subtype, stems=s.record.stems,
                            on_event=self._event, ring=self.arena.layout().groups["io"])
        recorder.start()                     # raises a one-line LivemixError if it cannot
        self._reset_lanes()
        self.recorder = recorder

    def _finish_take(self):
        """Stop the current take with its sidecar complete; returns its TakeResult."""
        self.recorder.end_audio()       # the take's last frame is known: now its events
        self._drain_rings()
        extra = self._sidecar_extra()
        extra["lanes"] = {k: v for k, v in self._lanes.items() if not k.startswith("_")}
        target = self.session.master.target
        extra["target"] = None if target is None else dataclasses.asdict(target)
        start = int(self.io.stats[ST_REC_START])
        extra["start_frame"] = start     # session frame of the take's first frame
        self.recorder.sidecar_extra.update(extra)
        result = self.recorder.stop()
        self.take_loudness = self.recorder.loudness()
        self.recorder = None
        if result.paths:
            self.takes.append(str(result.paths[0]))
            if result.frames > 0 and result.sidecar is not None:
                if self.report:
                    self._start_job("report", result.sidecar)
                if self.session.output.video:
                    self._start_job("video", result.sidecar)
        return result

    def _start_job(self, kind: str, sidecar) -> None:
        """After a take, in a child process (matplotlib and FFmpeg stay out of this one):
        "report" draws <take>.png, "video" muxes the take into [output] video."""
        import subprocess
        # its own session: a Ctrl-C that stops the run does not cut the job short
        proc = subprocess.Popen([sys.executable, "-m", f"engine.{kind}", str(sidecar)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self._jobs.append((kind, proc, sidecar))

    def _wait_jobs(self) -> None:
        """Wait for the take reports and videos still being made; note each or its failure."""
        import subprocess
        for kind, proc, sidecar in self._jobs:
            limit = VIDEO_TIMEOUT_S if kind == "video" else REPORT_TIMEOUT_S
            try:
                out, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                err = f"took longer than {limit:.0f} s"
                for part in Path(sidecar).parent.glob(f".{Path(sidecar).stem}.*.part"):
                    part.unlink(missing_ok=True)    # the unfinished video
            if proc.returncode == 0 and out.strip():
                (self.reports if kind == "report" else self.videos).append(out.strip())
            else:
                last = (err or "").strip().splitlines()[-1:] or ["no reason given"]
                self.say(f"livemix: take {kind} not written: {last[0][:300]}")
        self._jobs = []

    def toggle_record(self) -> bool:
        """Start a new take, or finish the one running (the UI's `r`, a controller's
        REC button). Returns True when a take is now recording. Control thread."""
        with self._take_lock:
            if self.recorder is not None and self.recorder.recording:
                self._finish_take()
                self._event("take_stopped", self.takes[-1] if self.takes else "")
                return False
            self._new_take()
            self._event("take_started", self.recorder.take)
            return True

    def toggle_record_soon(self) -> None:
        """``toggle_record`` on the takes thread, in the order asked: for controllers and
        UIs, whose own thread must not wait while a take finishes (the writer's last
        frames, FLAC transcoding, checks: seconds). Any control thread."""
        with self._take_q_lock:
            if self._take_worker is None:
                self._take_worker = threading.Thread(target=self._take_jobs,
                                                     name="livemix-takes", daemon=True)
                self._take_worker.start()
            self._take_q.put("toggle")

    def _take_jobs(self) -> None:
        while self._take_q.get() == "toggle":
            try:
                self.toggle_record()
            except LivemixError as e:
                self._event("recording_stopped", str(e))

    def _stop_take_jobs(self) -> None:
        with self._take_q_lock:
            worker, self._take_worker = self._take_worker, None
        if worker is not None:
            self._take_q.put("stop")
            worker.join()

    def abort(self) -> None:
        """Stop everything at once and remove the take begun (a start cut short by
        Ctrl-C: nobody's take). Control thread."""
        self._stop_take_jobs()
        self._teardown(discard_take=True)

    def stop(self, wait_jobs: bool = True) -> Summary:
        """Finish the take, stop audio, return the summary. Control thread.
        wait_jobs: wait for the take's report and video (False: they finish in the
        background, and the summary says where they will be).

        The take finishes while the audio still runs, so that it gets the frames
        still in the limiter's delay (the master's latency) after the stop."""
        self._stop_take_jobs()
        take = None
        reason = None
        with self._take_lock:
            if self.recorder is not None:
                result = self._finish_take()
                take = str(result.paths[0]) if result.paths else None
                reason = result.stopped_reason
            elif self.takes:
                take = self.takes[-1]
        if self.backend is not None:
            self.backend.stop()
        self._stop_readers.set()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if wait_jobs:
            self._wait_jobs()
        else:
            for kind, _, sidecar in self._jobs:
                if kind == "report":
                    self.reports.append(f"{Path(sidecar).with_suffix('.png')} (being drawn "
                                        "in the background)")
                else:
                    self.videos.append(f"{Path(sidecar).stem}: being made in the background")
            self._jobs = []
        summary = self._summary(take, reason)
        self.backend = None
        self.recorder = None
        self._teardown()
        return summary

    def _sidecar_extra(self) -> dict:
        info = getattr(self.backend, "info", {}) or {}
        stats = self.io.stats
        n = max(1, int(stats[ST_CALLBACKS]))
        return {
            "backend": self.backend.name if self.backend else None,
            "device": info.get("device"),
            "hostapi": info.get("hostapi"),
            "latency_s": info.get("latency_s"),
            "blocksize": self.blocksize or 0,
            "underruns": {t.name: int(u) for t, u in
                          zip(self.session.tracks, self.st.src_pos[:, S_UNDERRUNS])},
            "load": {"mean": int(stats[ST_SUM_PPM]) / n / 1e6, "p99_9": self._load_p999(),
                     "max": int(stats[ST_MAX_PPM]) / 1e6},
            "engine_events": list(self.events),
            "automation": list(self.automation),
            "automation_lost": int(self.st.auto_idx[A_LOST]),
            "events_lost": int(self.st.ev_idx[2]),
        }

    def _summary(self, take, reason) -> Summary:
        """The run's summary, from the same figures the sidecar gets."""
        stats = self.io.stats
        h = self._sidecar_extra()
        return Summary(
            duration_s=int(stats[ST_FRAMES]) / self.session.engine.samplerate,
            frames=int(stats[ST_FRAMES]),
            xruns=int(stats[ST_XRUNS]),
            dropped_frames=int(stats[ST_REC_DROPPED]),
            underruns=h["underruns"],
            load_mean=h["load"]["mean"],
            load_p999=h["load"]["p99_9"],
            load_max=h["load"]["max"],
            callback_max_us=int(stats[ST_MAX_NS]) / 1000,
            latency_s=float(h["latency_s"] or 0.0),
            backend=h["backend"] or "none",
            device=h["device"] or "?",
            take=take, events=list(self.events), stopped_reason=reason,
            reports=list(self.reports), loudness=self.take_loudness,
            videos=list(self.videos))
