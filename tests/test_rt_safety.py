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
