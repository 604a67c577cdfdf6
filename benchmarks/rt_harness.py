"""Building blocks for ``benchmarks/realtime.py``: a private JACK server, benchmark
sessions, background load threads, and one function per kind of measured run.

Units used throughout (and in every dict these functions return):
  * durations named ``*_us`` are microseconds, ``*_ns`` nanoseconds, ``*_s`` seconds;
  * ``*_pct`` is a percentage of one block period (``period_frames / samplerate``);
  * frame counts are frames at the session rate (48 kHz unless told otherwise).

Every run measures a *window*: the engine is started, left to settle for
``settle_s`` (first callbacks, page faults, JACK graph changes), then its
counters are snapshotted twice, ``seconds`` apart, and the differences are
reported. Whatever happened before the window is reported separately as
``before_window``.

Nothing here edits engine state that the audio thread owns; the harness only
reads counters (they are single-writer int64s in shared memory).
"""
from __future__ import annotations

import dataclasses
import gc
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import floor_client

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.dsp.layout import (LOAD_BIN_PPM, LOAD_BINS, S_EOF, S_UNDERRUNS,  # noqa: E402
                               S_WRITE, ST_CALLBACKS, ST_FRAMES, ST_IN_OVERFLOW,
                               ST_IN_UNDERFLOW, ST_LAST_NOW, ST_LAST_NS, ST_MAX_NS,
                               ST_OUT_OVERFLOW, ST_OUT_UNDERFLOW, ST_REC_DROPPED, ST_SUM_NS,
                               ST_XRUNS)
from engine.live import LiveEngine, warm_up  # noqa: E402
from engine.rt import shm  # noqa: E402
from engine.rt.state import (allocate, allocate_io, start_denoisers,  # noqa: E402
                             stop_denoisers)
from engine.session import (DuckRule, EngineConfig, Master, Record, Session,  # noqa: E402
                            Track)
from engine.strip import Comp, EqBand, Gate, Hpf, Strip  # noqa: E402

SR = 48000                 # Hz, every benchmark session
LOOP_RING_FRAMES = 8192    # frames per track of looping pre-filled source ring (170 ms)
QUANTILES = (("p50", 0.50), ("p99", 0.99), ("p99_9", 0.999))

# The full channel strip (no denoise), as render.py's strip section gives its gated
# tracks: 12 dB/octave high-pass at 80 Hz, gate at -45 dBFS, four peak bands, compressor.
FULL_STRIP = Strip(hpf=Hpf(freq_hz=80.0, slope=12), gate=Gate(threshold_db=-45.0),
                   eq=(EqBand("peak", 180.0, -2.0, 1.0), EqBand("peak", 700.0, 1.5, 1.4),
                       EqBand("peak", 3000.0, 3.0, 1.0), EqBand("peak", 9000.0, -1.5, 0.7)),
                   comp=Comp(threshold_db=-18.0, ratio=3.0, knee_db=6.0, attack_ms=5.0,
                             release_ms=80.0))


def log(*parts) -> None:
    """Progress line on stderr (stdout is reserved for the JSON result)."""
    print("[realtime]", *parts, file=sys.stderr, flush=True)


# --- JACK ----------------------------------------------------------------------------

_servers: list["JackDummy"] = []     # every server this process started (for cleanup_all)
_XRUN_LINE = re.compile(r"JackEngine::XRun")


class JackDummy:
    """``jackd -d dummy`` under a name private to this process, as a context manager.

    On entry it starts the server (SCHED_FIFO with ``-R`` first, ``--no-realtime``
    if that fails) and points ``JACK_DEFAULT_SERVER`` in ``os.environ`` at it, so
    the engine's audio child (spawned later) connects to it. On exit it stops the
    server with SIGTERM (a clean stop keeps JACK's server registry in /dev/shm
    tidy; SIGKILL leaves a slot behind) and restores the environment.

    The server's stderr is drained by a thread: jackd prints two lines per xrun,
    and an undrained pipe would eventually block it. ``server_xruns`` counts the
    ``JackEngine::XRun`` lines, an xrun count independent of PortAudio's flags.

    period: frames per period; rate: Hz.
    """

    def __init__(self, period: int, rate: int = SR):
        self.name = f"livemix-bench-{os.getpid()}"   # one registry slot, reused
        self.period = period
        self.rate = rate
        self.proc: subprocess.Popen | None = None
        self.realtime: bool | None = None
        self.server_xruns = 0
        self.tail: deque = deque(maxlen=40)          # last stderr lines, for errors
        self._saved_env: dict = {}
        self._drain: threading.Thread | None = None

    @property
    def env(self) -> dict:
        return dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1")

    def _ready(self) -> bool:
        p = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True)
        return p.returncode == 0 and "system:playback_1" in p.stdout

    def _read_stderr(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if _XRUN_LINE.search(line):
                self.server_xruns += 1
        stream.close()

    def start(self, timeout_s: float = 10.0) -> "JackDummy":
        """Start the server and wait until its ports exist. RuntimeError if it cannot."""
        for realtime in (True, False):
            cmd = ["jackd", "-R" if realtime else "--no-realtime", "-d", "dummy",
                   "-r", str(self.rate), "-p", str(self.period)]
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            _servers.append(self)
            self._drain = threading.Thread(target=self._read_stderr, args=(self.proc.stderr,),
                                           name="jackd-stderr", daemon=True)
            self._drain.start()
            end = time.monotonic() + timeout_s
            while time.monotonic() < end and self.proc.poll() is None:
                if self._ready():
                    self.realtime = realtime
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("jackd -d dummy did not start: " + " | ".join(self.tail))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._drain is not None:
            self._drain.join(timeout=2)
        if self in _servers:
            _servers.remove(self)

    def __enter__(self) -> "JackDummy":
        for key in ("JACK_DEFAULT_SERVER", "JACK_NO_AUDIO_RESERVATION"):
            self._saved_env[key] = os.environ.get(key)
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_AUDIO_RESERVATION"] = "1"
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cleanup_all() -> None:
    """Stop every jackd and kill every child process this process started (by pid)."""
    import multiprocessing as mp
    for child in mp.active_children():
        try:
            os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=2)
        except (OSError, ValueError):
            pass
    for server in list(_servers):
        server.stop()


