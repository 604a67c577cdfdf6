"""The live engine through a real JACK server (dummy driver) and the virtual backend."""
import inspect
import sys
import threading
import time

import numpy as np
import pytest
import sounddevice
from reference import sine

from engine.dsp.layout import ST_FRAMES
from engine.live import LiveEngine
from engine.session import load_session

SR = 48000


def simple_session(maker, seconds=4.0, n=2, **extra):
    tracks = []
    for i in range(n):
        maker.audio(f"t{i}.wav", sine(220 * (i + 1), seconds, SR, amp=0.2))
        tracks.append({"name": f"t{i}", "file": f"t{i}.wav"})
    return load_session(maker.session(tracks, **extra))


def test_private_sounddevice_binding_is_what_we_rely_on():
    """The cfunc is handed to sounddevice's private _StreamBase: fail loudly if it changes."""
    params = inspect.signature(sounddevice._StreamBase.__init__).parameters
    for name in ("kind", "callback", "userdata", "wrap_callback", "blocksize", "device"):
        assert name in params, f"sounddevice._StreamBase lost {name!r}"
    assert params["wrap_callback"].default is None
    ptr = sounddevice._ffi.cast("PaStreamCallback*", 0x1000)
    assert int(sounddevice._ffi.cast("uintptr_t", ptr)) == 0x1000


def test_live_run_through_jack(maker, jack):
    session = simple_session(maker)
    eng = LiveEngine(session, backend="portaudio", record=False, say=lambda *_: None)
    eng.start()
    try:
        assert eng.backend.name == "portaudio"
        assert "system" in eng.backend.info["device"]
        time.sleep(1.0)
        # our JACK client is connected to the server's playback ports
        ports = jack.ports()
        assert any(p.startswith("livemix:") for p in ports), ports
    finally:
        summary = eng.stop()
    assert summary.frames >= 0.8 * SR
    assert summary.dropped_frames == 0
    assert summary.underruns == {"t0": 0, "t1": 0}
    # the load figures are measured (a preempted callback may exceed its period on a
    # busy machine: how long callbacks take is benchmarks/realtime.py's business)
    assert 0 < summary.load_mean <= summary.load_p999 <= summary.load_max
    assert summary.latency_s < 0.02


def test_no_output_device_falls_back_to_virtual_with_a_message(maker, monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "livemix-no-such-server")
    said = []
    session = simple_session(maker)
    eng = LiveEngine(session, backend="auto", record=False, say=said.append)
    eng.start()
    time.sleep(0.3)
    summary = eng.stop()
    assert summary.backend == "virtual"
    assert len(said) == 1 and "virtual backend" in said[0]


def test_nothing_compiles_after_start(maker):
    from numba.core import event

    compiled = []

    class Listener(event.Listener):
        def on_start(self, ev):
            compiled.append(ev.data)

        def on_end(self, ev):
            pass

    session = simple_session(maker)
    eng = LiveEngine(session, backend="virtual", record=False, say=lambda *_: None)
    eng.start()
    listener = Listener()
    event.register("numba:compile", listener)
    try:
        eng.set("t0", "gain", -6.0)
        eng.set("t1", "pan", 0.5)
        eng.set("master", "gain", -1.0)
        time.sleep(0.5)
    finally:
        event.unregister("numba:compile", listener)
        summary = eng.stop()
    assert summary.frames > 0.3 * SR
    assert compiled == []


def test_jack_server_killed_and_restarted(maker, jack):
    """The server dies and comes back. Asserted as the mechanism's properties, not as
    wall-clock latencies a busy machine can stretch (the waits below only guard against
    a hang): the loss is declared once callbacks have stopped for STALL_S, never
    sooner; a warm child joins the restarted server at its first or second attempt
    begun after the server answered; stopping returns, whatever state PortAudio is in."""
    from engine.backends.child import STALL_S
    session = simple_session(maker, seconds=10.0)
    events = []
    eng = LiveEngine(session, backend="portaudio", record=False, say=events.append)
    eng.start()
    try:
        time.sleep(1.0)
        jack.kill()
        t_kill = time.monotonic()
        while not eng.backend.device_lost and time.monotonic() - t_kill < 10:
            time.sleep(0.01)
        assert eng.backend.device_lost
        assert eng.backend.stall_s >= STALL_S
        time.sleep(1.0)
        jack.start()
        t_back = time.monotonic()
        before = eng.io.stats[0]
        while eng.io.stats[0] == before and time.monotonic() - t_back < 10:
            time.sleep(0.01)
        assert eng.io.stats[0] != before
        time.sleep(0.5)
        after_server = [t for t in eng.backend.attempts if t >= t_back]
        assert len(after_server) <= 2, (len(eng.backend.attempts), len(after_server))
    finally:
        t_stop = time.monotonic()
        summary = eng.stop()
        assert time.monotonic() - t_stop < 10.0     # stopping never hangs (PortAudio: minutes)
    kinds = [e["kind"] for e in summary.events]
    assert "device_lost" in kinds and "device_back" in kinds
    assert any("device lost" in e for e in events)


