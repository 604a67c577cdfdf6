"""The block function is real-time safe by construction: compiled without numba's
runtime, so it cannot allocate, and no reference counting runs per block."""
import subprocess
import sys
import textwrap

from conftest import ROOT

PROBE = textwrap.dedent("""
    import numpy as np
    from pathlib import Path
    from engine.session import parse_session
    from engine.rt.state import allocate
    from engine.rt.block import process_block
    s = parse_session({"tracks": [{"name": "a", "file": "a.wav"}, {"name": "b", "file": "b.wav"}],
                       "ducking": [{"key": ["a"], "targets": ["b"]}]},
                      Path("/x.toml"), check_files=False)
    st = allocate(s)
    out = np.zeros((128, 2), np.float32)
    process_block(st, out, 128)
    ir = process_block.inspect_llvm(process_block.signatures[0])
    calls = sorted({w.split("(")[0] for w in ir.split("@")[1:] if w.startswith("NRT_")})
    print("NRT calls:", calls)
    print("malloc:", "malloc" in ir)
    # numba also emits wrappers of each function, for Python ("cpython.") and for C
    # callers ("cfunc."), that take the GIL to report an exception; the engine never
    # calls them (the @cfunc calls the native entry): look at every other body
    def name(d):
        return d.split("@", 1)[1].split("(", 1)[0]
    bodies = [d for d in ir.split("\\ndefine ")[1:]
              if not name(d).startswith(("cfunc.", "_ZN7cpython"))]
    print("gil:", any("gil_ensure" in d or "PyGILState" in d for d in bodies))
    print("functions:", ir.count("define "))
""")


def test_block_function_has_no_runtime_calls(tmp_path):
    # a fresh cache dir, so numba compiles and its IR can be inspected
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                       env={"NUMBA_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "NRT calls: []" in p.stdout, p.stdout
    assert "malloc: False" in p.stdout
    assert "gil: False" in p.stdout          # no exception path that takes the GIL
    nfuncs = int(p.stdout.split("functions:")[1])
    assert nfuncs >= 5, p.stdout     # the IR really holds the block function and its callees


def test_rt_kernels_refuse_allocation():
    import numpy as np
    import pytest
    from numba.core.errors import TypingError

    from engine.dsp.jit import rt_kernel

    @rt_kernel(cache=False)
    def allocates(n):
        return np.zeros(n).sum()

    with pytest.raises(TypingError):
        allocates(4)


def test_every_audio_kernel_uses_numpy_error_model():
    """A division by zero in a kernel gives inf/NaN (scrubbed before the output) rather
    than raising, which would take the GIL inside the callback."""
    import importlib
    import pkgutil

    import engine.dsp
    import engine.rt
    from numba.core.registry import CPUDispatcher
    found = 0
    for pkg in (engine.dsp, engine.rt):
        for info in pkgutil.iter_modules(pkg.__path__):
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            for name, obj in vars(mod).items():
                if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__ \
                        and obj.targetoptions.get("_nrt") is False:
                    found += 1
                    assert obj.targetoptions.get("error_model") == "numpy", \
                        f"{mod.__name__}.{name}"
    assert found >= 30


def test_denormals_are_flushed_on_the_audio_path(tmp_path):
    """A tone, then digital silence, through the offline driver (the live one sets the
    same bits): every float64 filter state ends normal or zero, never denormal, and
    the calling thread's own floating-point state is left as it was."""
    import numpy as np
    from numba import njit
    from reference import sine

    from engine.dsp.layout import S_WRITE
    from engine.rt.block import run_blocks
    from engine.rt.fpu import fpu_state
    from engine.rt.state import allocate, master_meter
    from engine.session import parse_session

    @njit
    def mxcsr():
        return fpu_state()

    s = parse_session({"tracks": [{"name": "a", "file": "a.wav"}]}, tmp_path / "s.toml",
                      check_files=False)
    st = allocate(s, maxblock=128, ring_frames=1 << 16)
    x = sine(1000, 0.5, 48000, amp=0.5)
    st.src_ring[0, :, :len(x)] = x
    st.src_pos[0, S_WRITE] = len(x)        # the tone, then the ring runs dry
    before = mxcsr()
    out = np.zeros((48000 * 20, 2), np.float32)
    run_blocks(st, out, len(out), 128)
    assert mxcsr() == before
    state = np.concatenate([a.ravel() for a in master_meter(st) if a.dtype == np.float64]
                           + [st.rule_state.ravel(), st.lim_state.ravel()])
    tiny = np.finfo(np.float64).tiny
    assert np.all((state == 0) | (np.abs(state) >= tiny)), state[(state != 0)
                                                                 & (np.abs(state) < tiny)]
