"""The virtual backend: a native clock thread in the supervised audio child, no GIL.

What is asserted is the design's property, not a timing the machine's noise can
move: the clock's blocks keep coming while another thread holds the GIL; the
clock thread lives in the audio child (not the parent) with real-time
scheduling where the system grants it; a block late by more than the modelled
buffer is an xrun with its frame in the take's events; a refused real-time
request is said at start.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reference import sine

from engine.backends.virtual import VirtualClock
from engine.dsp.layout import K_FRAME
from engine.live import LiveEngine, warm_up
from engine.rt.state import allocate, allocate_io
from engine.rt.virtual_clock import BUFFER_PERIODS
from engine.session import load_session

SR = 48000
ROOT = Path(__file__).resolve().parent.parent


def one_track(maker, seconds=10.0, **extra):
    maker.audio("a.wav", sine(440, seconds, SR, amp=0.2))
    return load_session(maker.session([{"name": "a", "file": "a.wav"}], **extra))


def _threads(pid):
    """{thread name: scheduling policy} of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            out[name] = os.sched_getscheduler(int(tid))
        except OSError:
            pass
    return out


def test_clock_keeps_running_while_another_thread_holds_the_gil(maker):
    """The clock loop releases the GIL on entry and never takes it again: a Python
    thread that keeps the GIL for half a second (switch interval raised to 5 s) does
    not hold it up. Were the loop to take the GIL per block it would run at most one
    block in that time; it must run at least half of the half second's blocks."""
    session = one_track(maker, seconds=1.0)
    block = 128
    warm_up(session, block)
    st = allocate(session, maxblock=block, ring_frames=4 * block)
    io = allocate_io(session, record_s=0.1)
    clock = VirtualClock(st, io, block, SR)
    clock.warm()
    clock.start()
    interval = sys.getswitchinterval()
    try:
        time.sleep(0.2)
        sys.setswitchinterval(5.0)
        f0 = int(st.clock[K_FRAME])
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:     # pure Python: holds the GIL throughout
            pass
        f1 = int(st.clock[K_FRAME])
        held = time.perf_counter() - t0
    finally:
        sys.setswitchinterval(interval)
        clock.stop()
    assert f1 - f0 >= 0.5 * held * SR, (f1 - f0, held)


def test_virtual_backend_runs_in_the_audio_child(maker):
    session = one_track(maker, seconds=3.0)
    eng = LiveEngine(session, backend="virtual", record=False, say=lambda *_: None)
    eng.start()
    try:
        info = eng.backend.info
        child = _threads(eng.backend._proc.pid)
        parent = _threads(os.getpid())
        time.sleep(0.5)
    finally:
        summary = eng.stop()
    assert "livemix-clock" in child and "livemix-clock" not in parent
    granted = info["realtime"]
    if granted:
        assert child["livemix-clock"] == os.SCHED_FIFO
    assert info["buffer_periods"] == BUFFER_PERIODS
    assert summary.latency_s == pytest.approx(BUFFER_PERIODS * 128 / SR)
    assert summary.backend == "virtual" and summary.frames >= 0.4 * SR


def test_a_late_block_is_an_xrun_event_at_its_frame(maker, tmp_path):
    """Stopping the audio child for 100 ms (far beyond the 8 ms buffer, far short of the
    0.4 s device-lost watchdog) makes at least one xrun, counted and logged with the
    session frame where it happened; every xrun counted is an event in the take."""
    session = one_track(maker, record={"format": "wav", "dir": "takes"})
    eng = LiveEngine(session, backend="virtual", say=lambda *_: None)
    eng.start()
    try:
        time.sleep(1.0)
        pid = eng.backend._proc.pid
        before = int(eng.st.clock[K_FRAME])
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.1)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.3)
        after = int(eng.st.clock[K_FRAME])
        time.sleep(0.5)
    finally:
        summary = eng.stop()
    assert summary.xruns >= 1
    side = json.loads(Path(summary.take).with_suffix(".json").read_text())
    xruns = [e for e in side["events"] if e["kind"] == "xrun"]
    assert len(xruns) == side["xruns"] == summary.xruns
    start = side["start_frame"]
    assert any(before <= start + e["frame"] <= after for e in xruns), (before, after, xruns)
    assert all(e["detail"] == "output underflow" for e in xruns)
    assert not any(e["kind"] == "device_lost" for e in summary.events)


def test_refused_realtime_and_memory_lock_are_said_at_start(maker):
    """Without CAP_SYS_NICE and CAP_IPC_LOCK, with an rtprio limit of 0 and a 64 KiB
    memlock limit, the clock runs at normal priority in unlocked memory, and the run
    says both at start (as jackd does) and still plays."""
    session = one_track(maker, seconds=2.0)

    def limits():
        import resource
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))

    cmd = [sys.executable, "-m", "engine.cli", "run", str(session.path), "--backend", "virtual",
           "--duration", "1", "--no-record", "--ui", "none"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-sys_nice,-ipc_lock", "--inh-caps",
               "-sys_nice,-ipc_lock"] + cmd
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       preexec_fn=limits)
    assert p.returncode == 0, p.stderr
    said = p.stdout + p.stderr
    assert "no real-time scheduling" in said and "Traceback" not in said
    assert "memory could not be locked" in said
    assert "ran 1.0" in p.stdout