def test_the_parent_holding_the_gil_does_not_stop_the_audio(maker, jack):
    """The audio never waits for Python in the parent: while a garbage-making Python
    loop keeps the parent's GIL for half a second (switch interval raised to 5 s, so
    no other thread of the parent runs), the engine's frame counter keeps advancing
    through JACK. A callback that needed the parent's GIL would advance by at most a
    block or two; it must advance by at least half the time held (asserting the
    property, not an xrun count the machine's noise can move)."""
    session = simple_session(maker, seconds=6.0, n=8)
    eng = LiveEngine(session, backend="portaudio", record=False, say=lambda *_: None)
    eng.start()
    interval = sys.getswitchinterval()
    try:
        time.sleep(0.5)
        sys.setswitchinterval(5.0)
        f0 = int(eng.io.stats[ST_FRAMES])
        t0 = time.perf_counter()
        junk = []
        while time.perf_counter() - t0 < 0.5:
            junk.append([object() for _ in range(100)])   # the collector runs too
            if len(junk) > 1000:
                junk.clear()
        f1 = int(eng.io.stats[ST_FRAMES])
        held = time.perf_counter() - t0
    finally:
        sys.setswitchinterval(interval)
        summary = eng.stop()
    assert f1 - f0 >= 0.5 * held * SR, (f1 - f0, held)
    assert summary.frames >= f1


def test_virtual_backend_keeps_time(maker, cli):
    session = simple_session(maker, seconds=1.0)
    t0 = time.monotonic()
    p = cli("run", session.path, "--backend", "virtual", "--duration", "3", "--no-record",
            "--ui", "none")
    wall = time.monotonic() - t0
    assert "ran 3.0" in p.stdout or "ran 2.9" in p.stdout, p.stdout
    # the run itself (not counting start-up) takes 3 s +/- 10 %
    line = [l for l in p.stdout.splitlines() if l.startswith("ran ")][0]
    frames = int(line.split("(")[1].split()[0])
    assert abs(frames / SR - 3.0) <= 0.3
    assert wall >= 3.0


def test_devices_lists_the_jack_device(jack, cli):
    import json
    p = cli("devices", "--json", env=jack.env)
    info = json.loads(p.stdout)
    assert any(d["hostapi"] == "JACK Audio Connection Kit" and d["outputs"] == 2
               for d in info["audio"]), info
    p = cli("devices", env=jack.env)
    assert "JACK Audio Connection Kit" in p.stdout and "MIDI inputs:" in p.stdout


def test_unknown_device_is_one_line_listing_the_devices(maker, jack, cli):
    session = simple_session(maker)
    p = cli("run", session.path, "--device", "Focusrite", "--duration", "1", "--no-record",
            check=False, env=jack.env)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "'Focusrite'" in err[0] and "'system'" in err[0], p.stderr


def test_input_channel_the_device_lacks(maker, jack, cli):
    maker.audio("a.wav", sine(440, 1.0, SR, 0.1))
    path = maker.session([{"name": "a", "file": "a.wav"}, {"name": "mic", "input": [5]}])
    p = cli("run", path, "--duration", "1", "--no-record", check=False, env=jack.env)
    assert p.returncode != 0
    assert "input channel 5" in p.stderr and "2 inputs" in p.stderr
    assert "Traceback" not in p.stderr


