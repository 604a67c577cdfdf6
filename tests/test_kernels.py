"""The numba kernels against the float64 references in tests/reference.py."""
import math
from pathlib import Path

import numpy as np
import pytest
import reference as ref
from reference import TOL_GAIN, TOL_SAMPLE

from engine.dsp.duck import duck_segment
from engine.dsp.layout import (C_LOOKAHEAD, C_RAMP, DS_DEPTH, K_CEIL, L_BOXSUM, L_ENV,
                               M_RELEASE, N_LIM, N_LIMI, N_RCFG, N_RSTATE,
                               S_EOF, S_UNDERRUNS)
from engine.dsp.limiter import limit_segment
from engine.dsp.smoothing import ramp_jump
from engine.params import (P_DUCK_DEPTH, P_GAIN, P_MASTER_GAIN, P_MUTE, P_PAN, P_SOLO,
                           db_to_lin, lin_to_db, pan_gains)
from engine.rt.block import process_block, run_blocks
from engine.rt.rings import command_push, ring_pull, ring_push
from engine.rt.state import allocate, float32_ceiling
from engine.session import parse_session

SR = 48000


def session(tracks, ducking=(), master=None, blocksize=128):
    data = {"engine": {"samplerate": SR, "blocksize": blocksize},
            "tracks": [{"name": n, "file": f"{n}.wav", **kw} for n, kw in tracks],
            "ducking": list(ducking), "master": master or {}}
    return parse_session(data, Path("/virtual/test.toml"), check_files=False)


def run(sess, signals, commands=(), blocksize=128, nframes=None):
    """Feed signals (n, 2) into a fresh state, run the block function, return (out, state)."""
    n = nframes or len(signals[0])
    st = allocate(sess, maxblock=blocksize, ring_frames=n + blocksize)
    for i, x in enumerate(signals):
        ring_push(st.src_ring[i], st.src_pos[i], np.ascontiguousarray(x, np.float32))
        st.src_pos[i, S_EOF] = len(x)
    for c in commands:
        assert command_push(st.cmd_ring, st.cmd_idx, *c)
    out = np.zeros((n, 2), np.float32)
    run_blocks(st, out, n, blocksize)
    return out.astype(np.float64), st


# --- laws ----------------------------------------------------------------------

def test_pan_law_constant_power_unity_centre():
    for p in np.linspace(-1, 1, 41):
        left, right = pan_gains(p)
        rl, rr = ref.pan_gains(p)
        assert left == pytest.approx(rl, abs=1e-12) and right == pytest.approx(rr, abs=1e-12)
        assert left ** 2 + right ** 2 == pytest.approx(2.0, abs=1e-12)
    assert pan_gains(0.0) == (1.0, 1.0)
    assert pan_gains(-1.0)[1] == 0.0 and pan_gains(1.0)[0] == 0.0


def test_db_conversions():
    assert db_to_lin(-math.inf) == 0.0 and db_to_lin(0.0) == 1.0
    assert db_to_lin(-6.0) == pytest.approx(0.501187, abs=1e-6)
    assert lin_to_db(0.0) == -math.inf and lin_to_db(db_to_lin(-17.3)) == pytest.approx(-17.3)


# --- the whole block function against the reference mixer ----------------------

def _stereo(x):
    return np.stack([x, x], axis=1) if x.ndim == 1 else x


