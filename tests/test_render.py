"""Known answers through `livemix render`, and sources (resampling, looping, offsets)."""
import numpy as np
import pytest
import soundfile as sf
from reference import TOL_DUCK_DB, TOL_FREQ, TOL_LEVEL_DB, level_db, sine

SR = 48000


def render(cli, maker, session, name="out.wav", *args):
    out = maker.root / name
    p = cli("render", session, "-o", out, "--subtype", "FLOAT", "--force", *args)
    x, sr = sf.read(out, dtype="float64", always_2d=True)
    return x, sr, p


def test_minus_6_db_fader_on_full_scale_sine(cli, maker):
    maker.audio("sine.wav", sine(1000, 2.0, SR))
    s = maker.session([{"name": "tone", "file": "sine.wav", "gain_db": -6.0}],
                      master={"ceiling_db": 0.0})
    x, sr, p = render(cli, maker, s)
    assert sr == SR and len(x) == 2 * SR
    steady = x[SR // 2:-SR // 2]
    for ch in range(2):
        assert level_db(steady[:, ch]) == pytest.approx(-6.02, abs=TOL_LEVEL_DB)
    assert "rendered 2.00 s" in p.stdout and "peak -6.0" in p.stdout


def test_full_scale_plus_6_db_stays_under_ceiling(cli, maker):
    loud = np.stack([sine(997, 2.0, SR, amp=2.0), sine(50, 2.0, SR, amp=2.0)], axis=1)
    maker.audio("loud.wav", loud)   # +6 dBFS float file
    s = maker.session([{"name": "loud", "file": "loud.wav"}], master={"ceiling_db": -1.0})
    x, _, _ = render(cli, maker, s)
    ceiling = 10 ** (-1 / 20)
    assert np.abs(x).max() <= ceiling
    # and it is limiting, not muting: most of the time the output sits near the ceiling
    assert np.abs(x[SR:]).max() > ceiling * 0.99


def test_resampled_44k1_sine_keeps_its_pitch(cli, maker):
    maker.audio("sine44.wav", sine(1000, 3.0, 44100, amp=0.5), sr=44100)
    s = maker.session([{"name": "tone", "file": "sine44.wav"}])
    x, sr, _ = render(cli, maker, s)
    assert len(x) == 3 * SR   # length follows the rate change exactly
    y = x[SR // 2:-SR // 2, 0]
    # frequency from the zero-crossing count over a whole number of seconds
    crossings = np.nonzero((y[:-1] < 0) & (y[1:] >= 0))[0]
    freq = (len(crossings) - 1) / ((crossings[-1] - crossings[0]) / SR)
    assert freq == pytest.approx(1000.0, rel=TOL_FREQ)
    assert level_db(y) == pytest.approx(20 * np.log10(0.5), abs=TOL_LEVEL_DB)


def _burst_key(seconds, on, off, amp_db=-20.0):
    key = np.zeros(int(seconds * SR))
    a, b = int(on * SR), int(off * SR)
    key[a:b] = sine(300, off - on, SR, amp=10 ** (amp_db / 20))
    return key


def _envelope_db(x, hop=48):
    """Peak per hop of a steady sine, in dB (a 1 ms resolution envelope)."""
    n = len(x) // hop
    return 20 * np.log10(np.abs(x[:n * hop]).reshape(n, hop).max(axis=1) + 1e-12)


def test_ducking_depth_attack_and_recovery(cli, maker):
    attack, hold, release = 10.0, 150.0, 400.0
    maker.audio("key.wav", _burst_key(4.0, 1.0, 2.0))
    maker.audio("bed.wav", sine(1000, 4.0, SR, amp=0.25))
    s = maker.session(
        [{"name": "voice", "file": "key.wav", "pan": -1.0},
         {"name": "music", "file": "bed.wav", "pan": 1.0}],
        ducking=[{"key": ["voice"], "targets": ["music"], "threshold_db": -30.0,
                  "depth_db": -10.0, "attack_ms": attack, "hold_ms": hold,
                  "release_ms": release}])
    x, _, _ = render(cli, maker, s)
    right = x[:, 1]
    env = _envelope_db(right)            # 1 ms per value
    unity = np.median(env[200:900])
    ducked = np.median(env[1300:1900])
    assert ducked - unity == pytest.approx(-10.0, abs=TOL_DUCK_DB)
    # attack: 90 % of the reduction (in dB) within attack_ms of the key's onset.
    # the render is in session time: the limiter's lookahead is compensated
    lag = 0
    t90 = np.argmax(env[1000:] - unity <= 0.9 * (ducked - unity))
    assert t90 <= attack + lag + 1
    # recovery: within 1 dB of unity within hold + release (+10 %) of the key's end
    back = np.argmax(env[2000:] - unity >= -1.0)
    assert back <= (hold + release) * 1.1 + lag
    # and not before the hold has run out
    assert back >= hold


def test_muted_key_does_not_duck(cli, maker):
    maker.audio("key.wav", _burst_key(2.0, 0.5, 1.5))
    maker.audio("bed.wav", sine(1000, 2.0, SR, amp=0.25))
    s = maker.session(
        [{"name": "voice", "file": "key.wav", "pan": -1.0, "mute": True},
         {"name": "music", "file": "bed.wav", "pan": 1.0}],
        ducking=[{"key": ["voice"], "targets": ["music"], "depth_db": -10.0}])
    x, _, _ = render(cli, maker, s)
    env = _envelope_db(x[:, 1])
    assert env[100:1900].max() - env[100:1900].min() < 0.01
    assert np.abs(x[:, 0]).max() == 0.0


def test_mono_spreads_stereo_plays_as_is(cli, maker):
    maker.audio("mono.wav", sine(500, 1.0, SR, amp=0.5))
    st = np.stack([sine(500, 1.0, SR, amp=0.5), np.zeros(SR)], axis=1)
    maker.audio("stereo.wav", st)
    s = maker.session([{"name": "m", "file": "mono.wav"}])
    x, _, _ = render(cli, maker, s)
    np.testing.assert_array_equal(x[:, 0], x[:, 1])
    assert np.abs(x[:, 0] - sine(500, 1.0, SR, amp=0.5)).max() < 1e-7   # no delay
    s = maker.session([{"name": "s", "file": "stereo.wav"}], name="s2.toml")
    x, _, _ = render(cli, maker, s)
    assert np.abs(x[:, 1]).max() == 0.0 and np.abs(x[:, 0]).max() > 0.49


def test_loop_and_offset_are_sample_exact(cli, maker):
    rng = np.random.default_rng(1)
    clip = rng.uniform(-0.5, 0.5, 1001).astype(np.float32)   # odd length on purpose
    maker.audio("clip.wav", clip)
    maker.audio("long.wav", np.zeros(SR))
    s = maker.session([{"name": "loop", "file": "clip.wav", "loop": True, "offset_s": 0.01},
                       {"name": "len", "file": "long.wav"}],
                      master={"ceiling_db": 0.0})
    x, _, _ = render(cli, maker, s)
    start = 480                      # offset_s = 0.01 at 48 kHz (the render is session time)
    assert np.abs(x[:start, 0]).max() == 0.0
    body = x[start:, 0]
    reps = len(body) // len(clip)
    expected = np.tile(clip, reps)
    np.testing.assert_array_equal(body[:len(expected)], expected)


def test_duration_and_subtype_options(cli, maker):
    maker.audio("a.wav", sine(440, 1.0, SR, amp=0.1))
    s = maker.session([{"name": "a", "file": "a.wav", "loop": True}])
    out = maker.root / "o.wav"
    cli("render", s, "-o", out, "--duration", "2.5", "--subtype", "PCM_16")
    info = sf.info(out)
    assert info.frames == int(2.5 * SR) and info.subtype == "PCM_16"


def test_nan_samples_play_as_silence_and_are_reported_once(cli, maker):
    x = sine(440, 1.0, SR, amp=0.5)
    x[1000:1010] = np.nan
    x[20000] = np.inf
    maker.audio("bad.wav", x)
    s = maker.session([{"name": "bad", "file": "bad.wav"}])
    y, _, p = render(cli, maker, s)
    assert np.isfinite(y).all()
    assert np.abs(y[1000:1010]).max() == 0.0
    assert p.stderr.count("NaN/Inf") == 1 and "'bad'" in p.stderr


@pytest.mark.parametrize("args, needle", [
    (["-o", "/nonexistent-dir/x.wav"], "/nonexistent-dir/x.wav"),
    (["-o", "{tmp}/x.xyz"], "x.xyz"),
    (["-o", "{tmp}/x.wav", "--duration", "-3"], "--duration"),
    (["-o", "{tmp}/x.wav", "--blocksize", "0"], "--blocksize"),
    (["-o", "{tmp}/x.wav", "--subtype", "PCM_8"], "--subtype"),
])
def test_bad_render_arguments_give_one_line(cli, maker, args, needle):
    maker.audio("a.wav", sine(440, 0.1, SR))
    s = maker.session([{"name": "a", "file": "a.wav"}])
    args = [a.replace("{tmp}", str(maker.root)) for a in args]
    p = cli("render", s, *args, check=False)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert needle in lines[0] and "Traceback" not in p.stderr


def test_all_looping_tracks_need_a_duration(cli, maker):
    maker.audio("a.wav", sine(440, 0.1, SR))
    s = maker.session([{"name": "a", "file": "a.wav", "loop": True}])
    p = cli("render", s, "-o", maker.root / "x.wav", check=False)
    assert p.returncode != 0 and "--duration" in p.stderr and "Traceback" not in p.stderr


def test_long_file_streams_in_bounded_memory(maker, capsys):
    """A 5-minute 44.1 kHz file (116 MB as stereo float32 at 48 kHz) renders with a
    bounded read-ahead: numpy's traced allocations stay under 16 MB."""
    import tracemalloc

    from engine.backends.offline import render as render_session
    from engine.session import load_session

    n = 5 * 60 * 44100
    with sf.SoundFile(maker.root / "long.wav", "w", 44100, 1, "PCM_16") as f:
        block = (sine(220, 10.0, 44100, amp=0.3) * 1).astype(np.float32)
        for _ in range(n // len(block)):
            f.write(block)
    s = load_session(maker.session([{"name": "long", "file": "long.wav"}]))
    render_session(s, str(maker.root / "warm.wav"), duration_s=0.1)     # compile outside
    tracemalloc.start()
    res = render_session(s, str(maker.root / "out.wav"), progress=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.frames == 5 * 60 * SR
    assert peak < 16 * 2 ** 20, f"peak traced memory {peak / 2**20:.1f} MiB"
    err = capsys.readouterr().err
    assert "rendering" in err and "realtime" in err     # the progress bar showed
