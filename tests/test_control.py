"""The command API on a real engine (virtual backend, audio in its own process).

Several tests stop the audio process (SIGSTOP) to make the state a device outage
leaves: the audio thread applies nothing while controls keep moving. That makes
their outcome deterministic: without the outage the same defects show only when
two moves land within one block.
"""
import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT
from reference import sine

from controllers.mapping import load_mapping
from controllers.messages import MidiParser
from controllers.surface import Surface
from engine.control import FADER_FLOOR_DB
from engine.dsp.layout import K_FRAME, Q_READ
from engine.errors import LivemixError
from engine.live import LiveEngine
from engine.params import MAX_GAIN_DB
from engine.session import load_session

SR = 48000


@pytest.fixture
def engine(maker):
    maker.audio("a.wav", sine(440, 20.0, SR, amp=0.2))
    maker.audio("b.wav", sine(660, 20.0, SR, amp=0.2))
    session = load_session(maker.session(
        [{"name": "a", "file": "a.wav"}, {"name": "b", "file": "b.wav"}],
        ducking=[{"key": ["a"], "targets": ["b"], "depth_db": -9.0}]))
    eng = LiveEngine(session, backend="virtual", record=False, say=lambda *_: None)
    eng.start()
    yield eng
    if eng.backend is not None:
        eng.stop()


@contextlib.contextmanager
def outage(eng):
    """The audio process stopped (as during a device outage), then resumed."""
    pid = eng.backend._proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def applied(eng, target, param, value, timeout=5.0):
    """Wait until the audio thread has applied ``value``; True if it did."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if eng.get(target, param) == value:
            return True
        time.sleep(0.005)
    return eng.get(target, param) == value


# --- validation: every target, parameter and value checked ---------------------------

@pytest.mark.parametrize("target,param,value,problem", [
    ("nope", "gain", 0.0, "no track named 'nope' (tracks: a, b)"),
    (5, "gain", 0.0, "no track 5 (the session has 2: 0 .. 1)"),
    ("a", "volume", 0.0, "track 'a' has no parameter 'volume' (it has gain, pan, mute, solo, "
                         "denoise, hpf, hpf_freq"),
    ("master", "mute", 1, "the master has no parameter 'mute' (it has gain)"),
    ("master", "pan", 0.0, "the master has no parameter 'pan'"),
    (3, "duck_depth", -6.0, "duck_depth: no ducking rule 3 (the session has 1: 0 .. 0)"),
    ("a", "gain", float("nan"), "gain: nan is not a finite number"),
    ("a", "gain", math.inf, "gain: inf is not a finite number"),
    ("a", "pan", "left", "pan: 'left' is not a number"),
])
def test_set_refuses_what_is_not_a_parameter_value(engine, target, param, value, problem):
    with pytest.raises(LivemixError) as e:
        engine.set(target, param, value)
    assert problem in str(e.value)


def test_values_are_clamped_to_the_parameter_range(engine):
    engine.set("a", "gain", 1000.0)
    engine.set("b", "pan", -7.0)
    engine.set("master", "gain", 1e30)
    engine.set(0, "duck_depth", -500.0)
    assert applied(engine, "a", "gain", MAX_GAIN_DB)
    assert applied(engine, "b", "pan", -1.0)
    assert applied(engine, "master", "gain", MAX_GAIN_DB)
    assert applied(engine, 0, "duck_depth", -120.0)
    engine.set("a", "gain", -math.inf)                 # silence is a fader position
    assert applied(engine, "a", "gain", -math.inf)


@pytest.mark.parametrize("frame,problem", [
    (138.5, "a session frame is a whole number"),
    (math.inf, "a session frame is a whole number"),
    (10 ** 12, "ahead"),
])
def test_timed_changes_take_whole_frames_not_too_far_ahead(engine, frame, problem):
    with pytest.raises(LivemixError, match=problem):
        engine.set("a", "gain", -3.0, frame=frame)


def test_timed_changes_from_the_past_second_apply_late_older_ones_are_refused(engine):
    while int(engine.st.clock[K_FRAME]) < 1.5 * SR:
        time.sleep(0.05)
    with pytest.raises(LivemixError, match="more than a second in the past"):
        engine.set("a", "gain", -3.0, frame=0)
    engine.set("a", "gain", -3.0, frame=int(engine.st.clock[K_FRAME]) - SR // 2)
    assert applied(engine, "a", "gain", -3.0)


def test_a_fractional_frame_in_the_queue_does_not_hang_the_block(tmp_path):
    """The audio thread's side of it, whatever the queue holds: a command at frame
    pos + 10.5 takes effect at frame 11 and the block finishes. In a child process,
    so that a hang is a timeout, not a frozen test run."""
    code = f"""
