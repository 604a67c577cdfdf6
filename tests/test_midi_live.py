"""MIDI through real JACK MIDI ports from another process, into the live engine."""
import json
import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from reference import sine

from controllers.mapping import load_mapping
from controllers.ports import InputPort, wait_for_port
from controllers.surface import Surface
from controllers.taper import value7_to_db
from engine.dsp.layout import K_FRAME, ST_FRAMES
from engine.live import LiveEngine
from engine.session import load_session
from midi_sender import Sender

SR = 48000


@pytest.fixture
def jack(jack_clients):
    """These tests open JACK clients in the test process: the shared server."""
    return jack_clients


@pytest.fixture
def rig(maker, jack):
    """An engine on JACK with a surface reading the sender's port (generic map)."""
    maker.audio("a.wav", sine(1000, 30.0, SR, 0.5))
    maker.audio("b.wav", np.zeros(30 * SR))
    session = load_session(maker.session(
        [{"name": "a", "file": "a.wav", "pan": -1.0}, {"name": "b", "file": "b.wav"}],
        master={"ceiling_db": 0.0}, record={"subtype": "FLOAT"}))
    sender = Sender(jack.env)
    assert wait_for_port("lmsender:ctl", api="jack", output=False)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    port = InputPort("lmsender", api="jack")
    surface = Surface(eng, load_mapping("generic", ["a", "b"]), port)
    surface.start()
    yield session, eng, surface, sender
    surface.stop()
    if eng.backend is not None:
        eng.stop()
    sender.kill()


def test_cc_moves_a_fader_within_two_blocks_and_replays(rig, cli, maker):
    """A CC from another process moves the fader; the engine applies each change in
    the first block after the surface queued it (counted in engine frames read just
    before and after queueing, which a late thread can only widen: how long JACK
    MIDI and the poll take in wall-clock time is benchmarks/midi.py's measurement);
    the take shows the new level and re-renders bit for bit from its automation."""
    session, eng, surface, sender = rig
    queued = []
    engine_set = eng.set

    def spy(target, param, value, frame=None):
        before = int(eng.st.clock[K_FRAME])    # the next block's first frame
        engine_set(target, param, value, frame)
        queued.append((param, value, before, int(eng.st.clock[K_FRAME])))

    eng.set = spy
    time.sleep(0.3)
    sender.say("cc 1 7 96")                     # 0 dB: picks the fader up (takeover)
    time.sleep(0.2)
    for value in (64, 32, 80):
        sender.say(f"cc 1 7 {value}")
        time.sleep(0.3)
    surface.stop()
    summary = eng.stop()
    eng.backend = None
    side = json.loads(open(summary.take[:-4] + ".json").read())
    moves = [a for a in side["automation"] if a["target"] == "a" and a["param"] == "gain"]
    assert [m["value"] for m in moves[-3:]] == [value7_to_db(v) for v in (64, 32, 80)]
    sent = [q for q in queued if q[0] == "gain"][-3:]
    assert [q[1] for q in sent] == [value7_to_db(v) for v in (64, 32, 80)]
    period = 64                                  # the test server's block
    smoothing = 480
    for move, (_, _, before, after) in zip(moves[-3:], sent):
        # the first block to start after the command was queued applies it
        assert before <= move["frame"] <= after + 2 * period, (move["frame"], before, after)
    # the take shows the change: after the last move, track a sits at its new level
    take = sf.read(summary.take, dtype="float64")[0]
    f = moves[-1]["frame"] + smoothing + 200
    seg = take[f:f + 4800, 0]
    level = 20 * np.log10(np.abs(seg).max() / (0.5 * np.sqrt(2)))
    assert level == pytest.approx(value7_to_db(80), abs=0.05)
    # and the re-render from the automation equals the take
    out = maker.root / "replay.wav"
    cli("render", session.path, "--automation", summary.take[:-4] + ".json", "-o", out,
        "--subtype", "FLOAT")
    np.testing.assert_array_equal(sf.read(out, dtype="float32")[0],
                                  sf.read(summary.take, dtype="float32")[0])


def test_sender_killed_and_restarted(rig, jack):
    session, eng, surface, sender = rig
    sender.say("cc 1 7 96")
    time.sleep(0.3)
    sender.kill()
    t = time.monotonic()
    while surface.stats.connected and time.monotonic() - t < 3:
        time.sleep(0.05)
    assert not surface.stats.connected            # reported gone
    frames = int(eng.io.stats[ST_FRAMES])
    time.sleep(0.5)
    assert int(eng.io.stats[ST_FRAMES]) > frames + 0.3 * SR   # mixing goes on
    sender2 = Sender(jack.env)
    try:
        t = time.monotonic()
        while not surface.stats.connected and time.monotonic() - t < 3:
            time.sleep(0.05)
        assert surface.stats.connected and time.monotonic() - t <= 2.0 + 0.1
        sender2.say("cc 1 7 96")                  # pickup after the reconnect
        time.sleep(0.05)
        sender2.say("cc 1 7 64")
        time.sleep(0.3)
        assert eng.get("a", "gain") == value7_to_db(64)
        assert surface.stats.reconnects == 1
    finally:
        sender2.kill()


