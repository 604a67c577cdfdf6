"""The channel strip against float64 references and known answers, and as a whole.

Filters: scipy.signal.sosfilt on the RBJ cookbook's sections (tests/reference.py) and
Butterworth's own design (scipy.signal.butter); dynamics: per-sample float64 loops.
Known answers on steady signals: sines for filters, a square wave for the compressor
(constant magnitude: no detector ripple).
"""
import math

import numpy as np
import pytest
import soundfile as sf
from reference import comp_static_db, compressor, rbj_sos, sine
from scipy.signal import butter, sosfilt

from engine.backends.offline import render
from engine.errors import SessionError
from engine.session import load_session

SR = 48000


def run_strip(maker, x, strip, name="s.toml", blocksize=128, commands=(), seconds=None,
              cli=None):
    """x (n, 2) float64 through one track with ``strip`` (a dict of the track's strip keys);
    returns the render (session time) as float64 (n, 2). With ``cli`` (the fixture), through
    the `livemix render` command instead of the function."""
    maker.audio(f"{name}.wav", x, subtype="FLOAT")
    path = maker.session([{"name": "v", "file": f"{name}.wav", **strip}],
                         master={"ceiling_db": 0.0}, name=name)
    out = maker.root / f"{name}.out.wav"
    if cli is not None:
        assert not commands and seconds is None and blocksize == 128   # the session's
        cli("render", path, "-o", out, "--subtype", "FLOAT")
    else:
        render(load_session(path), str(out), subtype="FLOAT", blocksize=blocksize,
               commands=commands, duration_s=seconds)
    return sf.read(out, dtype="float64", always_2d=True)[0]


def stereo(x):
    return np.stack([x, x], axis=1)


def steady_db(y, skip):
    """Level of a steady sine (dB re amplitude 1), from its RMS after ``skip`` samples."""
    seg = y[skip:, 0]
    return 20 * np.log10(np.sqrt(2 * np.mean(seg ** 2)))


# --- filters -----------------------------------------------------------------------------

@pytest.mark.parametrize("f,expected", [(100.0, -3.01), (50.0, -12.30), (1000.0, 0.0)])
def test_hpf_12_db_per_octave_known_answers(maker, cli, f, expected):
    """|H|^2 = (f/fc)^4 / (1 + (f/fc)^4) at fc = 100 Hz: -3.01 dB there, -12.30 at 50 Hz
    (+/-0.05 dB, steady sines), through `livemix render`."""
    y = run_strip(maker, stereo(sine(f, 2.0, SR, amp=0.5)), {"hpf": {"freq_hz": 100.0}},
                  cli=cli)
    assert steady_db(y, SR) - 20 * np.log10(0.5) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("slope,order", [(12, 2), (18, 3), (24, 4)])
def test_hpf_equals_butterworth(maker, slope, order):
    rng = np.random.default_rng(slope)
    x = rng.uniform(-0.5, 0.5, (SR, 2))
    y = run_strip(maker, x, {"hpf": {"freq_hz": 120.0, "slope": slope}})
    ref = sosfilt(butter(order, 120.0, "highpass", fs=SR, output="sos"), x, axis=0)
    assert np.abs(y - ref).max() < 2e-6          # float32 samples between float64 sections


def test_eq_bands_equal_the_cookbook(maker):
    bands = [{"type": "low-shelf", "freq_hz": 120.0, "gain_db": -4.0, "q": 0.7},
             {"type": "peak", "freq_hz": 1000.0, "gain_db": 6.0, "q": 1.0},
             {"type": "high-shelf", "freq_hz": 8000.0, "gain_db": 3.0, "q": 0.7},
             {"type": "high-cut", "freq_hz": 15000.0, "q": 0.9}]
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.3, 0.3, (SR, 2))
    y = run_strip(maker, x, {"eq": bands})
    sos = np.stack([rbj_sos(b["type"], b["freq_hz"], b.get("gain_db", 0.0), b["q"], SR)
                    for b in bands])
    assert np.abs(y - sosfilt(sos, x, axis=0)).max() < 2e-6


