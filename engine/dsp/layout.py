"""The engine's state: every array the block function touches, and their layout.

``EngineState`` is a namedtuple of preallocated numpy arrays (allocated by
``engine.rt.state``, possibly in shared memory). The kernels read and write
these arrays in place and allocate nothing. Index constants name the columns.

Writer of each array (single-writer discipline, so no locks are needed):
  cfg, rule_keys, track_rules, lim_box sizes ... set once before the stream
  src_ring, src_pos[:, S_WRITE], src_pos[:, S_EOF]   the reader process (one writer per track)
  cmd_ring, cmd_idx[Q_WRITE]                        control thread (one producer)
  track_tp                                          the reader process (it measures each
                                                    file's true peak as it decodes it)
  everything else                                   the audio thread
"""
from collections import namedtuple

EngineState = namedtuple(
    "EngineState",
    [
        "cfg",          # int64 (N_CFG,)            static configuration
        "clock",        # int64 (N_CLOCK,)          counters owned by the audio thread
        "track_ctl",    # float64 (T, N_TCTL)       control values as applied (dB, pan, 0/1)
        "track_ramp",   # float64 (T, 3, 3)         [gain, pan L, pan R] x [start, target, pos]
        "track_rules",  # int64 (T, R + 1)          [count, rule ids ...] ducking rules targeting t
        "src_ring",     # float32 (T, 2, RING)      per-track source signal, session time
        "src_pos",      # int64 (T, N_SPOS)         ring counters (frames)
        "tbuf",         # float32 (T, 2, MAXBLOCK)  this block's pre-fader track signals
        "gbuf",         # float32 (2, MAXBLOCK)     scratch: per-sample channel gains
        "rule_cfg",     # float64 (R, N_RCFG)       ducking rule parameters
        "rule_keys",    # uint8 (R, T)              1 where track t keys rule r
        "rule_state",   # float64 (R, N_RSTATE)     ducking envelopes
        "keybuf",       # float32 (2, MAXBLOCK)     scratch: a rule's key signal
        "duckbuf",      # float32 (R, MAXBLOCK)     per-sample ducking gain of each rule
        "tduck",        # float32 (MAXBLOCK,)       scratch: a track's combined ducking gain
        "mixbuf",       # float32 (2, MAXBLOCK)     the master bus
        "master",       # float64 (N_MASTER,)       master gain ramp and ceiling
        "lim_delay",    # float32 (2, LOOKAHEAD - 1 + 8 * MAXBLOCK) limiter lookahead line
        "lim_dq_val",   # float64 (LOOKAHEAD,)      limiter sliding-minimum deque: values
        "lim_dq_idx",   # int64 (LOOKAHEAD,)        ... and their sample indices
        "lim_box",      # float64 (LOOKAHEAD,)      limiter gain smoothing window
        "lim_state",    # float64 (N_LIM,)          limiter float state
        "lim_istate",   # int64 (N_LIMI,)           limiter integer state
        "cmd_ring",     # float64 (CMDCAP, 4)       commands: frame, param, target, value
        "cmd_idx",      # int64 (2,)                [write, read] counters
        "track_meter",  # float64 (T, 2)            last block: post-fader peak, RMS (linear)
        "master_meter",  # float64 (2, 2)           last block: per channel peak, RMS (linear)
        "rule_meter",   # float64 (R,)              last block: gain reduction per rule (dB, <= 0)
        "peak_hold",    # float64 (2,)              master peak per channel since start (linear)
        "auto_ring",    # float64 (AUTOCAP, 4)      applied changes: frame, param, target, value
        "auto_idx",     # int64 (3,)                [write, read, lost] counters
        # the master meter (the output after the limiter): a dsp.meters.Meter, field by field
        "m_cfg", "m_kw", "m_state", "m_sub", "m_hist", "m_tp_coef", "m_tp_work", "m_tp_acc",
        "m_tp_det", "m_series", "m_series_idx",
        "lt_tp_work",   # float32 (2, TP_TAPS + MAXBLOCK + TP_PAD) true-peak limiter history
        "track_tp",     # float64 (T,)              each file track's source true peak (linear)
        "snap",         # float64 (N_SNAP,)         published snapshot: master (seqlock in SN_SEQ)
        "snap_track",   # float64 (T, N_SNT)        published snapshot: tracks
        "snap_rule",    # float64 (R,)              published snapshot: ducking gain, linear (min)
        "acc_track",    # float64 (T,)              post-fader peak since the last publish
        "acc_rule",     # float64 (R,)              lowest ducking gain since the last publish
        "ev_ring",      # float64 (EVCAP, 3)        events: frame, kind, value
        "ev_idx",       # int64 (3,)                [write, read, lost]
        "ev_prev",      # int64 (T + 1, 2)          per track (and ceiling): [count seen, frame logged]
        # the channel strip (engine.dsp.strip documents each)
        "sp",           # float64 (T, 3, N_SP)      parameters: target, current, at the step's start
        "sp_cfg",       # int64 (T, N_SC)           what the session fixed
        "bq",           # float64 (T, N_BQ, 5)      biquad coefficients
        "bq_z",         # float64 (T, N_BQ, 2, 2)   biquad state
        "dyn",          # float64 (T, N_DYN)        gate and compressor envelopes, meters
        "key_raw",      # float32 (K, 2, MAXBLOCK)  sidechain keys: key tracks before their strip
        "sbuf",         # float32 (2, MAXBLOCK)     scratch: a stage's input while it crossfades
        "dn_states",    # int64 (D, 2)              denoise: RNNoise states (this process's)
        "dn_fifo",      # float32 (D, 2, 4, 480)    denoise: frame FIFOs (engine.dsp.denoise)
        "dn_pos",       # float64 (D, 4)            denoise: FIFO position, speech probability
        "dn_dry",       # float32 (T|1, 2, DRY)     denoise: each track's delay line (dry path,
                        #                           delay compensation)
    ],
)

