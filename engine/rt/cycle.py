"""One audio callback's work: live inputs in, the block function, recording out, health.

``engine_cycle`` is what the PortAudio ``@cfunc`` calls (live) and what the
virtual backend's clock-paced thread calls: the same code either way. It
processes the callback's frames in chunks of at most ``C_MAXBLOCK``, so the
pre-fader stems it records are always the frames just mixed. Audio thread.
"""

from ..dsp.jit import rt_kernel
from ..dsp.layout import (C_MAXBLOCK, C_NTRACKS, C_SR, FREEWHEEL_WAIT_NS,
                          FREEWHEEL_WINDOW_S, IO_INCH, IO_OUTCH, IO_RECORD, IO_STEMS, S_EOF,
                          S_READ, ST_FW_F0, ST_FW_T0, ST_FREEWHEEL, ST_FREEWHEEL_WAITS, ST_REC_ON,
                          ST_REC_START, ST_REC_TAIL, K_FRAME, EV_XRUN, IO_LATENCY, IO_STEM_LATENCY, RI_STEM_POS,
                          LOAD_BIN_PPM, LOAD_BINS, PA_INPUT_OVERFLOW, PA_INPUT_UNDERFLOW,
                          PA_OUTPUT_OVERFLOW, PA_OUTPUT_UNDERFLOW, RI_DROP_R,
                          RI_DROP_W, RI_READ, RI_WRITE, S_WRITE, ST_CALLBACKS, ST_FRAMES,
                          ST_IN_OVERFLOW, ST_IN_UNDERFLOW, ST_LAST_NOW, ST_LAST_NS, ST_LAST_PPM,
                          ST_MAX_NS, ST_MAX_PPM, ST_OUT_OVERFLOW, ST_OUT_UNDERFLOW, ST_REC_DROPPED,
                          ST_SUM_NS, ST_SUM_PPM, ST_XRUNS)
from .block import event_push, process_block
from .clock import now_ns, sleep_us
from .fpu import denormals_off, fpu_restore


@rt_kernel
def _inputs_to_rings(st, io, inp, offset, n):
    """Copy device input channels into the source rings of live-input tracks."""
    inch = io.io_cfg[IO_INCH]
    if inch == 0:
        return
    for t in range(st.cfg[C_NTRACKS]):
        cl = io.in_map[t, 0]
        if cl < 0:
            continue
        cr = io.in_map[t, 1]
        ring = st.src_ring[t]
        mask = ring.shape[1] - 1
        w = st.src_pos[t, S_WRITE]
        for i in range(n):
            j = (w + i) & mask
            ring[0, j] = inp[offset + i, cl]
            ring[1, j] = inp[offset + i, cr]
        st.src_pos[t, S_WRITE] = w + n


@rt_kernel
def _freewheel_wait_sources(st, io, n, deadline):
    """In freewheel only: wait until every file track has n frames (or its end)."""
    for t in range(st.cfg[C_NTRACKS]):
        if io.in_map[t, 0] >= 0:
            continue
        pos = st.src_pos[t]
        while pos[S_WRITE] - pos[S_READ] < n and not (0 <= pos[S_EOF] <= pos[S_WRITE]):
            if now_ns(io.ts) > deadline:
                return
            io.stats[ST_FREEWHEEL_WAITS] += 1
            sleep_us(100)


@rt_kernel
def _stems(st, io, w, n, write):
    """This chunk's pre-fader stems into ring frames [w, w + n) (``write``), through the
    stem delay line when the master's delay is compensated (IO_STEM_LATENCY frames: the
    master's own delay behind the strips, where the stems are tapped): ring frame j then
    holds the stems of the same session frame as the master's. The delay line
    takes the chunk even when it is dropped (``write`` False), so the stems stay in
    step with the master after an overflow."""
    ring = io.rec_ring
    mask = ring.shape[1] - 1
    outch = io.io_cfg[IO_OUTCH]
    lat = io.io_cfg[IO_STEM_LATENCY]
    p = io.rec_idx[RI_STEM_POS]
    for t in range(st.cfg[C_NTRACKS]):
        for c in range(2):
            row = ring[outch + 2 * t + c]
            src = st.tbuf[t, c]
            if lat == 0:
                if write:
                    for i in range(n):
                        row[(w + i) & mask] = src[i]
                continue
            d = io.stem_delay[t, c]
            q = p
            for i in range(n):
                if write:
                    row[(w + i) & mask] = d[q]
                d[q] = src[i]
                q += 1
                if q == lat:
                    q = 0
    if lat > 0:
        io.rec_idx[RI_STEM_POS] = (p + n) % lat


@rt_kernel
def _record(st, io, out, offset, n, deadline):
    """Copy n output frames (and stems) into the record ring, or count them dropped.

    In freewheel (no deadline) it first waits, up to ``deadline``, for the
    writer to make room."""
    ring = io.rec_ring
    size = ring.shape[1]
    mask = size - 1
    idx = io.rec_idx
    w = idx[RI_WRITE]
    stems = io.io_cfg[IO_STEMS] != 0
    if io.stats[ST_FREEWHEEL] != 0:
        while size - (w - idx[RI_READ]) < n and now_ns(io.ts) < deadline:
            io.stats[ST_FREEWHEEL_WAITS] += 1
            sleep_us(100)
    if size - (w - idx[RI_READ]) < n:
        io.stats[ST_REC_DROPPED] += n
        if stems:
            _stems(st, io, w, n, False)
        drops = io.rec_drops
        dmask = drops.shape[0] - 1
        dw = idx[RI_DROP_W]
        # consecutive drops are one entry (the ring's write position does not move while
        # it is full), so however long a disk stalls the log cannot fill and the take
        # keeps its length. The entry may be extended only while the writer has not
        # taken it (read index behind it).
        if dw > idx[RI_DROP_R] and drops[(dw - 1) & dmask, 0] == w:
            drops[(dw - 1) & dmask, 1] += n
        elif dw - idx[RI_DROP_R] < drops.shape[0]:
            slot = dw & dmask
            drops[slot, 0] = w
            drops[slot, 1] = n
            idx[RI_DROP_W] = dw + 1
        return
    outch = io.io_cfg[IO_OUTCH]
    for i in range(n):
        j = (w + i) & mask
        for c in range(outch):
            ring[c, j] = out[offset + i, c]
    if stems:
        _stems(st, io, w, n, True)
    idx[RI_WRITE] = w + n   # publish after the data


