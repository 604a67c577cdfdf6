"""The denoise stage (RNNoise through engine.dsp.denoise): known answers with the real
library, no mocks.

The speech-like signal is synthetic: a glottal flow-derivative pulse train (f0 wandering
over 125-185 Hz, with jitter and breath noise) through a cascade of five formant
resonators (Klatt-style, unity gain at DC), cycling through five vowels in 250 ms
syllables. RNNoise takes it for speech (probability ~1 on voiced frames), so no
text-to-speech engine is needed.
"""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from scipy.signal import lfilter

from conftest import ROOT
from engine.dsp import denoise as dn

SR = dn.SAMPLERATE


def rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def fresh(mono=False):
    states = dn.create_states(1 if mono else 2)
    if mono:
        states = np.array([states[0], dn.MONO], np.int64)
    shapes = dn.state_shapes()
    fifo = np.zeros(*shapes["fifo"])
    pos = np.zeros(*shapes["pos"])
    return states, fifo, pos


def process(x, sizes=None, mono=False, probs=False):
    """x (2, n) through a fresh stage; in calls of ``sizes`` (cycled) through a block
    buffer as the engine does, or one call over the whole array. Returns the output
    (and the left channel's speech probability after each frame)."""
    states, fifo, pos = fresh(mono)
    try:
        y = np.array(x, np.float32, order="C")
        if sizes is None and not probs:
            dn.denoise_segment(states, fifo, pos, y, 0, y.shape[1])
            return y, pos
        if sizes is None:
            sizes = [dn.FRAME]
        buf = np.zeros((2, max(max(sizes), 1) + 7), np.float32)
        p = []
        i, k = 0, 0
        while i < y.shape[1]:
            n = min(sizes[k % len(sizes)], y.shape[1] - i)
            k += 1
            off = k % 7                    # where in the block buffer the segment sits
            buf[:, off:off + n] = y[:, i:i + n]
            frames = pos[dn.P_FRAMES]
            dn.denoise_segment(states, fifo, pos, buf, off, off + n)
            y[:, i:i + n] = buf[:, off:off + n]
            if probs and pos[dn.P_FRAMES] != frames:
                p.append(pos[dn.P_PROB])
            i += n
        return (y, pos, np.array(p)) if probs else (y, pos)
    finally:
        dn.destroy_states(states)


def reson(x, f, bw):
    """A two-pole resonator, unity gain at DC (as in a cascade formant synthesiser)."""
    r = np.exp(-np.pi * bw / SR)
    b = 2 * r * np.cos(2 * np.pi * f / SR)
    c = -r * r
    return lfilter([1 - b - c], [1, -b, -c], x)


VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
          (570, 840, 2410)]