def test_live_input_track_plays_another_clients_audio(maker, jack):
    import subprocess
    maker.audio("quiet.wav", np.zeros(SR * 4))
    path = maker.session([{"name": "bed", "file": "quiet.wav"},
                          {"name": "mic", "input": [1, 2]}], master={"ceiling_db": 0.0})
    session = load_session(path)
    metro = subprocess.Popen(["jack_metro", "-b", "240", "-D", "20", "-f", "1000", "-A", "0.5",
                              "-n", "metro"], env=jack.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    eng = LiveEngine(session, backend="portaudio", record=False, say=lambda *_: None)
    eng.start()
    try:
        time.sleep(0.5)
        ports = jack.ports()
        ins = [p for p in ports if p.startswith("livemix:in")]
        metro_out = [p for p in ports if p.startswith("metro:")]
        assert len(ins) == 2 and metro_out, ports
        for p in ins:
            subprocess.run(["jack_connect", metro_out[0], p], env=jack.env, check=True)
        peak = 0.0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            peak = max(peak, float(eng.st.track_meter[1, 0]))
            time.sleep(0.002)
    finally:
        eng.stop()
        metro.kill()
    assert peak > 0.1     # the click reached the mic track's meter


def test_garbage_heavy_thread_does_not_starve_the_readers(maker, jack):
    """A Python thread making cyclic garbage and collecting it (each collection holds
    the GIL for 100 ms and more) beside the engine: the audio keeps its deadline and
    the file readers, in their own process, keep every track fed."""
    import gc
    session = simple_session(maker, seconds=10.0, n=32)
    stop = threading.Event()

    def garbage():
        while not stop.is_set():
            junk = []
            for _ in range(20000):
                a, b = [], []
                a.append(b)
                b.append(a)                  # cycles: only the collector frees them
                junk.append(a)
            del junk
            gc.collect()                     # holds the GIL for the whole collection

    eng = LiveEngine(session, backend="portaudio", record=False, say=lambda *_: None)
    eng.start()
    t = threading.Thread(target=garbage)
    t.start()
    try:
        time.sleep(4.0)
    finally:
        stop.set()
        t.join()
        summary = eng.stop()
    assert summary.frames > 3.5 * SR
    assert sum(summary.underruns.values()) == 0, summary.underruns


def test_audio_process_takes_no_page_faults_once_running(maker, jack):
    """The audio child maps every shared page before the stream starts: the audio
    thread never takes a page fault walking the rings (it took thousands before)."""
    session = simple_session(maker, seconds=10.0, n=16)
    eng = LiveEngine(session, backend="portaudio", record=True, say=lambda *_: None)
    eng.start()
    try:
        pid = eng.backend._proc.pid

        def minflt():
            with open(f"/proc/{pid}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[7])

        time.sleep(0.5)
        before = minflt()
        time.sleep(2.0)                   # the rings' first pass, the record ring filling
        faults = minflt() - before
    finally:
        eng.stop()
    assert faults < 100, faults


@pytest.mark.parametrize("args, needle", [
    (["--takes-dir", "/proc/livemix-nope"], "/proc/livemix-nope"),
    (["--mapping", "nanokontrol2"], "--mapping nanokontrol2"),
    (["--midi", "nosuchport"], "'nosuchport'"),
])
def test_run_user_errors_are_one_line(maker, cli, args, needle, monkeypatch):
    session = simple_session(maker, seconds=1.0)
    p = cli("run", session.path, "--backend", "virtual", "--duration", "1", *args,
            check=False, env={"JACK_DEFAULT_SERVER": "livemix-no-such-server"})
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_many_blocks_per_host_period_are_not_freewheel(maker, monkeypatch):
    """JACK at 1024 frames with --blocksize 64: PortAudio's buffer adapter calls back 16
    times per JACK period, back to back. That is real time, not freewheel: the engine
    must not take it for freewheel (which used to freeze the load statistics, make the
    audio thread wait, and end in a false "device lost")."""
    from jackserver import JackServer

    from engine.dsp.layout import ST_CALLBACKS, ST_FREEWHEEL, ST_MAX_PPM
    server = JackServer(period=1024, suffix="-1024").start()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
    try:
        session = simple_session(maker, seconds=6.0)
        eng = LiveEngine(session, backend="portaudio", blocksize=64, record=False,
                         say=lambda *_: None)
        eng.start()
        seen = set()
        try:
            t_end = time.monotonic() + 3.0
            while time.monotonic() < t_end:
                seen.add(int(eng.io.stats[ST_FREEWHEEL]))
                time.sleep(0.01)
            callbacks = int(eng.io.stats[ST_CALLBACKS])
            load_max = int(eng.io.stats[ST_MAX_PPM])
            measured = int(eng.io.load_hist.sum())
        finally:
            summary = eng.stop()
    finally:
        server.stop()
    assert seen == {0}
    assert measured == callbacks > 0 and load_max > 0     # every callback is load
    assert not any(e["kind"] == "device_lost" for e in summary.events)