def test_mix_matches_reference_with_moves_ducking_and_limiting():
    n = SR // 2
    rng = np.random.default_rng(7)
    voice = _stereo(ref.sine(220, 0.5, SR, amp=0.3) * (np.arange(n) > n // 4))
    music = np.stack([ref.sine(440, 0.5, SR, amp=0.5), ref.sine(660, 0.5, SR, amp=0.4)], 1)
    noise = _stereo(rng.uniform(-0.4, 0.4, n))
    sess = session([("voice", {"gain_db": -3.0, "pan": -0.3}),
                    ("music", {"pan": 0.5}),
                    ("amb", {"gain_db": 2.0})],
                   ducking=[{"key": ["voice"], "targets": ["music", "amb"],
                             "threshold_db": -20.0, "depth_db": -9.0, "attack_ms": 5.0,
                             "hold_ms": 30.0, "release_ms": 60.0}],
                   master={"gain_db": 3.0, "ceiling_db": -2.0})
    ramp_n = round(0.010 * SR)
    cmds = [(1000, P_GAIN, 1, -12.0), (3001, P_PAN, 2, -0.8), (7000, P_MUTE, 2, 1.0),
            (9000, P_MUTE, 2, 0.0), (15000, P_GAIN, 0, 0.0), (17000, P_MASTER_GAIN, 0, 0.0)]
    out, st = run(sess, [voice, music, noise], cmds)

    def gain_track(t, fader0, changes, mutes=()):
        fader = ref.ramp(n, 0, [], 1)  # placeholder for shape
        g0 = ref.db_to_lin(fader0)
        evs = [(f, ref.db_to_lin(v)) for f, v in changes]
        evs += [(f, 0.0 if m else ref.db_to_lin(fader0)) for f, m in mutes]
        return ref.ramp(n, g0, evs, ramp_n) if evs else np.full_like(fader, g0)

    def pan_track(p0, changes=()):
        left0, right0 = ref.pan_gains(p0)
        return (ref.ramp(n, left0, [(f, ref.pan_gains(p)[0]) for f, p in changes], ramp_n),
                ref.ramp(n, right0, [(f, ref.pan_gains(p)[1]) for f, p in changes], ramp_n))

    tracks = [
        {"signal": voice, "gain": gain_track(0, -3.0, [(15000, 0.0)]), "pan": pan_track(-0.3)},
        {"signal": music, "gain": gain_track(1, 0.0, [(1000, -12.0)]), "pan": pan_track(0.5)},
        {"signal": noise, "gain": gain_track(2, 2.0, [], [(7000, True), (9000, False)]),
         "pan": pan_track(0.0, [(3001, -0.8)])},
    ]
    rules = [{"key": [0], "targets": [1, 2], "threshold_db": -20.0, "depth_db": -9.0,
              "attack_ms": 5.0, "hold_ms": 30.0, "release_ms": 60.0}]
    # master gain moves +3 -> 0 dB at 17000: apply as a per-sample ramp before the limiter
    mg = ref.ramp(n, ref.db_to_lin(3.0), [(17000, 1.0)], ramp_n)
    bus, _ = ref.mix(tracks, SR, ramp_n, rules)
    bus = bus * mg[:, None]
    expected = ref.limiter(bus, float32_ceiling(-2.0), int(st.cfg[C_LOOKAHEAD]),
                           st.master[M_RELEASE])
    assert np.abs(out - expected).max() < TOL_SAMPLE
    assert st.clock[K_CEIL] > 0           # the limiter did work in this test
    assert np.abs(out).max() <= float32_ceiling(-2.0)


def test_solo_in_place_and_gain_step_without_click():
    a = _stereo(ref.sine(1000, 0.25, SR, amp=0.6))
    b = _stereo(ref.sine(300, 0.25, SR, amp=0.35))   # a + b stays under the ceiling
    sess = session([("a", {"gain_db": -math.inf}), ("b", {})], master={"ceiling_db": 0.0})
    out, st = run(sess, [a, b], [(2000, P_SOLO, 0, 1.0), (2000, P_GAIN, 0, 0.0),
                                  (9000, P_SOLO, 0, 0.0)])
    ramp_n = int(st.cfg[C_RAMP])
    delay = int(st.cfg[C_LOOKAHEAD]) - 1
    y = out[delay:, 0]
    # before: only b; after the solo has ramped: only a, at 0 dB
    np.testing.assert_allclose(y[:2000], b[:2000, 0], atol=TOL_SAMPLE)
    np.testing.assert_allclose(y[2000 + ramp_n:8000], a[2000 + ramp_n:8000, 0], atol=TOL_SAMPLE)
    # no click: the step from -inf to 0 dB moves no faster than the ramp allows
    ga = ref.ramp(len(y), 0.0, [(2000, 1.0)], ramp_n)
    gb = ref.ramp(len(y), 1.0, [(2000, 0.0), (9000, 1.0)], ramp_n)
    expected = ga * a[:len(y), 0] + gb * b[:len(y), 0]
    assert np.abs(y - expected).max() < TOL_SAMPLE
    # |d(g a + h b)| <= |da| + |db| + (|a| + |h|) / ramp_n: no sample jumps further
    bound = (np.abs(np.diff(a[:, 0])).max() + np.abs(np.diff(b[:, 0])).max()
             + (0.6 + 0.35) / ramp_n)
    assert np.abs(np.diff(y)).max() <= bound


def test_several_rules_on_one_target_deepest_wins():
    n = SR // 2
    k1 = _stereo(ref.sine(200, 0.5, SR, amp=0.5) * (np.arange(n) < n // 2))
    k2 = _stereo(ref.sine(250, 0.5, SR, amp=0.5))
    bed = _stereo(ref.sine(1000, 0.5, SR, amp=0.2))
    rule = {"threshold_db": -30.0, "attack_ms": 2.0, "hold_ms": 10.0, "release_ms": 20.0}
    sess = session([("k1", {"gain_db": -math.inf}), ("k2", {}), ("bed", {})],
                   ducking=[{"key": ["k1"], "targets": ["bed"], "depth_db": -12.0, **rule},
                            {"key": ["k2"], "targets": ["bed"], "depth_db": -6.0, **rule}],
                   master={"ceiling_db": 0.0})
    out, st = run(sess, [k1, k2, bed], [(0, P_GAIN, 0, 0.0)])
    assert st.rule_meter[1] == pytest.approx(-6.0, abs=1e-4)
    # rule 0 had full depth while k1 played: the target then sat at -12 dB, not -18
    d1 = ref.duck_gain(k1 * ref.ramp(n, 0, [(0, 1.0)], int(st.cfg[C_RAMP]))[:, None], SR,
                       depth_db=-12.0, **{k + "": v for k, v in rule.items()})
    assert 20 * np.log10(d1[n // 4]) == pytest.approx(-12.0, abs=1e-6)


def test_duck_depth_change_is_smoothed():
    n = SR // 4
    key = _stereo(ref.sine(200, 0.25, SR, amp=0.5))
    bed = _stereo(np.full(n, 0.25))
    sess = session([("k", {"pan": -1.0}), ("bed", {"pan": 1.0})],
                   ducking=[{"key": ["k"], "targets": ["bed"], "depth_db": -6.0,
                             "attack_ms": 1.0}], master={"ceiling_db": 0.0})
    out, st = run(sess, [key, bed], [(6000, P_DUCK_DEPTH, 0, -12.0)])
    y = out[:, 1] / (0.25 * math.sqrt(2))
    ramp_n = int(st.cfg[C_RAMP])
    delay = int(st.cfg[C_LOOKAHEAD]) - 1
    assert 20 * np.log10(y[5000 + delay]) == pytest.approx(-6.0, abs=1e-4)
    assert 20 * np.log10(y[6000 + ramp_n + delay + 10]) == pytest.approx(-12.0, abs=1e-4)
    steps = np.abs(np.diff(y[6000 + delay - 5:6000 + delay + ramp_n + 5]))
    assert steps.max() < 1.5 * (0.5012 - 0.2512) / ramp_n   # a ramp, not a step


# --- single kernels ---------------------------------------------------------------

@pytest.mark.parametrize("depth", [-6.0, -12.0, -30.0])
def test_duck_envelope_matches_reference_and_times_do_not_depend_on_depth(depth):
    n = SR // 2
    key = np.zeros((n, 2), np.float32)
    key[4800:14400] = ref.sine(300, 0.2, SR, amp=0.1)[:, None]
    args = dict(threshold_db=-30.0, depth_db=depth, attack_ms=10.0, hold_ms=50.0,
                release_ms=100.0)
    expected = ref.duck_gain(key.astype(np.float64), SR, **args)
    cfg = np.zeros(N_RCFG)
    cfg[:] = [ref.db_to_lin(-30.0), 1 / 480, 1 / 4800, 2400]
    stt = np.zeros(N_RSTATE)
    ramp_jump(stt[DS_DEPTH:DS_DEPTH + 3], 480, depth)
    stt[2] = 1.0
    got = np.zeros(n, np.float32)
    kt = np.ascontiguousarray(key.T)
    for a in range(0, n, 100):   # odd segment sizes on purpose
        duck_segment(kt, a, min(n, a + 100), cfg, stt, got, 960, 480)
    assert np.abs(got - expected).max() < TOL_GAIN
    gdb = 20 * np.log10(got)
    # full depth exactly attack_ms (480 samples) after the key first passes the
    # threshold, whatever the depth
    onset = int(np.argmax(np.abs(key[:, 0]) > ref.db_to_lin(-30.0)))
    assert gdb[onset + 478] > depth + 1e-3
    assert gdb[onset + 479] == pytest.approx(depth, abs=1e-4)


def test_limiter_matches_reference_any_segmentation():
    rng = np.random.default_rng(3)
    n = 20000
    x = (rng.standard_normal((n, 2)) * 0.3).astype(np.float32)
    x[5000:5200] *= 6.0
    window = 96
    rel = 1.0 - math.exp(-1.0 / (0.1 * SR))
    c = float32_ceiling(-1.0)
    expected = ref.limiter(x.astype(np.float64), c, window, rel)
    for seg in (1, 64, 97, 4096):
        buf = np.ascontiguousarray(x.T).copy()
        delay = np.zeros((2, window - 1 + 3 * seg), np.float32)   # shifts every 3rd
        dq_val = np.zeros(window)
        dq_idx = np.zeros(window, np.int64)
        box = np.ones(window)
        fst = np.zeros(N_LIM)
        fst[L_ENV] = 1.0
        fst[L_BOXSUM] = window
        ist = np.zeros(N_LIMI, np.int64)
        for a in range(0, n, seg):
            b = min(n, a + seg)
            pk = float(np.abs(buf[:, a:b]).max())
            limit_segment(buf, a, b, pk, c, rel, window, delay, dq_val, dq_idx, box,
                          fst, ist, None, c)
        y = buf.T.astype(np.float64)
        assert np.abs(y).max() <= c
        assert np.abs(y - expected).max() < TOL_SAMPLE, seg


def test_limiter_is_bit_transparent_under_the_ceiling():
    rng = np.random.default_rng(4)
    x = (rng.uniform(-1, 1, (30000, 2)) * 0.89).astype(np.float32)   # peak < -1 dBFS
    sess = session([("a", {})], master={"ceiling_db": -1.0})
    out, st = run(sess, [x])
    assert st.clock[K_CEIL] == 0
    delay = int(st.cfg[C_LOOKAHEAD]) - 1
    np.testing.assert_array_equal(out[delay:], x[:-delay].astype(np.float64))


def test_ring_pull_underrun_plays_silence_and_keeps_time():
    ring = np.zeros((2, 16), np.float32)
    pos = np.array([0, 0, -1, 0], np.int64)
    frames = np.arange(1, 11, dtype=np.float32)[:, None].repeat(2, 1)
    ring_push(ring, pos, frames)
    dst = np.zeros((2, 8), np.float32)
    ring_pull(ring, pos, dst, 8)
    assert list(dst[0]) == list(range(1, 9)) and pos[S_UNDERRUNS] == 0
    ring_pull(ring, pos, dst, 8)                 # only 2 frames left: an underrun
    assert list(dst[0]) == [9, 10, 0, 0, 0, 0, 0, 0] and pos[S_UNDERRUNS] == 1
    late = np.arange(11, 31, dtype=np.float32)[:, None].repeat(2, 1)
    ring_push(ring, pos, late[:6])               # frames 11..16 arrive late: skipped
    ring_push(ring, pos, late[6:14])             # frames 17..24
    ring_pull(ring, pos, dst, 8)
    assert list(dst[0]) == list(range(17, 25))
    pos[S_EOF] = int(pos[1]) + 3                 # the track ends 3 frames on: no underrun
    ring_push(ring, pos, late[14:17])
    ring_pull(ring, pos, dst, 8)
    assert list(dst[0]) == [25, 26, 27, 0, 0, 0, 0, 0] and pos[S_UNDERRUNS] == 1


def test_meters_per_block():
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.5, 0.5, (256, 2)).astype(np.float32)
    sess = session([("a", {"gain_db": -6.0})], master={"ceiling_db": 0.0}, blocksize=256)
    st = allocate(sess, ring_frames=1024)
    ring_push(st.src_ring[0], st.src_pos[0], x)
    out = np.zeros((256, 2), np.float32)
    process_block(st, out, 256)
    post = x.astype(np.float64) * np.float32(db_to_lin(-6.0))
    assert st.track_meter[0, 0] == pytest.approx(np.abs(post).max(), rel=1e-6)
    assert st.track_meter[0, 1] == pytest.approx(np.sqrt(np.mean(post ** 2)), rel=1e-5)
    for c in range(2):
        assert st.master_meter[c, 0] == pytest.approx(np.abs(out[:, c]).max(), rel=1e-6)
        assert st.master_meter[c, 1] == pytest.approx(np.sqrt(np.mean(out[:, c] ** 2.0)),
                                                       rel=1e-5)


def test_zero_frames_and_oversized_calls():
    x = np.ones((1000, 2), np.float32) * 0.1
    sess = session([("a", {})], blocksize=64)
    st = allocate(sess, ring_frames=2048)
    ring_push(st.src_ring[0], st.src_pos[0], x)
    out = np.zeros((1000, 2), np.float32)
    process_block(st, out, 0)
    assert st.clock[0] == 0
    process_block(st, out, 1000)                  # more than maxblock: done in chunks
    assert st.clock[0] == 1000 and abs(out[-1, 0] - 0.1) < 1e-7


def test_invalid_commands_are_counted_not_applied():
    sess = session([("a", {})])
    x = np.zeros((256, 2), np.float32)
    out, st = run(sess, [x], [(0, P_GAIN, 5, 0.0), (0, 99, 0, 1.0), (0, P_DUCK_DEPTH, 0, -3.0)])
    assert st.clock[6] == 3   # K_CMD_INVALID