def voice(seconds, seed=1, syllable=0.25):
    """Synthetic voiced speech, unit RMS, and its syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 150 + 25 * np.sin(2 * np.pi * 0.5 * t) + 10 * np.sin(2 * np.pi * 1.7 * t)
    f0 *= 1 + 0.1 * lfilter([0.01], [1, -0.99], rng.standard_normal(n))      # jitter
    frac = np.cumsum(f0 / SR) % 1.0
    oq = 0.6                                                             # open quotient
    flow = np.where(frac < oq, 0.5 * (1 - np.cos(np.pi * frac / oq)),
                    np.maximum(np.cos(np.pi * (frac - oq) / (2 * (1 - oq))), 0.0))
    src = np.diff(flow, prepend=0.0)          # flow derivative: lip radiation included
    src /= np.std(src)
    src += 0.03 * rng.standard_normal(n) * flow                          # breath
    out = np.zeros(n)
    env = np.zeros(n)
    m = int(syllable * SR)
    for s, a in enumerate(range(0, n, m)):
        b = min(n, a + m)
        y = src[a:b]
        for f, bw in zip(VOWELS[s % len(VOWELS)] + (3300, 3750), (90, 110, 170, 250, 300)):
            y = reson(y, f, bw)
        env[a:b] = np.sin(np.pi * np.arange(b - a) / m) ** 0.5
        out[a:b] = y * env[a:b]
    return out / np.sqrt(np.mean(out ** 2)), env


# --- the library -------------------------------------------------------------------------------

def test_library_loads_from_the_pyrnnoise_wheel():
    assert dn.library_problem() is None
    assert dn.LIBRARY_PATH.endswith("librnnoise.so")
    assert "pyrnnoise" in dn.LIBRARY_PATH
    assert dn._lib.rnnoise_get_frame_size() == dn.FRAME == 480
    assert dn.LATENCY == dn.FIFO_DELAY + dn.MODEL_DELAY == 1440
    states = dn.create_states(3)
    assert states.dtype == np.int64 and np.all(states > 0) and len(set(states)) == 3
    dn.destroy_states(states)
    assert np.all(states == 0)
    dn.destroy_states(states)               # twice is harmless


def test_loader_gives_a_one_line_reason():
    lib, why = dn.load_library("/nonexistent/dir/librnnoise.so")
    assert lib is None
    assert why.startswith("cannot load /nonexistent/dir/librnnoise.so")
    assert "\n" not in why
    import ctypes.util
    libc = ctypes.util.find_library("c")
    lib, why = dn.load_library(libc)
    assert lib is None and "is not RNNoise" in why and "rnnoise_process_frame" in why


MISSING = textwrap.dedent("""
    import numpy as np
    from numba import njit
    from engine.dsp import denoise as dn
    print("problem:", dn.library_problem())
    try:
        dn.create_states(2)
    except RuntimeError as e:
        print("create:", e)

    @njit(nogil=True)
    def caller(states, fifo, pos, x):      # a block function holding the stage still links
        dn.denoise_segment(states, fifo, pos, x, 0, x.shape[1])

    x = np.zeros((2, 3 * 480), np.float32)
    x[:, 10] = 0.25
    pos = np.zeros(4)
    caller(np.array([7, 7], np.int64), np.zeros((2, 4, 480), np.float32), pos, x)
    print("peak:", int(np.argmax(x[0])), float(x[0].max()), "prob:", pos[2])
