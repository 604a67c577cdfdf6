"""livemix engine: session model, real-time kernels, backends, recorder."""
import hashlib
import os
import sys
from pathlib import Path

__version__ = "0.1.0"

# Run as a command (`python -m engine.cli`, the `livemix` script): a Ctrl-C while Python
# is still importing ends it in one line, not a traceback (engine.cli.main takes over).
if sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0] if sys.argv else "") == "livemix":
    import signal

    def _interrupted(signum, frame):
        print("livemix: interrupted", file=sys.stderr)
        sys.exit(130)

    signal.signal(signal.SIGINT, _interrupted)


# The sources numba compiles (kernels, the callback, the constants they inline).
KERNEL_SOURCES = ("dsp", "rt", "params.py", "strip.py")


def _numba_cache_dir() -> str:
    """A numba cache directory keyed on the sources of the compiled code.

    numba invalidates a cached function when its own file changes, not when a
    function it inlines from another module does, so an edited kernel could
    otherwise run stale machine code. Keying the directory on a hash of every
    source numba compiles (KERNEL_SOURCES) makes any edit of them start from a
    clean cache; editing the rest of the engine (CLI, video, reports) does not
    cost a recompile.
    """
    h = hashlib.sha1(__version__.encode())
    here = Path(__file__).parent
    for name in KERNEL_SOURCES:
        p = here / name
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(str(f.relative_to(here)).encode())
            h.update(f.read_bytes())
    return os.path.join(cache_dir(), "numba", h.hexdigest()[:16])


def cache_dir() -> str:
    """livemix's cache directory: $XDG_CACHE_HOME/livemix, else ~/.cache/livemix."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "livemix")


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _numba_cache_dir()
    if "numba" in sys.modules:   # numba already read its config: tell it too
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