import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})
import numpy as np
from conftest import SessionMaker
from reference import sine
from engine.session import load_session
from engine.rt.state import allocate
from engine.rt.rings import command_push
from engine.rt.block import process_block
from engine.params import P_GAIN
from pathlib import Path
m = SessionMaker(Path({str(tmp_path)!r}))
m.audio("a.wav", sine(440, 1.0, 48000, amp=0.2))
s = load_session(m.session([{{"name": "a", "file": "a.wav"}}]))
st = allocate(s, maxblock=64, ring_frames=256)
out = np.zeros((64, 2), np.float32)
process_block(st, out, 64)
assert command_push(st.cmd_ring, st.cmd_idx, 64 + 10.5, P_GAIN, 0, -6.0)
process_block(st, out, 64)
print(int(st.auto_ring[0, 0]), float(st.auto_ring[0, 3]))
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["75", "-6.0"]


# --- the queue: full during an outage, the latest value still arrives ------------------

def test_a_full_queue_keeps_the_latest_value_per_parameter(engine):
    cap = engine.st.cmd_ring.shape[0]
    with outage(engine):
        for k in range(cap + 2000):                    # a fader moving through the outage
            engine.set("a", "gain", -60.0 + 50.0 * k / (cap + 2000))
        engine.set("b", "mute", 1)
        last = -60.0 + 50.0 * (cap + 1999) / (cap + 2000)
        assert engine.coalesced > 0
        assert engine.target("a", "gain") == last      # where it is heading
    assert applied(engine, "a", "gain", last)
    assert applied(engine, "b", "mute", 1.0)


# --- surfaces start relative moves and toggles from where the value is heading ---------

def _events(*raw):
    parser = MidiParser()
    return [ev for msg in raw for ev in parser.feed(msg)]


def test_encoder_ticks_and_toggle_presses_during_an_outage_all_count(engine, tmp_path):
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        'bindings = [\n'
        '  { control = "cc", channel = 1, number = 16, target = "a", param = "gain", '
        'mode = "relative" },\n'
        '  { control = "note", channel = 1, number = 16, target = "b", param = "mute", '
        'mode = "toggle" },\n]\n')

    class NoPort:
        def poll(self):
            return []

    surface = Surface(engine, load_mapping(str(mapping), ["a", "b"]), NoPort())
    assert applied(engine, "a", "gain", 0.0)
    with outage(engine):
        for ev in _events([0xB0, 16, 1], [0xB0, 16, 1], [0xB0, 16, 1], [0xB0, 16, 1]):
            pending = {}
            surface.handle(ev, pending)                 # one poll each
            for (target, param), value in pending.items():
                engine.set(int(target), param, value)
        for ev in _events([0x90, 16, 127], [0x80, 16, 0], [0x90, 16, 127], [0x80, 16, 0]):
            pending = {}
            surface.handle(ev, pending)
            for (target, param), value in pending.items():
                engine.set(int(target), param, value)
    assert applied(engine, "a", "gain", 4 * 0.5)        # four ticks, not one
    assert applied(engine, "b", "mute", 0.0)            # pressed twice: back to unmuted


def test_relative_gain_stops_at_the_top_and_climbs_out_of_silence():
    from engine.control import TRACK, step_db
    gain = TRACK["gain"]
    v = 20.0
    for _ in range(40):
        v = step_db(gain, v, 0.5)
    assert v == MAX_GAIN_DB
    assert step_db(gain, -math.inf, 0.5) == FADER_FLOOR_DB
    assert step_db(gain, -math.inf, -0.5) == -math.inf
    assert step_db(gain, FADER_FLOOR_DB, -0.5) == -math.inf


def test_rec_button_work_runs_on_the_takes_thread(engine):
    """A controller's REC press must not run the take's start/finish on the MIDI thread."""
    ran_on = []
    toggle = engine.toggle_record

    def spy():
        ran_on.append(threading.current_thread().name)
        return toggle()

    engine.toggle_record = spy
    engine.toggle_record_soon()
    engine.toggle_record_soon()
    end = time.monotonic() + 30
    while len(ran_on) < 2 and time.monotonic() < end:
        time.sleep(0.01)
    summary = engine.stop()
    engine.backend = None
    assert ran_on == ["livemix-takes", "livemix-takes"]
    assert summary.take is not None


# --- one reader per ring ---------------------------------------------------------------

def test_the_change_log_has_one_reader(engine):
    """The take's finishing drains the audio thread's change log while the housekeeping
    thread does too: with one reader at a time every change is logged once, in order."""
    n = 3000
    stop = threading.Event()

    def finisher():
        while not stop.is_set():
            engine._drain_rings()

    t = threading.Thread(target=finisher)
    t.start()
    try:
        for k in range(n):
            engine.set("a", "pan", ((k % 200) - 100) / 100.0)
            if k % 500 == 0:
                time.sleep(0.01)
        end = time.monotonic() + 10
        while int(engine.st.cmd_idx[Q_READ]) < n and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        stop.set()
        t.join()
    engine._drain_rings()
    moves = [a for a in engine.automation if a["param"] == "pan"]
    assert len(moves) == n
    assert [m["value"] for m in moves] == [((k % 200) - 100) / 100.0 for k in range(n)]
    assert all(a["frame"] <= b["frame"] for a, b in zip(moves, moves[1:]))