@rt_kernel
def engine_cycle(st, io, inp, out, frames, status):
    """Mix ``frames`` frames into ``out`` (frames x channels float32); record; count.

    inp: (frames, input channels) float32 (ignored when IO_INCH is 0);
    status: PortAudio's callback flags. Audio thread only; RT-safe.
    """
    fpu = denormals_off()      # restored on the way out: the thread's own state is left alone
    t0 = now_ns(io.ts)
    stats = io.stats
    # Freewheel (JACK runs the graph as fast as it can, with no deadline) shows as audio
    # time running ahead of the wall clock: a FREEWHEEL_WINDOW_S stretch of audio that took
    # under half as long in real time. Judged over a window far longer than any host
    # period, so that a buffer adapter calling back many times per host period (16 blocks
    # of 64 frames per 1024-frame JACK period) is not taken for it, nor a device catching
    # up after a late wake-up. Only in freewheel may the cycle wait for readers and the
    # writer; otherwise it never waits.
    sr = st.cfg[C_SR]
    span = stats[ST_FRAMES] - stats[ST_FW_F0]
    if stats[ST_FW_T0] == 0:
        stats[ST_FW_T0] = t0
        stats[ST_FW_F0] = stats[ST_FRAMES]
    elif span >= FREEWHEEL_WINDOW_S * sr:
        real_ns = t0 - stats[ST_FW_T0]
        stats[ST_FREEWHEEL] = 1 if 2 * real_ns * sr < span * 1000000000 else 0
        stats[ST_FW_T0] = t0
        stats[ST_FW_F0] = stats[ST_FRAMES]
    freewheel = stats[ST_FREEWHEEL] != 0
    deadline = t0 + FREEWHEEL_WAIT_NS
    if status & (PA_INPUT_UNDERFLOW | PA_INPUT_OVERFLOW | PA_OUTPUT_UNDERFLOW
                 | PA_OUTPUT_OVERFLOW):
        stats[ST_XRUNS] += 1
        event_push(st, st.clock[K_FRAME], EV_XRUN, status)
        if status & PA_INPUT_UNDERFLOW:
            stats[ST_IN_UNDERFLOW] += 1
        if status & PA_INPUT_OVERFLOW:
            stats[ST_IN_OVERFLOW] += 1
        if status & PA_OUTPUT_UNDERFLOW:
            stats[ST_OUT_UNDERFLOW] += 1
        if status & PA_OUTPUT_OVERFLOW:
            stats[ST_OUT_OVERFLOW] += 1
    maxblock = st.cfg[C_MAXBLOCK]
    # recording: on (1) while IO_RECORD is set, then a tail (2) as long as the master's
    # delay (IO_LATENCY), so that the take holds the last frames still in the limiter
    if io.io_cfg[IO_RECORD] != 0:
        if stats[ST_REC_ON] != 1:
            stats[ST_REC_START] = st.clock[K_FRAME]      # the take starts with this block
            stats[ST_REC_ON] = 1
    elif stats[ST_REC_ON] == 1:
        stats[ST_REC_ON] = 2
        stats[ST_REC_TAIL] = io.io_cfg[IO_LATENCY]
    done = 0
    while done < frames:
        n = min(maxblock, frames - done)
        _inputs_to_rings(st, io, inp, done, n)
        if freewheel:
            _freewheel_wait_sources(st, io, n, deadline)
        process_block(st, out[done:done + n], n)
        if stats[ST_REC_ON] == 2:
            k = min(n, stats[ST_REC_TAIL])
            if k > 0:
                _record(st, io, out, done, k, deadline)
                stats[ST_REC_TAIL] -= k
            if stats[ST_REC_TAIL] == 0:
                stats[ST_REC_ON] = 0
        elif stats[ST_REC_ON] == 1:
            _record(st, io, out, done, n, deadline)
        done += n
    t1 = now_ns(io.ts)
    dur = t1 - t0
    stats[ST_CALLBACKS] += 1
    stats[ST_FRAMES] += frames
    stats[ST_LAST_NS] = dur
    stats[ST_SUM_NS] += dur
    if dur > stats[ST_MAX_NS]:
        stats[ST_MAX_NS] = dur
    if frames > 0 and not freewheel:   # waits in freewheel are not load
        ppm = dur * st.cfg[C_SR] // (frames * 1000)   # dur / period * 1e6
        stats[ST_LAST_PPM] = ppm
        stats[ST_SUM_PPM] += ppm
        if ppm > stats[ST_MAX_PPM]:
            stats[ST_MAX_PPM] = ppm
        b = ppm // LOAD_BIN_PPM
        io.load_hist[b if b < LOAD_BINS else LOAD_BINS - 1] += 1
    stats[ST_LAST_NOW] = t1
    fpu_restore(fpu)