""")


def test_a_missing_library_is_reported_and_the_kernel_still_links(tmp_path):
    """Importing never raises; the stub keeps code that holds the stage compilable (an
    unresolved external would crash the process), and passes audio through."""
    env = {"PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path),
           dn.ENV_LIB: "/nonexistent/librnnoise.so"}
    p = subprocess.run([sys.executable, "-c", MISSING], cwd=ROOT, capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "problem: cannot load /nonexistent/librnnoise.so" in p.stdout
    assert "create: denoise: cannot load" in p.stdout
    assert f"peak: {10 + dn.FIFO_DELAY} 0.25 prob: -1.0" in p.stdout, p.stdout


# --- known answers -----------------------------------------------------------------------------

def test_an_impulse_comes_out_latency_late():
    x = np.zeros((2, 12 * dn.FRAME), np.float32)
    t = {0: 4 * dn.FRAME, 1: 3 * dn.FRAME + 300}        # at a frame's start, and inside one
    for c in (0, 1):
        x[c, t[c]] = 0.1
    y, _ = process(x)
    for c in (0, 1):
        out = y[c].astype(np.float64)
        at = t[c] + dn.LATENCY
        assert np.argmax(np.abs(out)) == at
        # RNNoise's spectral gains spread the click over its window, never further back
        # than MODEL_DELAY after the start of the frame that held it
        first = t[c] - t[c] % dn.FRAME + dn.MODEL_DELAY
        assert np.all(out[:first] == 0.0)
        energy = out ** 2
        # a clear peak: most of what comes out is within 8 samples of it (79% and 99%
        # here), and no sample further away reaches a quarter of it (1/5 and 1/30 here)
        assert energy[at - 8:at + 9].sum() > 0.6 * energy.sum()
        assert abs(out[at]) > 4 * np.abs(np.delete(out, np.arange(at - 8, at + 9))).max()


def test_white_noise_is_suppressed_by_more_than_20_db():
    rng = np.random.default_rng(1234)
    n = 4 * SR
    x = (rng.standard_normal((2, n)) * 10 ** (-40 / 20)).astype(np.float32)
    y, _ = process(x)
    for c in (0, 1):
        assert rms_db(x[c, SR:]) == pytest.approx(-40, abs=0.1)
        assert rms_db(y[c, SR:]) < rms_db(x[c, SR:]) - 20


def test_speech_keeps_its_level_and_is_recognised():
    v, env = voice(6.0)
    v *= 0.1                                     # -20 dBFS RMS
    x = np.stack([v, v]).astype(np.float32)
    y, _, prob = process(x, probs=True)
    L = dn.LATENCY
    for c in (0, 1):
        assert abs(rms_db(y[c, SR + L:]) - rms_db(x[c, SR:-L])) < 3.0
    # aligned as promised: the cross-correlation peaks at LATENCY
    seg = x[0, 2 * SR:3 * SR]
    xc = np.correlate(y[0, 2 * SR:3 * SR + 2 * L], seg, "valid")
    assert abs(int(np.argmax(xc)) - L) <= 2
    # RNNoise takes it for speech: frames whose input (MODEL_DELAY earlier) was voiced.
    # prob[k] is the frame ending at input sample (k + 1) * FRAME
    voiced = np.array([env[k * dn.FRAME:(k + 1) * dn.FRAME].min() > 0.5
                       for k in range(len(prob))])
    voiced[:SR // dn.FRAME] = False               # after the first second
    assert voiced.sum() > 300
    assert np.median(prob[voiced]) > 0.9
    assert np.mean(prob[voiced] > 0.5) > 0.9


BLOCKS = [1, 64, 65, 128, 480, 1000]


def test_output_does_not_depend_on_the_block_size():
    rng = np.random.default_rng(5)
    v, _ = voice(1.5, seed=3)
    x = np.stack([0.1 * v, -0.05 * v[::-1]]) + 0.003 * rng.standard_normal((2, len(v)))
    x = x.astype(np.float32)
    ref, ref_pos = process(x)
    assert np.any(ref != 0)
    for size in BLOCKS:
        y, pos = process(x, [size])
        assert np.array_equal(y, ref), size
        assert np.array_equal(pos, ref_pos), size
    # a live callback's irregular sizes, empty calls included
    y, pos = process(x, list(rng.integers(0, 1500, 200)))
    assert np.array_equal(y, ref) and np.array_equal(pos, ref_pos)
    assert ref_pos[dn.P_FILL] == len(v) % dn.FRAME
    assert ref_pos[dn.P_FRAMES] == len(v) // dn.FRAME
    assert 0.0 <= ref_pos[dn.P_PROB] <= 1.0 and 0.0 <= ref_pos[dn.P_PROB + 1] <= 1.0


def test_mono_mode_runs_the_left_channel_for_both():
    v, _ = voice(1.0, seed=2)
    x = np.stack([0.1 * v, 0.1 * v]).astype(np.float32)
    stereo, _ = process(x)
    mono, pos = process(x, [128], mono=True)
    assert np.array_equal(mono[0], stereo[0]) and np.array_equal(mono[1], stereo[0])
    assert pos[dn.P_PROB] == pos[dn.P_PROB + 1]


# --- real-time safety --------------------------------------------------------------------------

IR_PROBE = textwrap.dedent("""
    import numpy as np
    from engine.dsp import denoise as dn
    st = dn.create_states(2)
    x = np.zeros((2, 1000), np.float32)
    dn.denoise_segment(st, np.zeros((2, 4, 480), np.float32), np.zeros(4), x, 0, 1000)
    ir = dn.denoise_segment.inspect_llvm(dn.denoise_segment.signatures[0])
    nrt = {w.split("(")[0] for w in ir.split("@")[1:] if w.startswith("NRT_")}
    print("NRT calls:", sorted(nrt))
    print("malloc:", "malloc" in ir)
    def name(d):
        return d.split("@", 1)[1].split("(", 1)[0]
    bodies = [d for d in ir.split("\\ndefine ")[1:]
              if not name(d).startswith(("cfunc.", "_ZN7cpython"))]
    print("gil:", any("gil_ensure" in d or "PyGILState" in d for d in bodies))
    print("calls rnnoise:", any("@rnnoise_process_frame(" in d for d in bodies))
