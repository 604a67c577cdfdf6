"""MIDI learn: controls moved in another process, through a private JACK server, become
a mapping file that loads back; plus the classification rules without devices."""
import threading
import time

import numpy as np
import pytest

from controllers.learn import (LearnError, Learner, Step, is_button, is_relative, learn,
                               mapping_text, steps_for)
from controllers.mapping import load_mapping
from controllers.messages import MidiParser
from controllers.ports import PortError, wait_for_port
from controllers.virtual import LoopbackPort
from engine.session import load_session
from midi_sender import Sender

SR = 48000


class Run:
    """learn() on a thread; its messages collected so the test can wait for prompts."""

    def __init__(self, session, port, out, **kw):
        self.lines = []
        self.cond = threading.Condition()
        self.skip = threading.Event()
        self.done = threading.Event()
        self.result = self.error = None
        kw.setdefault("skip", self.skip)
        kw.setdefault("done", self.done)

        def say(line):
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

        def run():
            try:
                self.result = learn(session, port, out, say=say, **kw)
            except BaseException as e:      # reported by finish()
                self.error = e
            finally:
                say("<end>")

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self, text, timeout=30.0, after=0):
        """Wait for a message containing ``text`` (from line ``after`` on); its index.
        The timeout only guards against a hang: a starved machine may take seconds."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                if "<end>" in self.lines or time.monotonic() >= end:
                    raise AssertionError(f"no {text!r} in: {self.lines}")
                self.cond.wait(0.05)

    def finish(self, timeout=30.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), self.lines
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def session(maker):
    maker.audio("a.wav", np.zeros(SR))
    maker.audio("b.wav", np.zeros(SR))
    return load_session(maker.session(
        [{"name": "a", "file": "a.wav"}, {"name": "b", "file": "b.wav"}],
        ducking=[{"key": ["a"], "targets": ["b"]}]))


@pytest.fixture
def sender(jack_clients):
    jack = jack_clients
    s = Sender(jack.env)
    try:
        assert wait_for_port("lmsender:ctl", api="jack", output=False)
        yield s
    finally:
        s.kill()


def test_learn_through_jack(session, sender, tmp_path):
    out = tmp_path / "my.toml"
    run = Run(session, "lmsender", out, api="jack")
    # 1 a gain: a 7-bit fader
    run.wait("[1/10] move the control for a gain (Enter to skip)")
    sender.sweep([(0xB0, 7, v) for v in range(60, 72)])
    # 2 a pan: an endless encoder (Mackie encoding), turned right then left
    i = run.wait("[2/10] move the control for a pan")
    sender.sweep([(0xB0, 16, v) for v in (1, 1, 2, 1, 65, 65)])
    # 3 a mute: a note button
    i = run.wait("[3/10] move the control for a mute", after=i)
    sender.sweep([(0x90, 16, 127), (0x90, 16, 0)], gap=0.05)
    # 4 a solo: first the fader of a gain again (not bound twice), then a CC button
    i = run.wait("[4/10] move the control for a solo", after=i)
    sender.sweep([(0xB0, 7, v) for v in range(72, 76)])
    i = run.wait("CC 7 on channel 1 is already bound to a gain", after=i)
    sender.sweep([(0xB0, 32, 127), (0xB0, 32, 0)], gap=0.05)
    # 5 b gain: a note is refused (a button cannot set a gain), then a 14-bit fader
    i = run.wait("[5/10] move the control for b gain", after=i)
    sender.sweep([(0x90, 20, 127), (0x90, 20, 0)], gap=0.02)
    i = run.wait("note 20 on channel 1 is a button", after=i)
    for v in range(8):
        sender.raw(0xB0, 1, 40 + v)
        sender.raw(0xB0, 33, (v * 16) & 0x7F)
        time.sleep(0.004)
    # 6 b pan: skipped
    i = run.wait("[6/10] move the control for b pan", after=i)
    run.skip.set()
    i = run.wait("skipped", after=i)
    # 7 b mute: note 16 again, on channel 2: another control
    i = run.wait("[7/10] move the control for b mute", after=i)
    sender.sweep([(0x91, 16, 127), (0x91, 16, 0)], gap=0.05)
    # 8 b solo: skipped
    i = run.wait("[8/10] move the control for b solo", after=i)
    run.skip.set()
    # 9 master gain: a Mackie master fader, touch note 112 then pitch bend on channel 9
    i = run.wait("[9/10] move the control for master gain", after=i)
    sender.raw(0x90, 112, 127)
    time.sleep(0.05)
    sender.sweep([(0xE8, v & 0x7F, v >> 7) for v in range(8000, 12000, 400)])
    sender.raw(0x90, 112, 0)
    # 10 the ducking rule's depth: a knob on channel 3
    i = run.wait("[10/10] move the control for ducking[1] duck_depth (a ducks b;", after=i)
    sender.sweep([(0xB2, 10, v) for v in range(90, 70, -2)])
    result = run.finish()

    assert result.path == str(out)
    assert result.skipped == ["b pan", "b solo"]
    m = load_mapping(out, ["a", "b"], duck_rules=1)
    got = [(b.control, b.channel, b.number, b.target, b.param, b.mode, b.touch,
            b.touch_channel, b.feedback) for b in m.bindings]
    assert got == [
        ("cc", 1, 7, 0, "gain", "absolute", None, None, False),
        ("cc", 1, 16, 0, "pan", "relative", None, None, False),
        ("note", 1, 16, 0, "mute", "toggle", None, None, False),
        ("cc", 1, 32, 0, "solo", "toggle", None, None, False),
        ("cc14", 1, 1, 1, "gain", "absolute", None, None, False),
        ("note", 2, 16, 1, "mute", "toggle", None, None, False),
        ("pitchbend", 9, 0, "master", "gain", "absolute", 112, 1, True),
        ("cc", 3, 10, 0, "duck_depth", "absolute", None, None, False),
    ]
    assert m.cc14_pairs == {(1, 1)}
    assert m.touch_notes == {(1, 112)}
    # the file maps exactly what was learned (and what learn() loaded back)
    assert [b.param for b in result.mapping.bindings] == [b.param for b in m.bindings]
    assert len(result) == 8
    # one move bound once: exactly one "already bound" message, for the repeated fader
    assert sum("already bound" in line for line in run.lines) == 1


def test_port_that_does_not_exist(session, sender, tmp_path):
    out = tmp_path / "my.toml"
    with pytest.raises(PortError) as e:
        learn(session, "no-such-controller", out, api="jack", say=lambda *_: None)
    msg = str(e.value)
    assert "\n" not in msg
    assert "no-such-controller" in msg and "lmsender:ctl" in msg
    assert not out.exists()


# --- without a MIDI system: a loopback port --------------------------------------------

def test_refuses_to_overwrite_unless_forced(session, tmp_path):
    out = tmp_path / "my.toml"
    out.write_text("keep me\n")
    port = LoopbackPort()
    with pytest.raises(LearnError, match="already exists"):
        learn(session, port, out, say=lambda *_: None)
    assert out.read_text() == "keep me\n"
    run = Run(session, port, out, force=True)
    run.wait("[1/10]")
    for v in range(20, 30):
        port.send([0xB0, 7, v])
        time.sleep(0.003)
    run.wait("[2/10]")
    run.done.set()
    result = run.finish()
    assert result.skipped[0] == "a pan" and len(result.skipped) == 9
    m = load_mapping(out, ["a", "b"], duck_rules=1)
    assert [(b.control, b.number, b.target, b.param) for b in m.bindings] == \
        [("cc", 7, 0, "gain")]


def test_nothing_learned_writes_nothing(session, tmp_path):
    out = tmp_path / "my.toml"
    run = Run(session, LoopbackPort(), out, timeout_s=0.01)
    result = run.finish()
    assert result.path is None and result.bindings == [] and len(result.skipped) == 10
    assert not out.exists()
    assert any("nothing learned" in line for line in run.lines)


def test_steps_order(session):
    assert [(s.label, s.param) for s in steps_for(session)] == [
        ("a", "gain"), ("a", "pan"), ("a", "mute"), ("a", "solo"),
        ("b", "gain"), ("b", "pan"), ("b", "mute"), ("b", "solo"),
        ("master", "gain"), ("ducking[1]", "duck_depth")]


# --- the classification rules, with made-up arrival times ------------------------------

GAIN = Step("a", "gain", "a")
MUTE = Step("a", "mute", "a")


def play(learner, step, timed_msgs):
    """Feed (t, bytes) to a learner; returns the binding made (or None) after the
    last message's settle time."""
    parser = MidiParser()
    out = None
    for t, msg in timed_msgs:
        for ev in parser.feed(msg):
            learner.feed(t, ev)
        out = out or learner.check(t, step)
    t_end = timed_msgs[-1][0] + learner.settle_s + 0.01
    return out or learner.check(t_end, step)