# --- sessions and source content -----------------------------------------------------

def bench_session(ntracks: int, period: int, directory: Path, files: list[Path] | None = None,
                  strip: Strip | None = None, denoised: int = 0) -> Session:
    """A stereo session of ``ntracks`` tracks; track 0 keys a ducking rule on tracks 1 and 2.

    files: None for tracks fed by ``fill_looping_rings`` (no file, no reader), or
    audio files used round-robin (looped) by the real ``FileSource`` readers.
    Faders at -10*log10(ntracks) dB keep the mix's power about that of one track;
    pans spread over -0.8 .. +0.8. Block size = the JACK period (one chunk per callback).
    strip: every track's channel strip (None: no strip); denoised: the last
    ``denoised`` tracks denoise too (RNNoise on both channels, 48 kHz).
    """
    gain_db = -10.0 * float(np.log10(max(ntracks, 1)))
    tracks = []
    for i in range(ntracks):
        pan = 0.0 if ntracks == 1 else -0.8 + 1.6 * i / (ntracks - 1)
        own = strip or Strip()
        if i >= ntracks - denoised:
            own = dataclasses.replace(own, denoise=True)
        tracks.append(Track(name=f"t{i}", file=files[i % len(files)] if files else None,
                            gain_db=0.0 if i == 0 else gain_db, pan=round(pan, 4),
                            loop=True, strip=own))
    rules = ()
    if ntracks >= 3:
        rules = (DuckRule(key=("t0",), targets=("t1", "t2"), threshold_db=-30.0,
                          depth_db=-12.0, attack_ms=10.0, hold_ms=150.0, release_ms=400.0),)
    return Session(path=directory / "bench.toml",
                   engine=EngineConfig(samplerate=SR, blocksize=period, channels=2),
                   tracks=tuple(tracks), ducking=rules, master=Master(gain_db=0.0,
                                                                      ceiling_db=-1.0),
                   record=Record(dir=directory / "takes", format="wav", subtype="PCM_24",
                                 stems=False))


