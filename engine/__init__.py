"""livemix engine: session model, real-time kernels, backends, recorder."""
import hashlib
import os
import sys
from pathlib import Path

__version__ = "0.1.0"


def _numba_cache_dir() -> str:
    """A numba cache directory keyed on the engine's own sources.

    numba invalidates a cached function when its own file changes, not when a
    function it inlines from another module does, so an edited kernel could
    otherwise run stale machine code. Keying the directory on a hash of every
    engine source makes any edit start from a clean cache.
    """
    h = hashlib.sha1(__version__.encode())
    for p in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(p.read_bytes())
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "livemix", "numba", h.hexdigest()[:16])


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _numba_cache_dir()
    if "numba" in sys.modules:   # numba already read its config: tell it too
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