def _rss_kb():
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.parametrize("slow", [False, True])
def test_flood_does_not_reach_the_audio(rig, slow):
    """50,000 CCs in 5 s through JACK MIDI. What keeps a flood away from the audio is
    asserted as such, not as xrun counts a shared machine can move (the flood's xruns
    against the machine's floor are measured by benchmarks/midi.py):
    * every message is handled on the surface's own control thread, never on JACK's
      process thread (where a Python handler stalls the whole graph: the failure
      this guards against);
    * the audio thread gets the latest value per poll, not the flood: the changes
      sent to the engine are a small fraction of the messages (10-message bursts
      coalesce to one), and the last value sent wins;
    * memory stays bounded."""
    session, eng, surface, sender = rig
    if slow:
        surface.handler_delay_s = 0.001           # a fader handler that takes 1 ms
    threads = set()
    handle = surface.handle

    def spy(ev, pending):
        threads.add(threading.get_ident())
        return handle(ev, pending)

    surface.handle = spy
    sender.say("cc 1 7 96")
    time.sleep(0.3)
    rss = _rss_kb()
    messages0, applied0 = surface.stats.messages, surface.stats.applied
    assert sender.say("flood 10000 5 1 7 64").startswith("done 50000")
    time.sleep(0.5)
    messages = surface.stats.messages - messages0
    applied = surface.stats.applied - applied0
    assert threads == {surface._thread.ident}
    assert messages >= 45000
    assert applied <= messages / 2, (applied, messages)
    assert _rss_kb() - rss < 5 * 1024
    assert eng.get("a", "gain") == value7_to_db(64)     # the last value sent wins
    assert surface.stats.handler_errors == 0


def test_malformed_bytes_then_unterminated_sysex_then_ccs(rig):
    session, eng, surface, sender = rig
    sender.say("cc 1 7 96")
    time.sleep(0.2)
    invalid0 = surface.parser.invalid
    events0 = surface.stats.events
    for raw in ("B0 07", "F4", "F5", "FD", "F7", "07 40", "F0 01 02 03"):
        sender.say("raw " + raw)
    for value in (90, 80, 70):
        sender.say(f"raw B0 07 {value:02X}")
    # rtmidi's JACK input holds everything after an unterminated SysEx until an event
    # ends in F7; a complete SysEx lets it go, and livemix splits it at status bytes
    sender.say("raw F0 7E 7F 06 01 F7")
    time.sleep(0.3)
    assert surface.stats.handler_errors == 0
    assert surface.parser.invalid - invalid0 >= 6
    # the three CCs were parsed (plus the complete SysEx); the fader, an absolute
    # control, takes the latest of them
    assert surface.stats.events - events0 >= 4
    assert eng.get("a", "gain") == value7_to_db(70)
    moves = [a for a in eng.automation if a["target"] == "a"]
    assert moves[-1]["value"] == value7_to_db(70)


@pytest.fixture
def feedback_rig(maker, jack):
    """A 2-track engine with a chosen map, a surface with feedback to the sender."""
    from controllers.ports import OutputPort
    maker.audio("a.wav", sine(1000, 30.0, SR, 0.5))
    maker.audio("b.wav", np.zeros(30 * SR))
    session = load_session(maker.session(
        [{"name": "a", "file": "a.wav"}, {"name": "b", "file": "b.wav"}]))
    sender = Sender(jack.env)
    assert wait_for_port("lmsender:ctl", api="jack", output=False)
    eng = LiveEngine(session, backend="portaudio", record=False, say=lambda *_: None)
    eng.start()
    made = []

    def make(mapping):
        out = OutputPort("lmsender-fb", api="jack")
        assert out.available
        surface = Surface(eng, load_mapping(mapping, ["a", "b"]), InputPort("lmsender", api="jack"),
                          feedback_port=out)
        surface.start()
        made.append(surface)
        time.sleep(0.3)
        sender.say("recv")                        # drop the initial state dump
        return surface

    yield eng, sender, make
    for s in made:
        s.stop()
    eng.stop()
    sender.kill()


def test_mute_leds_follow_the_engine(feedback_rig):
    import json as _json
    eng, sender, make = feedback_rig
    make("nanokontrol2")
    sender.say("cc 1 48 127")                     # M button of strip 1: press
    sender.say("cc 1 48 0")                       # release
    time.sleep(0.2)
    assert eng.get("a", "mute") == 1.0
    got = _json.loads(sender.say("recv"))
    assert [0xB0, 48, 127] in got                 # the LED lights
    eng.set("a", "mute", 0.0)                     # from elsewhere (API, UI)
    time.sleep(0.2)
    got = _json.loads(sender.say("recv"))
    assert got and got[-1] == [0xB0, 48, 0]       # the LED follows


def test_motor_fader_not_pushed_while_touched(feedback_rig):
    import json as _json
    from controllers.taper import db_to_value14
    eng, sender, make = feedback_rig
    make("mackie")
    sender.say("raw 90 68 7F")                    # touch strip 1's fader (note 104)
    time.sleep(0.1)
    eng.set("a", "gain", -10.0)                   # the engine moves meanwhile
    time.sleep(0.3)
    got = _json.loads(sender.say("recv"))
    assert not any(m[0] == 0xE0 for m in got), got   # no motor move under the hand
    sender.say("raw 90 68 00")                    # release
    time.sleep(0.2)
    got = _json.loads(sender.say("recv"))
    bends = [m for m in got if m[0] == 0xE0]
    assert bends, got
    raw = bends[-1][1] | (bends[-1][2] << 7)
    assert raw == db_to_value14(-10.0)            # where the engine is, exactly


def test_feedback_is_rate_limited(feedback_rig):
    import json as _json
    eng, sender, make = feedback_rig
    make("mackie")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:            # 500 ms of changes every millisecond
        eng.set("a", "gain", -20.0 + 10.0 * ((time.monotonic() - t0) / 0.5))
        time.sleep(0.001)
    time.sleep(0.1)
    bends = [m for m in _json.loads(sender.say("recv")) if m[0] == 0xE0]
    assert 5 <= len(bends) <= 0.6 / 0.03 + 2, len(bends)
