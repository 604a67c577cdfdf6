"""The same session and the same moves at the same frames give the same output,
whatever the block size (bit for bit)."""
import math

import numpy as np
import pytest
import soundfile as sf
from reference import sine

from engine.backends.offline import render
from engine.params import P_DUCK_DEPTH, P_GAIN, P_MASTER_GAIN, P_MUTE, P_PAN, P_SOLO
from engine.session import load_session

SR = 48000


@pytest.fixture(scope="module")
def busy_session(tmp_path_factory):
    """3 s, four tracks, a resampled source, a loop, ducking, and a limiter at work."""
    from conftest import SessionMaker
    m = SessionMaker(tmp_path_factory.mktemp("inv"))
    rng = np.random.default_rng(11)
    voice = sine(180, 3.0, SR, amp=0.6) * (np.sin(2 * np.pi * 1.3 * np.arange(3 * SR) / SR) > 0)
    m.audio("voice.wav", voice)
    m.audio("music.wav", np.stack([sine(440, 3.0, SR, 0.7), sine(550, 3.0, SR, 0.7)], 1))
    m.audio("amb.wav", rng.uniform(-0.5, 0.5, (int(3 * 44100), 2)), sr=44100)
    m.audio("loop.wav", rng.uniform(-0.3, 0.3, 777))
    path = m.session(
        [{"name": "voice", "file": "voice.wav", "pan": -0.2},
         {"name": "music", "file": "music.wav", "gain_db": 3.0},
         {"name": "amb", "file": "amb.wav", "offset_s": 0.0123},
         {"name": "loop", "file": "loop.wav", "loop": True, "gain_db": -6.0}],
        ducking=[{"key": ["voice"], "targets": ["music", "amb"], "depth_db": -8.0,
                  "attack_ms": 7.0, "hold_ms": 40.0, "release_ms": 90.0}],
        master={"ceiling_db": -3.0, "gain_db": 2.0})
    return load_session(path), m.root


MOVES = [(0, P_PAN, 3, 0.7), (1001, P_GAIN, 1, -4.5), (1001, P_MUTE, 3, 1.0),
         (20000, P_SOLO, 0, 1.0), (20017, P_GAIN, 2, -math.inf), (33333, P_SOLO, 0, 0.0),
         (40000, P_MUTE, 3, 0.0), (50001, P_DUCK_DEPTH, 0, -14.0), (70000, P_MASTER_GAIN, 0, 4.0),
         (70000, P_GAIN, 2, 1.0), (100003, P_PAN, 1, -1.0)]


def test_blocksizes_give_identical_output(busy_session):
    session, root = busy_session
    outputs = {}
    for bs in (1, 64, 65, 128, 1024):
        out = root / f"bs{bs}.wav"
        res = render(session, str(out), subtype="FLOAT", blocksize=bs, commands=MOVES)
        assert res.ceiling_samples > 0       # the limiter took part
        outputs[bs] = sf.read(out, dtype="float32")[0]
    ref = outputs[128]
    assert np.abs(ref).max() > 0.1
    for bs, x in outputs.items():
        np.testing.assert_array_equal(x, ref, err_msg=f"blocksize {bs}")


def test_cli_blocksize_option_gives_identical_output(busy_session, cli):
    session, root = busy_session
    outs = []
    for bs in (64, 1024):
        out = root / f"cli{bs}.wav"
        cli("render", session.path, "-o", out, "--subtype", "FLOAT", "--blocksize", bs)
        outs.append(sf.read(out, dtype="float32")[0])
    np.testing.assert_array_equal(outs[0], outs[1])