@pytest.mark.parametrize("values, relative", [
    ([1, 1, 1], True), ([65, 65], True), ([1, 65, 1], True), ([1], True), ([65], True),
    ([3, 2, 1], False), ([1, 2, 3, 4], False),            # a fader near the bottom
    ([70, 71, 70, 72], False), ([63, 64, 65], False), ([100, 101], False),
    ([127, 0], False), ([], False),
])
def test_relative_or_absolute(values, relative):
    assert is_relative(values) is relative


@pytest.mark.parametrize("values, button", [
    ([127, 0], True), ([127], True), ([1, 0], True), ([0, 127, 0, 127], True),
    ([10, 20], False), ([1, 1, 65], False), ([], False),
])
def test_button(values, button):
    assert is_button(values) is button


def test_lsb_alone_is_a_plain_cc_and_a_slow_pair_is_not_14_bit():
    b = play(Learner(say=lambda *_: None), GAIN,
             [(0.0 + 0.01 * k, [0xB0, 33, k]) for k in range(5)])
    assert (b["control"], b["number"], b["mode"]) == ("cc", 33, "absolute")
    # MSB and LSB 50 ms apart: not a pair; the gesture is the MSB's (the first control)
    msgs = []
    for k in range(4):
        msgs += [(0.1 * k, [0xB0, 2, 40 + k]), (0.1 * k + 0.05, [0xB0, 34, 5])]
    b = play(Learner(say=lambda *_: None), GAIN, msgs)
    assert (b["control"], b["number"]) == ("cc", 2)


