"""Shared fixtures: write small sessions with known signals, run the CLI."""
import contextlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):           # an inline table
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_text(data: dict) -> str:
    """A small TOML writer for session dicts (tables and arrays of tables)."""
    lines = []
    for name, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
            lines.append("")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
                lines.append("")
        else:
            lines.insert(0, f"{name} = {toml_value(value)}")
    return "\n".join(lines)


class SessionMaker:
    """Writes audio files and a session TOML into a temp dir."""

    def __init__(self, root: Path):
        self.root = root

    def audio(self, name, signal, sr=48000, subtype="FLOAT"):
        path = self.root / name
        sf.write(path, np.asarray(signal, dtype=np.float32), sr, subtype=subtype)
        return name

    def session(self, tracks, ducking=(), master=None, engine=None, name="s.toml", **extra):
        data = {"engine": {"samplerate": 48000, "blocksize": 128, "channels": 2}}
        data["engine"].update(engine or {})
        data["tracks"] = list(tracks)
        if ducking:
            data["ducking"] = list(ducking)
        data["master"] = {"gain_db": 0.0, "ceiling_db": -1.0}
        data["master"].update(master or {})
        data.update(extra)
        path = self.root / name
        path.write_text(toml_text(data))
        return path


@pytest.fixture
def maker(tmp_path):
    return SessionMaker(tmp_path)


def run_cli(*args, check=True, env=None):
    """Run `livemix ARGS` in a subprocess; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, env=e, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"livemix {' '.join(map(str, args))} failed ({p.returncode}):\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def jack(monkeypatch):
    """A running private JACK dummy server; the engine's audio child will find it."""
    from jackserver import JackServer, have_jack
    if not have_jack():
        pytest.fail("jackd is not installed (apt-get install jackd2): the live tests need it")
    server = JackServer().start()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
    monkeypatch.setenv("JACK_NO_AUDIO_RESERVATION", "1")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jack_inproc():
    """One JACK server for the whole test run, for tests that open JACK clients in the
    test process itself (MIDI ports, the surface, learn). libjack keeps per-process
    state: once a process has talked to one server it cannot follow another server,
    or the same one restarted, so these tests all share this one."""
    from jackserver import JackServer, have_jack
    if not have_jack():
        pytest.fail("jackd is not installed (apt-get install jackd2): the live tests need it")
    server = JackServer(suffix="-inproc").start()
    yield server
    server.stop()


@pytest.fixture
def jack_clients(jack_inproc, monkeypatch):
    """jack_inproc, made the default server for this test (engine children included)."""
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack_inproc.name)
    monkeypatch.setenv("JACK_NO_AUDIO_RESERVATION", "1")
    return jack_inproc


@contextlib.contextmanager
def small_tmpfs(path, options="size=1m"):
    """A small tmpfs mounted at ``path`` (a real full disk), unmounted afterwards;
    the test is skipped where mounting is not allowed (needs root)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