# cfg
C_SR = 0            # samplerate, Hz
C_MAXBLOCK = 1      # largest chunk processed at once, frames
C_NTRACKS = 2
C_NRULES = 3
C_RAMP = 4          # gain/pan smoothing ramp length, samples
C_LOOKAHEAD = 5     # limiter window, samples (delay is LOOKAHEAD - 1)
C_OUTCH = 6         # output channels (1 or 2)
C_RING = 7          # source ring length, frames (power of two)
C_CMDCAP = 8        # command ring capacity (power of two)
C_MINHOLD = 9       # shortest ducking hold, samples
C_PUBLISH = 10      # snapshot interval, samples
C_LATENCY = 11      # the master's delay (the limiter's lookahead), samples
N_CFG = 12

# clock
K_FRAME = 0         # session frame at the start of the next block
K_BLOCKS = 1        # blocks processed
K_NAN = 2           # non-finite samples scrubbed from the master bus
K_CEIL = 3          # samples the limiter had to reduce
K_CMD_LATE = 4      # commands applied later than their frame
K_CMD_APPLIED = 5
K_CMD_INVALID = 6   # commands naming a param or target that does not exist
K_NEXT_PUB = 7      # session frame of the next snapshot
N_CLOCK = 8

# track_ctl
T_GAIN_DB = 0
T_PAN = 1
T_MUTE = 2
T_SOLO = 3
N_TCTL = 4

# track_ramp first axis, and ramp fields
R_GAIN = 0
R_PAN_L = 1
R_PAN_R = 2
RAMP_START = 0
RAMP_TARGET = 1
RAMP_POS = 2

# src_pos
S_WRITE = 0         # frames written (reader)
S_READ = 1          # frames consumed (audio thread)
S_EOF = 2           # frame count at which the track ends; -1 while unknown (reader)
S_UNDERRUNS = 3     # blocks that found the ring short (audio thread)
N_SPOS = 4