""")


def test_kernel_takes_no_gil_and_allocates_nothing(tmp_path):
    for k in (dn.denoise_segment, dn._run_frame):
        assert k.targetoptions["_nrt"] is False          # rt_kernel: allocation cannot compile
        assert k.targetoptions["error_model"] == "numpy"
    # a fresh cache, so numba compiles and the IR can be read
    p = subprocess.run([sys.executable, "-c", IR_PROBE], cwd=ROOT, capture_output=True,
                       text=True, env={"NUMBA_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "NRT calls: []" in p.stdout, p.stdout
    assert "malloc: False" in p.stdout
    assert "gil: False" in p.stdout
    assert "calls rnnoise: True" in p.stdout    # the IR holds the callee and its C call


def test_tracks_run_concurrently_on_threads_without_the_gil():
    """Called from nogil code on two threads at once (each with its own states), the
    output equals a serial run: no GIL needed, no state shared inside RNNoise."""
    from numba import njit

    from engine.rt.fpu import denormals_off, fpu_restore

    @njit(nogil=True)
    def run(states, fifo, pos, x, block, ftz):
        old = denormals_off()
        if not ftz:
            fpu_restore(old)
        for a in range(0, x.shape[1], block):
            dn.denoise_segment(states, fifo, pos, x, a, min(a + block, x.shape[1]))
        fpu_restore(old)

    v, _ = voice(1.0, seed=4)
    rng = np.random.default_rng(9)
    inputs = [(np.stack([0.1 * v, 0.1 * v]) + 0.01 * rng.standard_normal((2, len(v))))
              .astype(np.float32) for _ in range(2)]
    for ftz in (False, True):    # the engine runs with FTZ/DAZ on: invariant there too
        serial = []
        for x in inputs:
            st, fifo, pos = fresh()
            y = x.copy()
            run(st, fifo, pos, y, 480, ftz)
            serial.append(y)
            dn.destroy_states(st)
        jobs = [(fresh(), x.copy(), b) for x, b in zip(inputs, (64, 1000))]
        threads = [threading.Thread(target=run, args=(*s, y, b, ftz)) for s, y, b in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (s, y, _), ref in zip(jobs, serial):
            assert np.array_equal(y, ref)
            dn.destroy_states(s[0])


def test_the_load_note_says_when_denoisers_overload_a_block():
    """RNNoise on the audio thread: a stereo track's frame (2 calls) lands in one block.
    At 0.6 ms a channel, one denoised track fills 90 % of a 64-frame block (1.33 ms): the
    note says so and names the smallest block that leaves half of it free (128: 1.2 ms in
    2.67 ms); at that block, or with a fast library, nothing is said."""
    from engine.dsp.denoise import frame_cost_s, load_note
    note = load_note(1, 64, 48000, 0.6e-3)
    assert note is not None and "90 % of a 64-frame block" in note and "--blocksize 128" in note
    assert load_note(1, 128, 48000, 0.6e-3) is None
    # four at 64 frames: a frame spans 7 blocks, so the four can complete in four
    # different blocks (staggered), each still a whole track's frame: 90 %; the bound is
    # conservative past that (ceil(tracks / blocks a frame spans) in one block), so 128
    # counts two together (90 %), 256 four (90 %), 512 four (45 %)
    assert "--blocksize 512" in load_note(4, 64, 48000, 0.6e-3)
    assert load_note(4, 64, 48000, 0.05e-3) is None
    # four tracks at 1024 frames: each frame spans no block boundary's worth (480 < 1024),
    # so all four complete in one block: 4 x 2 x 0.6 = 4.8 ms of 21.3
    assert load_note(4, 1024, 48000, 0.6e-3) is None
    assert load_note(0, 16, 48000, 1.0) is None
    cost = frame_cost_s()
    assert 0.0 < cost < 0.05               # measured on this machine: a real call