def test_peak_band_known_answer_and_unity_bands_pass_unchanged(maker, cli):
    y = run_strip(maker, stereo(sine(1000, 2.0, SR, amp=0.25)),
                  {"eq": [{"type": "peak", "freq_hz": 1000.0, "gain_db": 6.0, "q": 1.0}]},
                  cli=cli)
    assert steady_db(y, SR) - 20 * np.log10(0.25) == pytest.approx(6.0, abs=0.05)
    rng = np.random.default_rng(4)
    x = rng.uniform(-0.5, 0.5, (SR // 2, 2))
    flat = [{"type": t, "freq_hz": f, "gain_db": 0.0, "q": 1.0}
            for t, f in (("peak", 300.0), ("low-shelf", 100.0), ("high-shelf", 6000.0),
                         ("peak", 3000.0))]
    assert np.abs(run_strip(maker, x, {"eq": flat}, name="flat.toml") - x).max() < 1e-6


# --- compressor ---------------------------------------------------------------------------

def square(level_db, seconds, freq=100.0):
    t = np.arange(int(seconds * SR)) / SR
    return stereo(10 ** (level_db / 20) * np.sign(np.sin(2 * np.pi * freq * t) + 1e-12))


def test_compressor_static_known_answers(maker, cli):
    """A -10 dBFS square through -20 dB, 4:1, hard knee: -17.5 dBFS (+/-0.1), through
    `livemix render`; with a 6 dB knee a square at the threshold is reduced by 0.5625 dB
    (+/-0.05)."""
    y = run_strip(maker, square(-10.0, 1.0), {"comp": {"threshold_db": -20.0, "ratio": 4.0,
                                                     "knee_db": 0.0}}, cli=cli)
    assert 20 * np.log10(np.abs(y[SR // 2:, 0]).max()) == pytest.approx(-17.5, abs=0.1)
    y = run_strip(maker, square(-20.0, 1.0), {"comp": {"threshold_db": -20.0, "ratio": 4.0,
                                                     "knee_db": 6.0}}, name="knee.toml")
    assert 20 * np.log10(np.abs(y[SR // 2:, 0]).max()) == pytest.approx(-20.5625, abs=0.05)
    assert comp_static_db(-20.0, -20.0, 4.0, 6.0) == pytest.approx(0.5625)


def test_compressor_attack_reaches_63_percent_in_its_time_constant(maker):
    x = np.concatenate([square(-40.0, 0.5), square(-10.0, 0.5)])
    att = 10.0
    y = run_strip(maker, x, {"comp": {"threshold_db": -20.0, "ratio": 4.0, "knee_db": 0.0,
                                      "attack_ms": att, "release_ms": 100.0}})
    gr = 20 * np.log10(np.abs(y[:, 0]) / np.abs(x[:, 0]))      # <= 0, dB
    step = SR // 2
    final = gr[step + SR // 4]
    k = int(round(att * 1e-3 * SR))
    assert gr[step + k] / final == pytest.approx(1 - math.exp(-1), abs=0.02)


def test_compressor_on_a_sine_equals_the_float64_reference(maker):
    """On a sine the reduction relaxes between the peaks (the smooth branching detector
    works on the reduction in dB, which falls to 0 as the sine crosses zero, at the
    release's pace), so it settles under the square's 7.5 dB: -16.72 dBFS out for a
    -10 dBFS 1 kHz sine through -20 dB, 4:1, 5 ms attack, 80 ms release (the reference
    loop gives the same; a detector holding the level instead would give about -17)."""
    x = stereo(sine(1000, 1.0, SR, amp=10 ** (-10 / 20)))
    c = {"threshold_db": -20.0, "ratio": 4.0, "knee_db": 0.0, "attack_ms": 5.0,
         "release_ms": 80.0}
    y = run_strip(maker, x, {"comp": c})
    ref = compressor(x, SR, -20.0, 4.0, 0.0, 5.0, 80.0)
    assert np.abs(y - ref).max() < 1e-5
    assert 20 * np.log10(np.abs(y[SR // 2:, 0]).max()) == pytest.approx(-16.72, abs=0.02)


def test_sidechain_compressor_keyed_by_another_track(maker):
    """A bed compressed by the voice (key = "voice"): the key is the voice as it comes
    from its source; the bed alone is untouched."""
    n = SR
    voice = np.zeros(n)
    voice[n // 2:] = 10 ** (-6 / 20)                 # the voice comes in halfway
    bed = sine(440, 1.0, SR, amp=0.1)
    maker.audio("v.wav", stereo(voice), subtype="FLOAT")
    maker.audio("b.wav", stereo(bed), subtype="FLOAT")
    s = load_session(maker.session(
        [{"name": "voice", "file": "v.wav", "mute": True},
         {"name": "bed", "file": "b.wav", "comp": {"threshold_db": -20.0, "ratio": 4.0,
                                                   "knee_db": 0.0, "key": "voice"}}],
        master={"ceiling_db": 0.0}))
    render(s, str(maker.root / "o.wav"), subtype="FLOAT")
    y = sf.read(maker.root / "o.wav", dtype="float64")[0]
    ref = compressor(stereo(bed), SR, -20.0, 4.0, 0.0, 5.0, 80.0, key=stereo(voice))
    assert np.abs(y[:n] - ref).max() < 1e-5
    assert np.abs(y[: n // 2] - stereo(bed)[: n // 2]).max() < 1e-6   # before: untouched


# --- gate ---------------------------------------------------------------------------------

def test_gate_known_answers(maker):
    """Starts closed; a tone 15 dB under the threshold (and under the close threshold)
    is attenuated by exactly range_db; a tone over it opens the gate fully."""
    g = {"threshold_db": -30.0, "hysteresis_db": 6.0, "range_db": 40.0, "attack_ms": 1.0,
         "hold_ms": 50.0, "release_ms": 100.0}
    y = run_strip(maker, stereo(sine(500, 1.0, SR, amp=10 ** (-45 / 20))), {"gate": g})
    assert steady_db(y, SR // 10) == pytest.approx(-45.0 - 40.0, abs=0.05)
    y = run_strip(maker, stereo(sine(500, 1.0, SR, amp=10 ** (-20 / 20))), {"gate": g},
                  name="open.toml")
    assert steady_db(y, SR // 10) == pytest.approx(-20.0, abs=0.05)


def test_gate_hysteresis_changes_state_at_most_once(maker):
    """A tone swelling between the close (-36) and open (-30) thresholds: once open the
    gate stays open (it closes only under -36 for the hold time). The detector's level
    dips up to 0.9 dB between a 500 Hz tone's peaks once its 12 ms hold has run out
    (10 ms decay), so the swell stays 1.1 dB clear of the close threshold."""
    t = np.arange(2 * SR) / SR
    amp = 10 ** ((-32.2 + 2.7 * np.sin(2 * np.pi * 2 * t)) / 20)  # -34.9 .. -29.5 dB
    x = stereo(amp * np.sin(2 * np.pi * 500 * t))
    g = {"threshold_db": -30.0, "hysteresis_db": 6.0, "range_db": 40.0, "attack_ms": 1.0,
         "hold_ms": 0.0, "release_ms": 5.0}
    y = run_strip(maker, x, {"gate": g})
    gain = np.abs(y[:, 0]) / np.maximum(np.abs(x[:, 0]), 1e-12)
    opened = gain > 0.5
    mask = np.abs(x[:, 0]) > 1e-4
    changes = np.count_nonzero(np.diff(opened[mask].astype(int)))
    assert changes <= 1


def test_expander_ratio_2_ten_db_under_gives_ten_more(maker):
    g = {"threshold_db": -30.0, "hysteresis_db": 0.0, "range_db": 60.0, "ratio": 2.0,
         "attack_ms": 1.0, "hold_ms": 0.0, "release_ms": 5.0}
    y = run_strip(maker, stereo(sine(500, 1.0, SR, amp=10 ** (-40 / 20))), {"gate": g})
    assert steady_db(y, SR // 10) == pytest.approx(-40.0 - 10.0, abs=0.05)


# --- the whole strip ----------------------------------------------------------------------

FULL = {"hpf": {"freq_hz": 90.0, "slope": 18},
        "gate": {"threshold_db": -50.0, "range_db": 30.0, "hold_ms": 20.0},
        "eq": [{"type": "peak", "freq_hz": 2500.0, "gain_db": 4.0, "q": 1.2},
               {"type": "high-shelf", "freq_hz": 9000.0, "gain_db": -3.0, "q": 0.7}],
        "comp": {"threshold_db": -24.0, "ratio": 3.0, "knee_db": 6.0, "detector": "rms"}}


def test_any_block_size_gives_the_same_output_with_moves_at_odd_frames(maker):
    from engine.params import PARAM_IDS
    rng = np.random.default_rng(9)
    t = np.arange(2 * SR) / SR
    x = stereo(0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)) \
        + rng.normal(0, 0.01, (2 * SR, 2))
    moves = [(4097, PARAM_IDS["eq1_gain"], 0, -6.0), (20011, PARAM_IDS["comp_threshold"], 0,
                                                      -30.0),
             (33333, PARAM_IDS["hpf_freq"], 0, 200.0), (40001, PARAM_IDS["gate"], 0, 0.0),
             (61001, PARAM_IDS["eq"], 0, 0.0), (70003, PARAM_IDS["comp_makeup"], 0, 4.0)]
    outs = [run_strip(maker, x, FULL, name=f"b{bs}.toml", blocksize=bs, commands=moves)
            for bs in (1, 64, 65, 128, 1024)]
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def test_parameter_moves_do_not_click(maker):
    """An EQ band swung by 12 dB and the compressor switched out mid-tone (+13 dB): the
    level moves smoothly (coefficients glide, the switch crossfades over 10 ms), so
    nothing reaches above 8 kHz, where a 1 kHz tone has nothing and a click has plenty:
    the same jump done in one sample puts 0.03 there."""
    from engine.params import PARAM_IDS
    x = stereo(sine(1000, 1.0, SR, amp=0.3))
    strip = {"eq": [{"type": "peak", "freq_hz": 1000.0, "gain_db": -6.0, "q": 1.0}],
             "comp": {"threshold_db": -30.0, "ratio": 4.0}}
    y = run_strip(maker, x, strip, commands=[(12000, PARAM_IDS["eq1_gain"], 0, 6.0),
                                             (30000, PARAM_IDS["comp"], 0, 0.0)])
    hp = butter(8, 8000.0, "highpass", fs=SR, output="sos")
    assert np.abs(sosfilt(hp, y[:, 0])[4000:]).max() < 1e-3        # (after the tone's onset)
    jump = x[:, 0] * np.where(np.arange(len(x)) < 30011, 0.1, 0.45)     # the same, abruptly
    assert np.abs(sosfilt(hp, jump)[4000:]).max() > 0.02


@pytest.mark.parametrize("strip,problem", [
    ({"hpf": {"freq_hz": 10.0}}, "tracks[1].hpf.freq_hz: 10.0 is below the minimum 20.0"),
    ({"hpf": {"slope": 6}}, "tracks[1].hpf.slope: 6: use one of 12, 18, 24"),
    ({"gate": {"ratio": 1.2}}, "tracks[1].gate.ratio: 1.2: 0 for a gate"),
    ({"eq": [{"type": "bell"}]}, "tracks[1].eq[1].type: 'bell': use one of peak"),
    ({"eq": [{"freq_hz": 23000.0}]}, "above the maximum 20000"),
    ({"eq": [{}] * 5}, "tracks[1].eq: 5 bands: at most 4"),
    ({"comp": {"ratio": 0.5}}, "tracks[1].comp.ratio: 0.5 is below the minimum 1.0"),
    ({"comp": {"key": "nobody"}}, "tracks[1].comp.key: 'nobody'"),
    ({"comp": {"attack": 5}}, "tracks[1].comp.attack: unknown key"),
    ({"denoise": "yes"}, "tracks[1].denoise: 'yes' is not true or false"),
])
def test_strip_errors_name_file_line_and_key(maker, strip, problem):
    maker.audio("a.wav", np.zeros(100))
    p = maker.session([{"name": "a", "file": "a.wav", **strip}])
    with pytest.raises(SessionError) as e:
        load_session(p)
    assert problem in str(e.value) and str(p) in str(e.value)


# --- denoise ------------------------------------------------------------------------------

def test_denoise_in_the_strip_quiets_noise_and_stays_in_session_time(maker):
    """Noise at -40 dBFS comes out at least 20 dB quieter; the track is LATENCY samples
    late in the mix (switched in or out: the dry path is delayed as much), which the
    render takes out like the limiter's lookahead: switched out, the file is the input
    exactly; and any block size gives the same output, switch moves included."""
    from engine.params import PARAM_IDS
    rng = np.random.default_rng(11)
    x = rng.normal(0, 10 ** (-40 / 20), (3 * SR, 2))
    y = run_strip(maker, x, {"denoise": True})
    rms = lambda v: 20 * np.log10(np.sqrt(np.mean(v ** 2)))      # noqa: E731
    assert rms(y[SR:]) <= rms(x[SR:]) - 20.0
    # switched out: the dry signal, in session time
    off = [(0, PARAM_IDS["denoise"], 0, 0.0)]
    y = run_strip(maker, x, {"denoise": True}, name="off.toml", commands=off)
    np.testing.assert_allclose(y, x, atol=1e-7)
    moves = [(30011, PARAM_IDS["denoise"], 0, 0.0), (70001, PARAM_IDS["denoise"], 0, 1.0)]
    outs = [run_strip(maker, x, {"denoise": True}, name=f"dn{bs}.toml", blocksize=bs,
                      commands=moves) for bs in (64, 65, 1024)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_denoise_needs_48_khz(maker):
    maker.audio("a.wav", np.zeros(100), sr=44100)
    p = maker.session([{"name": "a", "file": "a.wav", "denoise": True}],
                      engine={"samplerate": 44100})
    with pytest.raises(SessionError, match="tracks\\[1\\].denoise: the RNNoise denoiser works "
                                           "at 48 kHz only"):
        load_session(p)


def test_denoisers_fill_their_frames_in_different_blocks_and_stay_in_session_time(maker):
    """Three denoised tracks start their 480-sample frames at staggered places (their
    RNNoise calls land in different blocks); a fourth, plain track waits for them (delay
    compensation), and the render takes the delay out: an impulse on each track comes out
    (its peak, for the denoised ones) at the frame it went in."""
    from engine.dsp.denoise import FRAME, P_FILL
    from engine.rt.state import allocate, master_latency, pdc_latency
    n = 2 * SR
    at = [9000, 21011, 33333, 40001]
    tracks = []
    for k, f in enumerate(at):
        x = np.zeros(n)
        x[f] = 0.5
        maker.audio(f"i{k}.wav", x)
        tracks.append({"name": f"t{k}", "file": f"i{k}.wav", "denoise": k < 3})
    s = load_session(maker.session(tracks, master={"ceiling_db": 0.0}))
    assert pdc_latency(s) == 1440 and master_latency(s) == 1440 + 95
    fills = allocate(s, maxblock=128, ring_frames=512).dn_pos[:, P_FILL]
    assert list(fills) == [0, FRAME // 3, 2 * FRAME // 3]
    render(s, str(maker.root / "o.wav"), subtype="FLOAT")
    y = sf.read(maker.root / "o.wav", dtype="float64")[0][:, 0]
    assert len(y) == n
    for f in at:
        seg = np.abs(y[f - 1000:f + 4000])
        assert int(np.argmax(seg)) == 1000, f
    assert y[at[3]] == pytest.approx(0.5, abs=1e-7)          # the plain track, exactly
