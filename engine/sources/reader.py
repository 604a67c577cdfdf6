"""File readers in their own process, feeding the shared-memory source rings.

Why a process and not threads in the parent: a reader thread shares the GIL
with every other Python thread of the app (UI, MIDI, the user's code). A
thread that makes garbage holds the GIL through each collection (100 ms and
more), and a reader needs the GIL several times per chunk, so it fell behind
by seconds and tracks ran dry (measured: 263,752 underrun blocks in 8 s with
64 tracks). In a process of its own the readers only ever wait for the disk.

``ReaderProcess.start()`` spawns the process, which opens every file track
(measuring clips for ``match_loudness``; a slow start is said after 3 s),
fills every ring, says "ready", then keeps the rings full (waking every
20 ms, or at once while a ring is under half full, which a freewheeling
server causes). Source errors and notices come back through a pipe; a failed source
ends its track where its data ends. Control thread (parent); the child runs
``_reader_main``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading

from ..errors import LivemixError
from ..procs import start_child

PERIOD_S = 0.02
START_TIMEOUT_S = 600.0     # opening every source (clips measured for match_loudness)
START_SAY_S = 3.0           # ... said to be under way after this long


def _reader_main(layout, session, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..dsp.layout import S_EOF, S_READ, S_WRITE, EngineState
    from ..rt.shm import attach
    from .files import make_source

    arena, g = attach(layout, {"st": EngineState})
    st = g["st"]
    sr = session.engine.samplerate
    try:
        sources = [make_source(t, sr, true_peak=True) for t in session.tracks]
        for i, (src, ring, pos) in enumerate(zip(sources, st.src_ring, st.src_pos)):
            if src is not None:
                src.fill(ring, pos)
                st.track_tp[i] = src.true_peak
    except LivemixError as e:
        conn.send(("error", str(e)))
        return
    conn.send(("ready", [n for s in sources if s is not None for n in s.notices]))
    size = st.src_ring.shape[2]
    sent = {i: len(s.notices) for i, s in enumerate(sources) if s is not None}
    wait = PERIOD_S
    while True:
        try:
            if conn.poll(wait):
                if conn.recv() == "stop":
                    break
        except (EOFError, OSError):          # the parent is gone: do not outlive it
            os._exit(0)
        wait = PERIOD_S
        for i, (src, ring, pos) in enumerate(zip(sources, st.src_ring, st.src_pos)):
            if src is None:
                continue
            if int(pos[S_WRITE]) - int(pos[S_READ]) < size // 2:
                wait = 0.0005
            try:
                src.fill(ring, pos)
                st.track_tp[i] = src.true_peak
            except LivemixError as e:
                conn.send(("source_error", str(e)))
                sources[i] = None
                pos[S_EOF] = pos[S_WRITE]     # the track ends where its data ends
                continue
            if len(src.notices) > sent[i]:
                for n in src.notices[sent[i]:]:
                    conn.send(("notice", n))
                sent[i] = len(src.notices)
    for src in sources:
        if src is not None:
            src.close()
    conn.send(("stopped", None))


class ReaderProcess:
    """The reader child. ``start()`` returns once every ring holds its read-ahead."""

    def __init__(self, layout, session, on_event=None):
        self.layout = layout
        self.session = session
        self.on_event = on_event or (lambda kind, detail: None)
        self.notices: list[str] = []
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None
        self._watch = None
        self._stop = threading.Event()

    def start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_reader_main, args=(self.layout, self.session,
                                                                  child),
                                       name="livemix-readers", daemon=True)
        self._conn = parent
        start_child(self._proc)
        child.close()
        waited = 0.0
        while not parent.poll(1.0):
            waited += 1.0
            if not self._proc.is_alive() and not parent.poll(0):
                raise LivemixError(f"the file readers exited ({self._proc.exitcode})")
            if waited == START_SAY_S:
                self.on_event("notice", "opening the sources is taking a while (a clip "
                              "with match_loudness is decoded once to measure it) ...")
            if waited >= START_TIMEOUT_S:
                self.stop()
                raise LivemixError(f"the file readers did not open the sources in "
                                   f"{START_TIMEOUT_S:.0f} s")
        try:
            kind, detail = parent.recv()
        except EOFError:
            raise LivemixError(f"the file readers exited ({self._proc.exitcode})") from None
        if kind == "error":
            self.stop()
            raise LivemixError(detail)
        self.notices.extend(detail)
        for n in detail:
            self.on_event("notice", n)
        self._watch = threading.Thread(target=self._listen, name="livemix-reader-events",
                                       daemon=True)
        self._watch.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._conn.poll(0.1):
                    continue
                kind, detail = self._conn.recv()
            except (EOFError, OSError):
                return
            if kind == "stopped":
                return
            if kind == "notice":
                self.notices.append(detail)
            self.on_event(kind, detail)

    def stop(self) -> None:
        """Stop the readers (they close their files). A start cut short (Ctrl-C while
        they open the sources) is not waited for: they are killed. Control thread."""
        self._stop.set()
        if self._proc is None:
            return
        if self._watch is not None:            # running: ask them to close their files
            try:
                self._conn.send("stop")
            except (OSError, BrokenPipeError):
                pass
            self._proc.join(timeout=3.0)
        if self._proc.is_alive():
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.join(timeout=1.0)
        if self._watch is not None:
            self._watch.join(timeout=1.0)
        self._proc = None
