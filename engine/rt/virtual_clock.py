"""The virtual device's clock: machine code that paces ``engine_cycle`` with no sound card.

``run_clock`` is the virtual backend's counterpart of the PortAudio ``@cfunc``:
a numba function compiled with ``nogil=True`` that a native-priority thread of
the audio child process enters once and leaves only when told to stop. It
never takes the GIL, so no Python thread (UI, MIDI, the writer, a garbage
collection) anywhere can make a block late, exactly as on the PortAudio path.

The device it models is an interface with ``buffer_periods`` periods of
output buffer (3, like many USB interfaces; the backend reports
``buffer_periods x period`` as its latency). Block k is due at
``start + k x period`` (``clock_nanosleep`` to an absolute time: no drift) and
must be finished ``buffer_periods - 1`` periods later, when the device would
start playing it. A block finished after that is an xrun, as on hardware: the
next cycle gets PortAudio's output-underflow flag (so ``engine_cycle`` counts
it and logs an event with its frame, like any backend's), and the clock
restarts from that moment instead of racing to catch up. A wake-up late by
less than the buffer is absorbed: the following blocks run back to back until
the clock is on time again.

Audio child process: ``run_clock`` on the clock thread; ``ctl[VC_STOP]`` is set
by the child's main thread.
"""
from ..dsp.layout import C_SR, EV_XRUN, K_FRAME, PA_OUTPUT_UNDERFLOW, ST_OUT_UNDERFLOW, ST_XRUNS
from ..dsp.jit import rt_kernel
from .block import event_push
from .clock import now_ns, sleep_until_ns
from .cycle import engine_cycle

VC_TS = 0            # ctl[0:2]: timespec scratch for clock_nanosleep
VC_STOP = 2          # set to 1 by another thread: return after the current block
VC_LATE_MAX_NS = 3   # the latest any block finished past its due time (ns)
N_VC = 4

BUFFER_PERIODS = 3


@rt_kernel(nogil=True)
def run_clock(st, io, out, frames, buffer_periods, ctl):
    """Mix ``frames`` frames per period into ``out`` (frames x channels float32, then
    discarded) every period until ``ctl[VC_STOP]`` is set. Returns blocks run.
    Audio child's clock thread; RT-safe, no GIL."""
    ts = ctl[VC_TS:VC_TS + 2]
    period_ns = frames * 1000000000 // st.cfg[C_SR]
    slack_ns = (buffer_periods - 1) * period_ns
    start = now_ns(ts)
    k = 0
    status = 0
    while ctl[VC_STOP] == 0:
        due = start + k * period_ns
        sleep_until_ns(ts, due)
        engine_cycle(st, io, out, out, frames, status)
        status = 0
        k += 1
        late = now_ns(ts) - due
        if late > ctl[VC_LATE_MAX_NS]:
            ctl[VC_LATE_MAX_NS] = late
        if late > slack_ns:
            # the device played silence: say so with the next block, and restart
            # the clock now (the next block is due at once, with a full buffer ahead)
            status = PA_OUTPUT_UNDERFLOW
            start = now_ns(ts) - k * period_ns
    if status != 0:      # the last block was late: no next cycle will report it
        io.stats[ST_XRUNS] += 1
        io.stats[ST_OUT_UNDERFLOW] += 1
        event_push(st, st.clock[K_FRAME], EV_XRUN, status)
    return k
