"""Automation: the audio thread logs every change with its frame; a re-render replays a
take bit for bit."""
import json
import time

import numpy as np
import soundfile as sf
from reference import sine

from engine.live import LiveEngine
from engine.rt.callback import unpack
from engine.rt.shm import address_table
from engine.rt.state import allocate, allocate_io
from engine.session import load_session

SR = 48000


def session_with_moves(maker):
    maker.audio("v.wav", sine(200, 8.0, SR, 0.4) * (np.arange(8 * SR) % SR < SR // 2))
    maker.audio("m.wav", np.stack([sine(440, 8.0, SR, 0.3), sine(550, 8.0, SR, 0.3)], 1))
    path = maker.session([{"name": "voice", "file": "v.wav"}, {"name": "music", "file": "m.wav"}],
                         ducking=[{"key": ["voice"], "targets": ["music"]}],
                         record={"subtype": "FLOAT"})
    return load_session(path)


def test_callback_unpack_matches_the_state_layout(maker):
    """The cfunc rebuilds the state from an address table by field position: every
    array must come back with its own address, shape and dtype."""
    s = session_with_moves(maker)
    st, io = allocate(s), allocate_io(s)
    addr, shapes = address_table(st, io)
    st2, io2 = unpack(addr, shapes)
    for a, b in zip(list(st) + list(io), list(st2) + list(io2)):
        assert a.ctypes.data == b.ctypes.data and a.shape == b.shape and a.dtype == b.dtype
    assert len(st2) == len(st) and len(io2) == len(io)


def test_live_moves_are_logged_and_replay_bit_for_bit(maker, cli):
    session = session_with_moves(maker)
    eng = LiveEngine(session, backend="virtual", say=lambda *_: None)
    eng.start()
    for target, param, value in [("music", "gain", -6.0), ("voice", "pan", -0.5),
                                 ("music", "mute", 1.0), ("music", "mute", 0.0),
                                 ("master", "gain", -3.0), ("0", "duck_depth", -15.0),
                                 ("voice", "gain", float("-inf")), ("voice", "gain", 0.0)]:
        time.sleep(0.25)
        eng.set(target, param, value)
    time.sleep(0.3)
    summary = eng.stop()
    side_path = summary.take[:-4] + ".json"
    side = json.loads(open(side_path).read())
    auto = side["automation"]
    assert [(a["target"], a["param"]) for a in auto] == [
        ("music", "gain"), ("voice", "pan"), ("music", "mute"), ("music", "mute"),
        ("master", "gain"), ("ducking[1]", "duck_depth"), ("voice", "gain"), ("voice", "gain")]
    assert auto[6]["value"] == "-inf" and auto[2]["value"] == 1.0
    frames = [a["frame"] for a in auto]
    assert frames == sorted(frames) and 0 < frames[0] < frames[-1] < side["frames"]
    out = maker.root / "replay.wav"
    cli("render", session.path, "--automation", side_path, "-o", out, "--subtype", "FLOAT")
    replay = sf.read(out, dtype="float32")[0]
    take = sf.read(summary.take, dtype="float32")[0]
    assert len(replay) == len(take)
    np.testing.assert_array_equal(replay, take)
    # and without the automation the render differs (the moves mattered)
    cli("render", session.path, "-o", out, "--subtype", "FLOAT", "--duration",
        str(len(take) / SR), "--force")
    assert not np.array_equal(sf.read(out, dtype="float32")[0], take)


def test_bad_automation_file_is_one_line(maker, cli):
    session = session_with_moves(maker)
    bad = maker.root / "bad.json"
    bad.write_text(json.dumps({"automation": [{"frame": 0, "target": "drums", "param": "gain",
                                               "value": 0}]}))
    p = cli("render", session.path, "--automation", bad, "-o", maker.root / "x.wav", check=False)
    assert p.returncode != 0 and "'drums'" in p.stderr and "automation[0]" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_takes_started_and_stopped_mid_run_replay_exactly(maker, cli):
    """`r` / a REC button: a second take starting mid-run replays to the same samples."""
    session = session_with_moves(maker)
    eng = LiveEngine(session, backend="virtual", record=False, say=lambda *_: None)
    eng.start()
    time.sleep(0.3)
    eng.set("music", "gain", -8.0)
    assert eng.toggle_record() is True            # take 1 starts mid-run
    time.sleep(0.4)
    eng.set("voice", "pan", 0.4)
    time.sleep(0.3)
    assert eng.toggle_record() is False           # take 1 ends
    time.sleep(0.3)
    eng.set("music", "gain", -2.0)                # between takes
    assert eng.toggle_record() is True            # take 2
    time.sleep(0.4)
    eng.set("master", "gain", -4.0)
    time.sleep(0.3)
    summary = eng.stop()
    assert len(eng.takes) == 2 and summary.take == eng.takes[1]
    for take in eng.takes:
        side = json.loads(open(take[:-4] + ".json").read())
        assert side["complete"] and side["start_frame"] > 0
        out = maker.root / "replay.wav"
        cli("render", session.path, "--automation", take[:-4] + ".json", "-o", out,
            "--subtype", "FLOAT", "--force")
        np.testing.assert_array_equal(sf.read(out, dtype="float32")[0],
                                      sf.read(take, dtype="float32")[0])