def loop_content(variant: int, frames: int) -> np.ndarray:
    """(2, frames) float32 that loops seamlessly: sines with whole cycles per loop.

    variant 0 is the ducking key: a 0.5-amplitude tone on for the first half of
    the loop and silent for the second, so the rule engages and lets go.
    """
    n = np.arange(frames)
    if variant == 0:
        x = 0.5 * np.sin(2 * np.pi * 37 * n / frames) * (n < frames // 2)
        return np.stack([x, x]).astype(np.float32)
    k = 5 + 3 * variant
    left = 0.25 * np.sin(2 * np.pi * k * n / frames)
    right = 0.25 * np.sin(2 * np.pi * (k + 1) * n / frames + 0.3 * variant)
    return np.stack([left, right]).astype(np.float32)


def fill_looping_rings(st) -> None:
    """Pre-fill every source ring with looping content and mark it endlessly full.

    Each ring gets one of 16 content variants (track 0 the ducking key). The write
    counter is set 2**60 frames ahead, so the audio thread always finds the ring
    full and replays it: it reads exactly the memory it would read with a reader
    thread keeping up, but no reader thread runs. Underruns are 0 by construction.
    """
    ring = st.src_ring.shape[2]
    variants = [loop_content(v, ring) for v in range(16)]
    for t in range(st.src_ring.shape[0]):
        st.src_ring[t] = variants[0 if t == 0 else 1 + (t - 1) % 15]
    st.src_pos[:, S_EOF] = -1
    st.src_pos[:, S_WRITE] = 1 << 60


def write_source_files(directory: Path, count: int = 8, seconds: float = 3.0) -> list[Path]:
    """``count`` stereo float WAV files (48 kHz) of ``seconds`` each, for FileSource tracks.

    File 0 is the ducking key (tone bursts: 0.4 s on, 0.6 s off); the others are
    two-tone signals at 0.25 amplitude.
    """
    import soundfile as sf
    n = np.arange(int(seconds * SR)) / SR
    paths = []
    for v in range(count):
        if v == 0:
            x = 0.5 * np.sin(2 * np.pi * 300 * n) * ((n % 1.0) < 0.4)
            data = np.stack([x, x], axis=1)
        else:
            f = 110.0 * (1 + v)
            data = np.stack([0.25 * np.sin(2 * np.pi * f * n),
                             0.25 * np.sin(2 * np.pi * 1.5 * f * n)], axis=1)
        path = directory / f"src{v}.wav"
        sf.write(str(path), data.astype(np.float32), SR, subtype="FLOAT")
        paths.append(path)
    return paths


class LoopRingEngine(LiveEngine):
    """``LiveEngine`` with small looping source rings and no file readers.

    Everything else is the real live path: state in shared memory, the same
    warm-up, the supervised PortAudio child running the ``@cfunc``, the same
    stop/teardown. Used for the track-count sweep, where 4,096 tracks with the
    default 2.7 s rings would need 4 GiB and 4,096 open files.
    ring_frames: frames per track ring (power of two).
    """

    def __init__(self, session, ring_frames: int = LOOP_RING_FRAMES, **kw):
        super().__init__(session, record=False, **kw)
        self.ring_frames = ring_frames

    def _start(self) -> None:
        s = self.session
        maxblock = self.blocksize or s.engine.blocksize
        self.arena, g = shm.create({
            "st": lambda alloc: allocate(s, maxblock=maxblock, ring_frames=self.ring_frames,
                                         alloc=alloc),
            "io": lambda alloc: allocate_io(s, alloc=alloc),
        })
        self.st, self.io = g["st"], g["io"]
        self.sources = [None] * len(s.tracks)
        fill_looping_rings(self.st)
        warm_up(s, maxblock)
        self._reader = threading.Thread(target=self._housekeeping, name="livemix-automation",
                                        daemon=True)
        self._reader.start()
        self._start_backend(0, maxblock)
        self.started_at = time.monotonic()



# --- background load in a Python process -------------------------------------------

class BusyLoad:
    """A background Python thread competing for the GIL (and a CPU) in this process.

    kind: "none"; "cpu" (pure-Python arithmetic, never releases the GIL except at
    the interpreter's switch interval); or "gc" (keeps ~600k container objects
    alive and churns reference cycles through a 100k-object rolling window, so
    objects are promoted and full collections of the whole heap keep happening).
    ``stop()`` returns {"kind", "loops_per_s", "gc": {"collections": [gen0, gen1,
    gen2], "max_pause_ms", "total_pause_ms", "time_share"}} for the time it ran
    (time_share: fraction of wall time spent collecting); GC pauses are timed with
    ``gc.callbacks`` and include collections triggered by any thread.
    """

    def __init__(self, kind: str, engine=None):
        if kind not in ("none", "cpu", "gc", "ui"):
            raise ValueError(kind)
        self.kind = kind
        self.engine = engine          # for "ui": the LiveEngine the meter bridge shows
        self._stop = threading.Event()
        self._thread = None
        self._loops = 0
        self._t0 = 0.0
        self._gc_start = 0
        self._gc_counts = [0, 0, 0]
        self._gc_max_ns = 0
        self._gc_total_ns = 0

    def _on_gc(self, phase, info) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter_ns()
        else:
            dt = time.perf_counter_ns() - self._gc_start
            self._gc_counts[info["generation"]] += 1
            self._gc_total_ns += dt
            self._gc_max_ns = max(self._gc_max_ns, dt)

    def _cpu(self) -> None:
        while not self._stop.is_set():
            x = 0
            for i in range(10_000):
                x += i * i
            self._loops += 1

    def _garbage(self) -> None:
        heap = [[i, {"k": i}] for i in range(300_000)]      # long-lived: makes gen2 big
        window: deque = deque(maxlen=50_000)
        while not self._stop.is_set():
            for i in range(1000):
                a = [i, None]
                b = {"a": a}
                a[1] = b                                       # a cycle: only GC frees it
                window.append(a)
            self._loops += 1
        del heap

    def _ui(self) -> None:
        """The live meter bridge (--ui tui) drawing the engine at 20 Hz into a
        terminal-like buffer: its snapshot reads, layout and rendering."""
        import io

        from rich.console import Console

        from engine.ui import MeterBridge
        console = Console(file=io.StringIO(), force_terminal=True, width=120, height=60)
        bridge = MeterBridge(self.engine, console=console, stdin=io.StringIO())
        bridge.run(self._stop)
        self._loops = bridge.refreshes

    def start(self) -> "BusyLoad":
        self._t0 = time.monotonic()
        if self.kind == "none":
            return self
        gc.callbacks.append(self._on_gc)
        target = {"cpu": self._cpu, "gc": self._garbage, "ui": self._ui}[self.kind]
        self._thread = threading.Thread(target=target, name=f"busy-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)
        out = {"kind": self.kind, "loops_per_s": round(self._loops / elapsed, 1)}
        if self.kind != "none":
            out["gc"] = {"collections": list(self._gc_counts),
                         "max_pause_ms": round(self._gc_max_ns / 1e6, 2),
                         "total_pause_ms": round(self._gc_total_ns / 1e6, 1),
                         "time_share": round(self._gc_total_ns / 1e9 / elapsed, 3)}
        return out


# --- statistics ----------------------------------------------------------------------

def hist_quantiles(hist: np.ndarray, period_us: float) -> dict:
    """Quantiles of callback duration from a load histogram (bins of LOAD_BIN_PPM ppm).

    Each quantile is the *upper edge* of the bin it falls in (conservative by at
    most one bin: 0.1 % of the period, 1.33 us at 64 frames / 48 kHz); ``max`` is
    the upper edge of the highest non-empty bin. Returns {name: {"us", "pct"}},
    "overflow" (callbacks in the last bin, >= 199.9 % of the period) and the
    counts of callbacks that took at least 50 % / 100 % of the period.
    """
    hist = np.asarray(hist, np.int64)
    total = int(hist.sum())
    out = {}
    if total == 0:
        return {"callbacks_in_histogram": 0}
    cum = np.cumsum(hist)
    for name, q in QUANTILES:
        k = int(np.searchsorted(cum, q * total))
        ppm = (k + 1) * LOAD_BIN_PPM
        out[name] = {"us": round(ppm / 1e6 * period_us, 2), "pct": round(ppm / 1e4, 2)}
    k = int(np.nonzero(hist)[0][-1])
    ppm = (k + 1) * LOAD_BIN_PPM
    out["max"] = {"us": round(ppm / 1e6 * period_us, 2), "pct": round(ppm / 1e4, 2)}
    out["overflow"] = int(hist[LOAD_BINS - 1])
    out["callbacks_in_histogram"] = total
    half = 500_000 // LOAD_BIN_PPM                 # first bin at or above 50 % of the period
    out["callbacks_over_50pct"] = int(hist[half:].sum())
    out["callbacks_over_100pct"] = int(hist[2 * half:].sum())
    return out


def exact_quantiles(durations_ns: np.ndarray, period_us: float) -> dict:
    """Quantiles of measured durations (ns) as {name: {"us", "pct"}}, plus max and mean."""
    d = np.asarray(durations_ns, np.float64) / 1000.0
    if len(d) == 0:
        return {}
    out = {}
    for name, q in QUANTILES + (("max", 1.0),):
        v = float(np.quantile(d, q, method="higher"))
        out[name] = {"us": round(v, 2), "pct": round(100.0 * v / period_us, 2)}
    out["mean"] = {"us": round(float(d.mean()), 2),
                   "pct": round(100.0 * float(d.mean()) / period_us, 2)}
    return out


def thread_sched(pid: int) -> list[dict]:
    """Scheduling policy and RT priority of every thread of ``pid`` (from /proc)."""
    names = {0: "OTHER", 1: "FIFO", 2: "RR", 3: "BATCH", 5: "IDLE", 6: "DEADLINE"}
    out = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # fields[0] is field 3 (state)
        out.append({"tid": int(tid), "comm": comm, "policy": names.get(int(fields[38]), "?"),
                    "rtprio": int(fields[37])})
    return out


def page_faults(pid: int) -> tuple[int, int]:
    """(minor, major) page faults of process ``pid`` so far, all threads (from /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return (0, 0)
    fields = stat[stat.rindex(")") + 2:].split()     # fields[0] is field 3
    return int(fields[7]), int(fields[9])            # fields 10 (minflt), 12 (majflt)


def cpu_steal_ms() -> float:
    """Time the hypervisor ran something else on this VM's CPUs (all CPUs), ms."""
    try:
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(cpu[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _proc_ticks(pid: int) -> int:
    """CPU time (user + system, clock ticks) a process has used so far, all its threads."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])          # fields 14 (utime), 15 (stime)


def _system_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks over all CPUs since boot (/proc/stat; idle + iowait = idle)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(v[:8])                                 # user .. steal (guest is inside user)
    return total - v[3] - v[4], total


def foreign_rt_threads(ours: set[int]) -> list[str]:
    """"comm:policy:prio" of user-space SCHED_FIFO/RR threads in processes not in ``ours``.

    Such threads (another JACK server and its clients, say) can preempt the
    benchmark's audio thread on a machine with few CPUs.
    """
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        try:
            if not Path(f"/proc/{entry}/cmdline").read_bytes():
                continue                                 # a kernel thread
        except OSError:
            continue
        for t in thread_sched(int(entry)):
            if t["policy"] in ("FIFO", "RR"):
                out.append(f"{t['comm']}:{t['policy']}:{t['rtprio']}")
    return sorted(set(out))


class Contention:
    """How much of the machine something other than this benchmark used, over a window.

    ``ours``: pids whose CPU time is the benchmark's own (this process, the audio
    child, our jackd). ``report()`` gives foreign CPU use in % of all CPUs (clock
    tick resolution: 10 ms at 100 Hz) and the foreign real-time threads seen at
    the start of the window.
    """

    def __init__(self, ours):
        self.ours = {p for p in ours if p}
        self.t0 = _system_ticks()
        self.own0 = sum(_proc_ticks(p) for p in self.ours)
        self.rt = foreign_rt_threads(self.ours)

    def report(self) -> dict:
        busy1, total1 = _system_ticks()
        own1 = sum(_proc_ticks(p) for p in self.ours)
        total = max(total1 - self.t0[1], 1)
        foreign = (busy1 - self.t0[0]) - (own1 - self.own0)
        return {"foreign_cpu_pct": round(100.0 * max(foreign, 0) / total, 1),
                "own_cpu_pct": round(100.0 * (own1 - self.own0) / total, 1),
                "foreign_rt_threads": self.rt}


# probe counters (int64 in shared memory): wake-ups, late by > 200 us, > 500 us, > 1 ms,
# largest lateness (ns) since the parent last cleared it
PR_WAKEUPS, PR_LATE_200, PR_LATE_500, PR_LATE_1000, PR_MAX_NS, N_PROBE = 0, 1, 2, 3, 4, 5


def _probe_main(counters, period_ns: int) -> None:
    """Probe process: sleep ``period_ns`` at a time (SCHED_FIFO priority 1 when allowed)
    and count how late each wake-up is."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (PermissionError, OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    period_s = period_ns / 1e9
    clock = time.perf_counter_ns
    while os.getppid() == parent:
        t0 = clock()
        time.sleep(period_s)
        late = clock() - t0 - period_ns
        counters[PR_WAKEUPS] += 1
        if late > 200_000:
            counters[PR_LATE_200] += 1
            if late > 500_000:
                counters[PR_LATE_500] += 1
                if late > 1_000_000:
                    counters[PR_LATE_1000] += 1
        if late > counters[PR_MAX_NS]:
            counters[PR_MAX_NS] = late


class ProbeWindow:
    """Per-window view of a LatencyProbe's shared counters (usable in any process)."""

    def __init__(self, counters):
        self.counters = counters
        self._a = [0] * N_PROBE

    def window(self) -> None:
        """Start a window: remember the counters, clear the maximum."""
        self.counters[PR_MAX_NS] = 0
        self._a = list(self.counters)

    def report(self) -> dict:
        b, a = list(self.counters), self._a
        return {"wakeups": b[PR_WAKEUPS] - a[PR_WAKEUPS],
                "late_over_200us": b[PR_LATE_200] - a[PR_LATE_200],
                "late_over_500us": b[PR_LATE_500] - a[PR_LATE_500],
                "late_over_1ms": b[PR_LATE_1000] - a[PR_LATE_1000],
                "max_late_us": round(b[PR_MAX_NS] / 1000, 1)}


class LatencyProbe(ProbeWindow):
    """A tiny process that sleeps 1 ms at a time at SCHED_FIFO priority 1 (below the
    audio thread's, above every normal thread) and counts late wake-ups.

    It costs a few per cent of one CPU. When it wakes more than 1 ms late while the
    machine is otherwise idle, the whole VM (or this CPU) was not running: time
    an audio thread would have lost too, whatever its priority. ``window()`` /
    ``report()`` give per-window counts like the engine's.
    """

    def __init__(self, period_us: int = 1000):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        super().__init__(ctx.Array("q", N_PROBE, lock=False))
        self.proc = ctx.Process(target=_probe_main, args=(self.counters, period_us * 1000),
                                name="livemix-bench-probe", daemon=True)

    def start(self) -> "LatencyProbe":
        self.proc.start()
        return self

    def stop(self) -> None:
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(timeout=2)


def wait_quiet(max_wait_s: float, threshold_pct: float = 10.0) -> dict:
    """Wait (up to ``max_wait_s``) until the machine is quiet: all-CPU busy time over a
    0.5 s sample below ``threshold_pct`` % (nothing of ours runs between cases).
    Returns {"busy_pct": last sample, "waited_s", "quiet": bool}."""
    t_end = time.monotonic() + max_wait_s
    t0 = time.monotonic()
    told = False
    while True:
        b0, n0 = _system_ticks()
        time.sleep(0.5)
        b1, n1 = _system_ticks()
        busy = 100.0 * (b1 - b0) / max(n1 - n0, 1)
        if busy < threshold_pct or time.monotonic() >= t_end:
            return {"busy_pct": round(busy, 1), "waited_s": round(time.monotonic() - t0, 1),
                    "quiet": busy < threshold_pct}
        if not told:
            log(f"machine busy ({busy:.0f} % of all CPUs, not us): waiting up to "
                f"{max_wait_s:.0f} s for it to calm down")
            told = True


@dataclass
class _Snap:
    t: float
    stats: np.ndarray
    hist: np.ndarray
    underruns: np.ndarray
    faults: tuple            # the audio child's (minor, major) page faults
    steal_ms: float


def _snap(eng) -> _Snap:
    """Copy the engine's counters as nearly at once as Python allows.

    A busy thread in this process may take the GIL between two statements, or a
    collection may start in this one; for the few microseconds of the copies the
    switch interval is raised and the collector paused, so the counters agree
    with each other. ``t`` is the engine's own clock: CLOCK_MONOTONIC at the end
    of the last callback counted (``ST_LAST_NOW``, the clock time.monotonic uses).
    """
    proc = getattr(eng.backend, "_proc", None)
    interval = sys.getswitchinterval()
    was_enabled = gc.isenabled()
    sys.setswitchinterval(1.0)
    gc.disable()
    try:
        stats = eng.io.stats.copy()
        hist = eng.io.load_hist.copy()
        under = eng.st.src_pos[:, S_UNDERRUNS].copy()
    finally:
        if was_enabled:
            gc.enable()
        sys.setswitchinterval(interval)
    return _Snap(int(stats[ST_LAST_NOW]) / 1e9, stats, hist, under,
                 page_faults(proc.pid) if proc is not None else (0, 0), cpu_steal_ms())


def _window_report(a: _Snap, b: _Snap, period: int) -> dict:
    """What the engine's own counters say happened between two snapshots."""
    period_us = period / SR * 1e6
    ds = b.stats - a.stats
    callbacks = int(ds[ST_CALLBACKS])
    wall = b.t - a.t
    under = b.underruns - a.underruns
    return {
        "wall_s": round(wall, 3),            # engine clock between the two snapshots
        "audio_s": round(int(ds[ST_FRAMES]) / SR, 3),
        "callbacks": callbacks,
        "callbacks_expected": int(round(wall * SR / period)),
        "xruns": int(ds[ST_XRUNS]),
        "xrun_flags": {"output_underflow": int(ds[ST_OUT_UNDERFLOW]),
                       "output_overflow": int(ds[ST_OUT_OVERFLOW]),
                       "input_underflow": int(ds[ST_IN_UNDERFLOW]),
                       "input_overflow": int(ds[ST_IN_OVERFLOW])},
        "underruns": int(under.sum()),
        "tracks_with_underruns": int((under > 0).sum()),
        "record_dropped_frames": int(ds[ST_REC_DROPPED]),
        "audio_child_page_faults": {"minor": b.faults[0] - a.faults[0],
                                    "major": b.faults[1] - a.faults[1]},
        "cpu_steal_ms": round(b.steal_ms - a.steal_ms, 1),
        "callback": {"mean": {"us": round(int(ds[ST_SUM_NS]) / max(callbacks, 1) / 1000, 2),
                              "pct": round(int(ds[ST_SUM_NS]) / max(callbacks, 1) / 1000
                                           / period_us * 100, 2)},
                     **hist_quantiles(b.hist - a.hist, period_us)},
    }


# --- one live-engine run -------------------------------------------------------------

def floor_report(xruns: int, floors: list) -> dict:
    """livemix's xruns in a window against the floor windows measured beside it.

    excess: xruns minus the floor windows' mean; spread: how far the floor itself
    moved (the floor windows' range plus twice the square root of their mean, a
    Poisson count's 2-sigma); within_floor: excess <= spread."""
    vals = [f["xruns"] for f in floors]
    mean = sum(vals) / len(vals)
    spread = (max(vals) - min(vals)) + 2.0 * mean ** 0.5
    return {"xruns": xruns, "floor_xruns": vals, "excess": round(xruns - mean, 1),
            "spread": round(spread, 1), "within_floor": xruns - mean <= spread}


def run_live(*, period: int, ntracks: int, seconds: float = 0.0, settle_s: float = 1.0,
             busy: str = "none", feed: str = "loop", record: bool = False,
             windows: list | None = None, floor: bool = False,
             backend: str = "portaudio", strip: Strip | None = None,
             denoised: int = 0) -> dict:
    """Run the live engine through a fresh private JACK dummy server and measure window(s).

    feed: "loop" (LoopRingEngine: pre-filled looping rings, no readers) or "files"
    (the plain LiveEngine with FileSource readers on real WAV files, 2.7 s rings).
    record: ask LiveEngine for a take (feed="files" only). busy: BusyLoad kind,
    running in this (the parent) process from start to the end of the last window.
    windows: [(key, start_s, end_s)] in seconds after ``start()`` returned (a window
    that starts late still lasts end_s - start_s); default
    [("window", settle_s, settle_s + seconds)]. Each key gets a _window_report
    (plus "machine": others' CPU use); "before_window" covers start .. first window.
    floor: on the same server, before the engine starts and after it stops, run the
    trivial client of ``floor_client`` for a window as long as the first one
    ("floor": both windows and ``floor_report`` of the first engine window).
    backend: "portaudio" (through a fresh JACK dummy server) or "virtual" (the
    virtual device's clock in the audio child, no server; ``period`` is its block).
    strip, denoised: every track's channel strip, and how many of the last tracks
    denoise too (``bench_session``; the audio child makes their RNNoise states).
    """
    import contextlib
    windows = windows or [("window", settle_s, settle_s + seconds)]
    period_us = period / SR * 1e6
    result = {"period_frames": period, "period_us": round(period_us, 2), "tracks": ntracks,
              "feed": feed, "busy": busy, "recording": bool(record), "backend_kind": backend}
    if strip is not None or denoised:
        result["strip"] = strip_report(strip, ntracks, denoised)
    server = JackDummy(period) if backend == "portaudio" else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="livemix-bench-") as tmp, server as jack:
        tmp = Path(tmp)
        result["server"] = {"realtime": jack.realtime} if jack else None
        floors = []
        if floor:
            floors.append(floor_client.measure(windows[0][2] - windows[0][1], settle_s))
        if feed == "loop":
            session = bench_session(ntracks, period, tmp, strip=strip, denoised=denoised)
            eng = LoopRingEngine(session, backend=backend, client_name="livemix",
                                 say=lambda m: log("engine:", m))
        else:
            files = write_source_files(tmp)
            session = bench_session(ntracks, period, tmp, files, strip=strip,
                                    denoised=denoised)
            eng = LiveEngine(session, backend=backend, client_name="livemix",
                             record=record, takes_dir=tmp / "takes",
                             say=lambda m: log("engine:", m))
        load = BusyLoad(busy, engine=eng)
        summary = None
        started = False
        probe = LatencyProbe().start()
        try:
            t0 = time.monotonic()
            eng.start()
            started = True
            t_start = time.monotonic()
            result["start_s"] = round(t_start - t0, 2)
            result["backend"] = dict(getattr(eng.backend, "info", {}) or {})
            proc = getattr(eng.backend, "_proc", None)
            if proc is not None:
                result["audio_child_rt_threads"] = [
                    f"{t['comm']}:{t['policy']}:{t['rtprio']}"
                    for t in thread_sched(proc.pid) if t["policy"] in ("FIFO", "RR")]
            ours = [os.getpid(), proc.pid if proc is not None else 0,
                    jack.proc.pid if jack else 0,
                    probe.proc.pid]
            load.start()
            for k, (key, w0, w1) in enumerate(windows):
                time.sleep(max(0.0, t_start + w0 - time.monotonic()))
                # probe and CPU accounting first: under a busy thread, reading /proc
                # can take a while, and their windows must cover the engine's
                probe.window()
                contention = Contention(ours)
                a = _snap(eng)
                if k == 0:
                    result["before_window"] = {"callbacks": int(a.stats[ST_CALLBACKS]),
                                               "xruns": int(a.stats[ST_XRUNS]),
                                               "underruns": int(a.underruns.sum()),
                                               "audio_child_minor_faults": a.faults[0]}
                # at least the asked length, even if this thread got the GIL late
                t_end = max(t_start + w1, a.t + (w1 - w0))
                time.sleep(max(0.0, t_end - time.monotonic()))
                b = _snap(eng)
                result[key] = _window_report(a, b, period)
                result[key]["starts_at_s"] = round(a.t - t_start, 2)   # same clock
                result[key]["machine"] = contention.report()
                result[key]["machine"]["probe"] = probe.report()
            result["max_us_since_start"] = round(int(b.stats[ST_MAX_NS]) / 1000, 2)
        finally:
            result["busy_stats"] = load.stop()
            probe.stop()
            if started:
                summary = eng.stop()
        if floor and summary is not None:
            floors.append(floor_client.measure(windows[0][2] - windows[0][1], settle_s))
            result["floor"] = {"windows": floors,
                               **floor_report(result[windows[0][0]]["xruns"], floors)}
        if jack:
            result["server"]["xrun_log_lines"] = jack.server_xruns
            result["server"]["log_tail"] = [l for l in jack.tail if "XRun" not in l
                                            and "Process error" not in l][-8:]
        if summary is not None:
            result["take"] = Path(summary.take).name if summary.take else None
            if summary.stopped_reason:
                result["recording_stopped"] = summary.stopped_reason
            result["events"] = [f"{e['kind']} at frame {e['frame']}: {e['detail']}"
                                for e in summary.events]
    return result


def run_cold_start(*, period: int = 64, ntracks: int = 256) -> dict:
    """The first seconds of a live run with real file tracks (2.7 s source rings).

    Two windows of 2 s: "first_ring_pass" (0.2 .. 2.2 s after start, while the audio
    child still touches source-ring pages for the first time) and
    "after_first_ring_pass" (3.0 .. 5.0 s; the rings hold 2.73 s). Compare their
    ``audio_child_page_faults`` and callback maxima.
    """
    from engine.rt.state import READ_AHEAD_S
    ring_s = (1 << max(0, int(READ_AHEAD_S * SR - 1).bit_length())) / SR
    after = max(3.0, ring_s + 0.3)
    return run_live(period=period, ntracks=ntracks, feed="files", windows=[
        ("first_ring_pass", 0.2, 2.2), ("after_first_ring_pass", after, after + 2.0)])


def kernel_only(*, period: int, ntracks: int, seconds: float = 1.0,
                strip: Strip | None = None, denoised: int = 0) -> dict:
    """``engine_cycle`` called back to back in this process: no JACK, no pacing.

    The compute floor of one callback (warm caches, no other work in between).
    Durations are the kernel's own measurement of each call (``ST_LAST_NS``).
    Calls this close together look like JACK freewheeling to the engine (which
    then keeps them out of its histogram and may wait for readers), so the
    freewheel window is restarted before each call: every call is timed as a
    normal, deadline-bound cycle. strip, denoised: as ``bench_session``'s (RNNoise
    states are made here for the denoising tracks).
    """
    from engine.dsp import layout
    from engine.rt.cycle import engine_cycle
    prev_start = layout.ST_FW_T0
    with tempfile.TemporaryDirectory(prefix="livemix-bench-") as tmp:
        session = bench_session(ntracks, period, Path(tmp), strip=strip, denoised=denoised)
    st = allocate(session, maxblock=period, ring_frames=LOOP_RING_FRAMES)
    io = allocate_io(session, record_s=0.1)
    fill_looping_rings(st)
    start_denoisers(st)
    out = np.zeros((period, 2), np.float32)
    stats = io.stats
    durs = np.zeros(1_000_000, np.int64)
    n = 0
    try:
        for _ in range(200):
            engine_cycle(st, io, out, out, period, 0)
        contention = Contention([os.getpid()])
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end and n < len(durs) - 50:
            for _ in range(50):
                stats[prev_start] = 0
                engine_cycle(st, io, out, out, period, 0)
                durs[n] = stats[ST_LAST_NS]
                n += 1
    finally:
        stop_denoisers(st)
    period_us = period / SR * 1e6
    q = exact_quantiles(durs[:n], period_us)
    result = {"period_frames": period, "tracks": ntracks, "calls": n, "callback": q,
              "ns_per_track": round(q["mean"]["us"] * 1000 / ntracks, 1),
              "machine": contention.report()}
    if strip is not None or denoised:
        result["strip"] = strip_report(strip, ntracks, denoised)
    return result


def strip_report(strip: Strip | None, ntracks: int, denoised: int) -> dict:
    """What a run's strips were: the stages every track has, and which tracks denoise."""
    s = strip or Strip()
    stages = ((["hpf"] if s.hpf else []) + (["gate"] if s.gate else [])
              + ([f"eq x{len(s.eq)}"] if s.eq else []) + (["comp"] if s.comp else []))
    return {"every_track": stages, "denoised_tracks": denoised,
            "denoised_are": f"t{ntracks - denoised} .. t{ntracks - 1}" if denoised else None}


# --- the baseline: sounddevice with a Python callback ------------------------------

def _baseline_child(conn, period: int, ntracks: int, seconds: float, settle_s: float,
                    busy: str, ours: list, probe_counters=None) -> None:
    """Child process: a plain sounddevice.OutputStream whose Python callback runs
    ``engine_cycle`` on in-process (numpy) state, optionally with a busy thread in
    the same process. Sends one dict back through ``conn``."""
    try:
        from time import perf_counter_ns

        from engine.rt.cycle import engine_cycle
        with tempfile.TemporaryDirectory(prefix="livemix-bench-") as tmp:
            session = bench_session(ntracks, period, Path(tmp))
        st = allocate(session, maxblock=period, ring_frames=LOOP_RING_FRAMES)
        io = allocate_io(session, record_s=0.1)
        fill_looping_rings(st)
        scratch = np.zeros((period, 2), np.float32)
        engine_cycle(st, io, scratch, scratch, period, 0)    # compile / load the cache
        import sounddevice as sd

        cap = int((settle_s + seconds + 5) * SR / period) + 1000
        starts = np.zeros(cap, np.int64)      # perf_counter_ns at callback entry
        durs = np.zeros(cap, np.int64)        # ns from entry to after engine_cycle
        flags = np.zeros(cap, np.int8)        # bit 0 in-underflow .. bit 3 out-overflow
        count = [0]

        def callback(outdata, frames, time_info, status):
            t0 = perf_counter_ns()
            engine_cycle(st, io, outdata, outdata, frames, 0)
            t1 = perf_counter_ns()
            i = count[0]
            if i < cap:
                starts[i] = t0
                durs[i] = t1 - t0
                if status:
                    flags[i] = (status.input_underflow | status.input_overflow << 1
                                | status.output_underflow << 2 | status.output_overflow << 3)
            count[0] = i + 1

        load = BusyLoad(busy)
        stream = sd.OutputStream(samplerate=SR, blocksize=0, channels=2, dtype="float32",
                                 latency="low", callback=callback)
        sched = []
        with stream:
            load.start()
            time.sleep(settle_s)
            probe = ProbeWindow(probe_counters) if probe_counters is not None else None
            if probe is not None:
                probe.window()
            contention = Contention(ours + [os.getpid()])
            f0, s0 = page_faults(os.getpid()), cpu_steal_ms()
            i0 = count[0]
            time.sleep(seconds)
            i1 = min(count[0], cap)
            f1, s1 = page_faults(os.getpid()), cpu_steal_ms()
            machine = contention.report()
            if probe is not None:
                machine["probe"] = probe.report()
            sched = [f"{t['comm']}:{t['policy']}:{t['rtprio']}"
                     for t in thread_sched(os.getpid()) if t["policy"] in ("FIFO", "RR")]
            busy_stats = load.stop()
        period_us = period / SR * 1e6
        # the window's length by the callbacks' own clock (the main thread may have
        # waited for the GIL before reading ``count``); the last callback ends it
        span_s = (starts[i1 - 1] + durs[i1 - 1] - starts[i0]) / 1e9 if i1 > i0 else 0.0
        f = flags[i0:i1]
        gaps = np.diff(starts[i0:i1]) / 1000.0
        conn.send({"ok": True, "busy_stats": busy_stats, "audio_rt_threads": sched,
                   "stream_latency_s": float(stream.latency), "before_window": {
                       "callbacks": int(i0), "xruns": int((flags[:i0] != 0).sum())},
                   "window": {
                       "wall_s": round(span_s, 3), "callbacks": int(i1 - i0),
                       "callbacks_expected": int(round(span_s * SR / period)),
                       "xruns": int((f != 0).sum()),
                       "xrun_flags": {"output_underflow": int(((f >> 2) & 1).sum()),
                                      "output_overflow": int(((f >> 3) & 1).sum()),
                                      "input_underflow": int((f & 1).sum()),
                                      "input_overflow": int(((f >> 1) & 1).sum())},
                       "process_page_faults": {"minor": f1[0] - f0[0], "major": f1[1] - f0[1]},
                       "cpu_steal_ms": round(s1 - s0, 1),
                       "callback": exact_quantiles(durs[i0:i1], period_us),
                       "max_gap_between_callbacks_us": round(float(gaps.max()), 1)
                       if len(gaps) else None,
                       "gaps_over_2_periods": int((gaps > 2 * period_us).sum()),
                       "machine": machine}})
    except BaseException as e:     # report, never hang the parent
        conn.send({"ok": False, "error": f"{type(e).__name__}: {e}"})


def run_baseline(*, period: int, ntracks: int, seconds: float, settle_s: float = 1.0,
                 busy: str = "none") -> dict:
    """The baseline through a fresh private JACK dummy server, in a spawned process
    (PortAudio is initialised there, never in this process). Same window rules as
    ``run_live``; durations are exact (perf_counter_ns), not histogram bins."""
    import multiprocessing as mp
    period_us = period / SR * 1e6
    result = {"period_frames": period, "period_us": round(period_us, 2), "tracks": ntracks,
              "feed": "loop", "busy": busy, "recording": False}
    with JackDummy(period) as jack:
        result["server"] = {"realtime": jack.realtime}
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        probe = LatencyProbe().start()
        proc = ctx.Process(target=_baseline_child, name="livemix-bench-baseline",
                           args=(child, period, ntracks, seconds, settle_s, busy,
                                 [os.getpid(), jack.proc.pid, probe.proc.pid], probe.counters),
                           daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(seconds + settle_s + 60):
                raise RuntimeError("baseline process did not report in time")
            msg = parent.recv()
            proc.join(timeout=10)      # exits (and terminates PortAudio) before jackd stops
        finally:
            probe.stop()
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(timeout=2)
        result["server"]["xrun_log_lines"] = jack.server_xruns
    if not msg.pop("ok"):
        raise RuntimeError(msg["error"])
    result.update(msg)
    return result


# --- the demo as a user runs it ------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def run_demo_pty(*, duration: float = 10.0, hogs: int = 2, backend: str = "virtual") -> dict:
    """``livemix demo --duration D --backend B`` with its meter bridge (``--ui tui``)
    drawing into a pseudo-terminal (140 x 50), while ``hogs`` CPU-bound processes
    (``python3 -c "while True: pass"``) keep every core busy at normal priority.
    Takes go to a temporary directory. Returns the summary's xruns and load."""
    import fcntl
    import pty
    import struct
    import termios
    hog_procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                 for _ in range(hogs)]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    chunks = []
    try:
        with tempfile.TemporaryDirectory(prefix="livemix-bench-demo-") as tmp:
            env = dict(os.environ, TERM="xterm-256color")
            p = subprocess.Popen([sys.executable, "-m", "engine.cli", "demo", "--duration",
                                  str(duration), "--backend", backend, "--ui", "tui",
                                  "--takes-dir", tmp], cwd=ROOT, env=env, stdin=slave,
                                 stdout=slave, stderr=slave, close_fds=True)
            os.close(slave)
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:          # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            rc = p.wait(timeout=600)
    finally:
        os.close(master)
        for h in hog_procs:
            h.kill()
            h.wait()
    text = _ANSI.sub("", b"".join(chunks).decode(errors="replace"))
    summary = re.search(r"xruns (\d+), dropped frames (\d+), underruns (\d+)", text)
    load = re.search(r"callback load mean ([\d.]+) %, p99.9 ([\d.]+) %, max ([\d.]+) %", text)
    ran = re.search(r"ran ([\d.]+) s \((\d+) frames\) on (\w+): .*?latency ([\d.]+) ms", text)
    if rc != 0 or summary is None:
        raise RuntimeError(f"livemix demo exited {rc}: {text.strip()[-300:]}")
    return {"duration_s": duration, "cpu_hogs": hogs, "backend": ran.group(3) if ran else None,
            "ran_s": float(ran.group(1)) if ran else None,
            "latency_ms": float(ran.group(4)) if ran else None,
            "xruns": int(summary.group(1)), "dropped_frames": int(summary.group(2)),
            "underruns": int(summary.group(3)),
            "load_pct": None if load is None else {"mean": float(load.group(1)),
                                                   "p99_9": float(load.group(2)),
                                                   "max": float(load.group(3))},
            "no_realtime_note": "no real-time scheduling" in text}