# rule_cfg
D_THRESHOLD = 0     # key level above which the rule engages, linear
D_ATTACK_INC = 1    # amount per sample while engaging (1 / attack samples)
D_RELEASE_INC = 2   # amount per sample while releasing (1 / release samples)
D_HOLD = 3          # hold, samples
N_RCFG = 4

# rule_state
DS_HOLD_LEFT = 0    # samples of hold left
DS_AMOUNT = 1       # 0 = no ducking .. 1 = full depth
DS_GAIN = 2         # current gain, linear
DS_STEADY = 3       # 1.0 when the gain did not move in the last segment
DS_DEPTH = 4        # 3 slots: depth ramp (dB, <= 0) start, target, pos
N_RSTATE = 7

# master
M_RAMP = 0          # 3 slots: ramp start, target, pos
M_GAIN_DB = 3
M_CEILING = 4       # ceiling, linear (largest float32 not above ceiling_db)
M_RELEASE = 5       # limiter release coefficient per sample
M_TRUE_PEAK = 6     # 1.0: the ceiling holds the true peak (4x oversampled), 0.0: sample peak
M_DETECT = 7        # level the limiter's detector holds the signal under, linear
M_ACC = 8           # 2 slots: output sample peak L, R since the last snapshot (linear)
N_MASTER = 10

# limiter state
L_ENV = 0
L_BOXSUM = 1
L_DET_PREV = 2      # true-peak mode: the detector's previous value
N_LIM = 3
LI_N = 0            # samples processed
LI_DQ_HEAD = 1
LI_DQ_COUNT = 2
LI_BOX_POS = 3
LI_BOX_BELOW = 4    # entries < 1 in the smoothing window
LI_DELAY_BASE = 5   # where the pending delayed samples start in lim_delay
N_LIMI = 6

# snapshot (audio thread -> UI), published every C_PUBLISH samples under a seqlock:
# SN_SEQ is odd while the audio thread writes; a reader copies, then checks it is unchanged
SN_SEQ = 0
SN_FRAME = 1        # session frame at the end of the published interval
SN_PEAK_L = 2       # master sample peak over the interval (linear)
SN_PEAK_R = 3
SN_M = 4            # momentary energy (see dsp.meters.lufs)
SN_S = 5            # short-term energy
SN_CEIL = 6         # samples the limiter has reduced (K_CEIL)
N_SNAP = 8
STK_PEAK = 0        # track post-fader sample peak over the interval, L/R (linear)
STK_TP = 1          # track source (pre-fader) true peak since the start (linear)
STK_GATE = 2        # the strip's gate: lowest gain over the interval, dB (<= 0; 0 open)
STK_COMP = 3        # the strip's compressor: largest gain reduction over the interval, dB
STK_OPEN = 4        # the strip's gate: 1 if open when published, 0 closed
N_SNT = 5

# events (audio thread -> control thread)
EV_XRUN = 1         # value: PortAudio status flags
EV_UNDERRUN = 2     # value: track index
EV_CEILING = 3      # value: samples reduced in the block (the limiter started working)
EV_QUIET_S = 0.5    # an underrun or ceiling event is logged again only after this long without
EV_FRAME = 0
EV_KIND = 1
EV_VALUE = 2

# automation log (audio thread -> control thread)
A_WRITE = 0
A_READ = 1
A_LOST = 2          # changes applied while the log was full (the take's log misses them)

# command queue
Q_WRITE = 0
Q_READ = 1
CMD_FRAME = 0
CMD_PARAM = 1
CMD_TARGET = 2
CMD_VALUE = 3


# --- the callback's side: recording ring, health counters ----------------------
IoState = namedtuple(
    "IoState",
    [
        "io_cfg",      # int64 (N_IOCFG,)            static configuration
        "stats",       # int64 (N_STATS,)            audio-thread counters (health)
        "load_hist",   # int64 (LOAD_BINS,)          callback duration, % of the period
        "ts",          # int64 (2,)                  timespec scratch for clock_gettime
        "in_map",      # int64 (T, 2)                device input channel per track L/R, -1 = none
        "rec_ring",    # float32 (NREC, RECLEN)      master channels, then 2 per stem
        "rec_idx",     # int64 (N_RECIDX,)           ring counters
        "rec_drops",   # int64 (DROPCAP, 2)          (ring frame, frames) of each overflow
        "stem_delay",  # float32 (T or 1, 2, LAT)    stems delayed to meet the master in the ring
    ],
)