def test_touch_held_before_a_pitch_bend_gesture():
    said = []
    lr = Learner(say=said.append)
    # the touch note comes first and the hand rests more than TOUCH_S: the note gesture
    # ends on its own (a button cannot set a gain) ...
    assert play(lr, GAIN, [(0.0, [0x90, 105, 127])]) is None
    lr.check(5.0, GAIN)
    assert any("is a button" in s for s in said)
    # ... then the fader moves while still touched: the held note is its touch note
    b = play(lr, GAIN, [(6.0 + 0.005 * k, [0xE1, 0, 60 + k]) for k in range(5)])
    assert (b["control"], b["channel"], b.get("touch"), b.get("touch_channel")) == \
        ("pitchbend", 2, 105, 1)
    # the touch note is taken: pressing it later is silent, and it cannot become a button
    n = len(said)
    assert play(lr, MUTE, [(10.0, [0x90, 105, 127]), (10.05, [0x90, 105, 0])]) is None
    assert len(said) == n


def test_encoder_cannot_be_a_mute_and_fader_on_a_mute_is_absolute():
    said = []
    lr = Learner(say=said.append)
    assert play(lr, MUTE, [(0.01 * k, [0xB0, 20, v]) for k, v in
                           enumerate((1, 1, 1, 65))]) is None
    assert "endless encoder" in said[-1]
    b = play(lr, MUTE, [(1.0 + 0.01 * k, [0xB0, 3, 40 + k]) for k in range(6)])
    assert (b["control"], b["number"], b["mode"]) == ("cc", 3, "absolute")


