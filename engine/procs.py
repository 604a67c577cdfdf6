"""Starting livemix's child processes (the audio process, the file readers).

They are spawned (a fresh interpreter, never a fork of a threaded parent), and
``start_child`` makes two things true from their first instruction:

- They do not run the user's script again. multiprocessing's spawn re-imports
  the parent's ``__main__`` in each child, so a script that starts a
  ``LiveEngine`` without an ``if __name__ == "__main__":`` guard would start
  one in every child. Our children's targets live in engine modules and need
  nothing from ``__main__``: the re-import is left out of what they are told.
- Ctrl-C is not theirs. The terminal sends SIGINT to the whole foreground
  process group; a child still importing would die with a traceback. SIGINT
  is blocked in the spawning thread while it forks, so the child starts with
  it blocked (the mask survives exec); the parent alone decides when they stop.

Control threads (any: the watchdog respawns the audio process from its own).
"""
from __future__ import annotations

import signal
import threading
from multiprocessing import spawn

_lock = threading.Lock()


def start_child(proc) -> None:
    """``proc.start()`` for a spawn-context Process, as described above."""
    with _lock:
        original = spawn.get_preparation_data

        def preparation(name):
            data = original(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        spawn.get_preparation_data = preparation
        try:
            proc.start()
        finally:
            spawn.get_preparation_data = original
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