# io_cfg
IO_RECORD = 0       # 1 while the audio thread copies output into rec_ring (control thread sets)
IO_STEMS = 1        # 1 to record each track's pre-fader signal too
IO_INCH = 2         # device input channels
IO_OUTCH = 3        # channels in the output buffer
IO_LATENCY = 4      # the master's delay to compensate in the ring, frames (0 = none): stems
                    # go through stem_delay, and recording runs this long after it stops
IO_STEM_LATENCY = 5 # the stems' delay to meet the master's, frames (IO_LATENCY less the
                    # strips' delay compensation: stems are tapped after the strips)
N_IOCFG = 6

# stats (all written by the audio thread only)
ST_CALLBACKS = 0
ST_FRAMES = 1
ST_XRUNS = 2        # callbacks flagged with any PortAudio status bit
ST_IN_UNDERFLOW = 3
ST_IN_OVERFLOW = 4
ST_OUT_UNDERFLOW = 5
ST_OUT_OVERFLOW = 6
ST_LAST_NS = 7      # duration of the last callback
ST_MAX_NS = 8
ST_SUM_NS = 9
ST_LAST_PPM = 10    # load of the last callback, parts per million of its period
ST_MAX_PPM = 11
ST_SUM_PPM = 12
ST_REC_DROPPED = 13  # frames the record ring had no room for
ST_LAST_NOW = 14    # monotonic ns at the end of the last callback (heartbeat)
ST_FW_T0 = 15       # freewheel detection: monotonic ns at the start of the window
ST_FW_F0 = 16       # ... and ST_FRAMES then
ST_FREEWHEEL = 17   # 1 while the server freewheels (no deadline: the cycle may wait)
ST_FREEWHEEL_WAITS = 18  # cycles that waited for a reader or the writer in freewheel
ST_REC_ON = 20      # 1 while the audio thread is recording, 2 while it records the tail
ST_REC_TAIL = 19    # frames of the tail still to record (the master's delay after a stop)
ST_REC_START = 21   # session frame of the first frame of the current take
N_STATS = 24
FREEWHEEL_WINDOW_S = 0.5   # audio time over which freewheel is judged (>> any host period)
FREEWHEEL_WAIT_NS = 100_000_000   # longest wait per callback in freewheel (well under the
                                  # watchdog's STALL_S: a wait is never a "device lost")

LOAD_BINS = 2000    # 0.1 % of the period per bin, 0 .. 200 %
LOAD_BIN_PPM = 1000

# rec_idx
RI_WRITE = 0        # frames put in the ring (audio thread)
RI_READ = 1         # frames taken out (writer thread)
RI_DROP_W = 2       # drop-log entries written (audio thread)
RI_DROP_R = 3       # drop-log entries read (writer thread)
# The writer's anchor, for salvaging the ring after the parent is killed (engine.salvage):
# (RI_READ, RI_DROP_R, frames in the take's files) as of the last complete write, in
# two slots; RI_ANCHOR_SEQ says which one holds the latest (written before RI_READ moves).
RI_ANCHOR_SEQ = 4
RI_ANCHOR = 5       # slot k: rec_idx[RI_ANCHOR + 3k : RI_ANCHOR + 3k + 3]
RI_STEM_POS = 11    # position in stem_delay (audio thread)
N_RECIDX = 12

# PortAudio callback status flags
PA_INPUT_UNDERFLOW = 1
PA_INPUT_OVERFLOW = 2
PA_OUTPUT_UNDERFLOW = 4
PA_OUTPUT_OVERFLOW = 8
PA_PRIMING_OUTPUT = 16