def test_release_of_a_held_button_after_it_was_bound_is_silent():
    said = []
    lr = Learner(say=said.append)
    b = play(lr, MUTE, [(0.0, [0xB0, 48, 127])])
    assert b["mode"] == "toggle"
    n = len(said)
    lr.feed(2.0, MidiParser().feed([0xB0, 48, 0])[0])     # released 2 s later
    assert len(said) == n and lr.gesture is None


def test_one_move_binds_once_even_if_it_goes_on():
    lr = Learner(say=lambda *_: None, max_gesture_s=0.5)
    msgs = [(0.01 * k, [0xB0, 5, k % 128]) for k in range(100)]   # a 1 s move
    parser = MidiParser()
    bound = []
    for t, m in msgs:
        lr.feed(t, parser.feed(m)[0])
        for step in (GAIN, Step("a", "pan", "a")):
            b = lr.check(t, step)
            if b:
                bound.append(b)
    assert len(bound) == 1 and lr.gesture is None


def test_written_text_escapes_names(tmp_path, maker):
    maker.audio("q.wav", np.zeros(100))
    names = ['quo"te', "back\\slash", "ünï"]
    s = load_session(maker.session([{"name": n, "file": "q.wav"} for n in names]))
    bindings = [{"control": "cc", "channel": 1, "number": i, "target": n, "param": "gain",
                 "mode": "absolute", "name": f"CC {i}"} for i, n in enumerate(names)]
    path = tmp_path / "m.toml"
    path.write_text(mapping_text("x", "y\tz", bindings), encoding="utf-8")
    m = load_mapping(path, [t.name for t in s.tracks])
    assert [b.target for b in m.bindings] == [0, 1, 2]


def test_strip_steps_and_a_strip_mapping_that_loads(tmp_path, maker):
    """With --strip, a track's strip stages follow its four basics (switches and the
    values people ride); a button binds a stage switch as a toggle, a knob a value as
    absolute, and the file written loads back."""
    maker.audio("v.wav", np.zeros(SR))
    s = load_session(maker.session([{
        "name": "v", "file": "v.wav", "hpf": {"freq_hz": 90.0},
        "eq": [{"type": "peak", "freq_hz": 2000.0}, {"type": "low-cut", "freq_hz": 60.0}],
        "comp": {"threshold_db": -20.0}}]))
    assert [p.param for p in steps_for(s, strip=True)] == [
        "gain", "pan", "mute", "solo", "hpf", "hpf_freq", "eq", "eq1_freq", "eq1_gain",
        "eq2_freq", "comp", "comp_threshold", "comp_ratio", "comp_makeup", "gain"]
    assert [p.param for p in steps_for(s)] == ["gain", "pan", "mute", "solo", "gain"]
    lr = Learner(say=lambda *_: None)
    comp = Step("v", "comp", "v")
    b = play(lr, comp, [(0.0, [0xB0, 48, 127])])
    assert (b["control"], b["mode"]) == ("cc", "toggle")
    thr = Step("v", "comp_threshold", "v")
    k = play(lr, thr, [(1.0 + 0.01 * i, [0xB0, 21, 40 + i]) for i in range(6)])
    assert (k["control"], k["number"], k["mode"]) == ("cc", 21, "absolute")
    for b_, step in ((b, comp), (k, thr)):
        b_.update(target=step.target, param=step.param)
    path = tmp_path / "strip.toml"
    path.write_text(mapping_text("x", "", [b, k]), encoding="utf-8")
    m = load_mapping(path, ["v"])
    assert [(x.param, x.mode) for x in m.bindings] == [("comp", "toggle"),
                                                      ("comp_threshold", "absolute")]
