"""plc_expect.py — what maa-plc should have handed the PLC, worked out
independently from the verdicts maad published, and compared with what the
simulated PLC (scripts/plc-sim.py) received.  Used by tests/e2e_plc.sh.

The line model of the bridge's design (docs/plc.md): every camera is
triggered once per line step; camera k at offset o_k sees part s - o_k at
step s; a part's number is the step at the first station.  A camera is put
on the line by capture time, and from then on its frame ids alone give the
step (16-bit ids wrap 65535 -> 1): a lost frame leaves a hole, never a
shift.

Here the cameras are Aravis fake cameras at one frame rate, which capture at
absolute multiples of the frame period of CLOCK_REALTIME, so a frame's step
on an absolute scale is round(t_capture_ns / period).  For every run of a
maad (seq counting up from 0) that the bridge placed (its log line "camera
NAME: ... frame F is step S"), the test places the run itself: step =
extended frame id + delta, delta the median of round(t / period) - id over
the 20 frames from F on (jitter of one capture time does not move it).  The
bridge's numbering is its own: bridge step = absolute step + C, and C must
be the same for every placement of every camera (else the bridge put a
camera on the wrong step).  A fake camera that falls behind skips a period
without using a frame id; that breaks the line model for the bridge and the
test alike, and is reported.

Expected decision of a part: reject when any camera's verdict for it is
reject (reason bit 1) or uninspected (bit 2), or missing (bit 4 and/or 8:
never published, lost on the way, its maad down); else pass; camera bit k
set exactly for the cameras that did not pass.  A verdict published while
the bridge called its camera down for silence (its log's "camera NAME: down:
no message" to "camera NAME: up", the start moved back by
heartbeat_timeout_ms and a second of stall) may also have been decided as
missing: the bridge's fail-safe, on
a machine loaded enough to stall messages, not a mistake.  A part is compared when
every camera had been placed by the bridge at its step, and no camera's
step lies in a maad run before the bridge placed that run (verdicts the
bridge may hold or drop while it places a camera).

Usage: plc_expect.py CONFIG.json; prints its findings, then one JSON line
of facts; exit 1 when a check failed.  CONFIG.json:
  {"fps": 20,
   "cameras": [{"name", "offset", "verdicts": JSONL, "dropped": JSONL}, ...],
   "results": plc-sim's results.jsonl, "log": maa-plc's log,
   "stop_ns": when maa-plc got SIGTERM, "settle_ms": 1000,
   "heartbeat_timeout_ms": 800 (line.heartbeat_timeout_ms)}
"""
import calendar
import json
import re
import statistics
import sys
import time

PASS, REJECT, UNINSPECTED = "pass", "reject", "uninspected"
R_REJECT, R_UNINSPECTED, R_MISSING, R_DOWN = 1, 2, 4, 8
ANCHOR = 20   # frames whose capture times place a run
MISSING = "missing"
# After a camera is placed again, this many of its first verdicts may come
# after their parts were decided (the camera was down until then; maad
# publishes a batch of up to engine.batch_max verdicts at once).
LENIENT = 5


def load_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def id_diff(a, b):
    """b - a for frame ids; 16-bit ids wrap from 65535 to 1 (0 unused)."""
    if a > 65535 or b > 65535 or a == 0 or b == 0:
        return b - a
    fwd = (b - a) % 65535
    return fwd if fwd <= 32767 else fwd - 65535


class Run:
    """One run of one maad: its verdicts with frame ids, ids extended."""

    def __init__(self, msgs):
        self.msgs = [m for m in msgs if m["frame_id"] is not None]
        self.ext = []
        for m in self.msgs:
            self.ext.append(m["frame_id"] if not self.ext else
                            self.ext[-1] + id_diff(prev, m["frame_id"]))
            prev = m["frame_id"]
        self.delta = None     # absolute step = ext + delta, once placed
        self.placed_at = None  # index of the frame the bridge placed

    def index_of(self, frame_id):
        for i, m in enumerate(self.msgs):
            if m["frame_id"] == frame_id:
                return i
        return None

    def place(self, i, period):
        self.placed_at = i
        d = [round(m["t_capture_ns"] / period) - e
             for m, e in zip(self.msgs[i:i + ANCHOR], self.ext[i:i + ANCHOR])]
        self.delta = int(statistics.median(d))

    def skips(self, period):
        """(frame id, periods) where capture times moved on from frame ids
        for good: the fake camera skipped periods without a frame id."""
        out, base = [], self.delta
        d = [round(m["t_capture_ns"] / period) - e for m, e in zip(self.msgs, self.ext)]
        for i in range(self.placed_at or 0, len(d) - 4):
            if all(x != base for x in d[i:i + 5]) and len(set(d[i:i + 5])) == 1:
                out.append((self.msgs[i]["frame_id"], d[i] - base))
                base = d[i]
        return out


class Camera:
    def __init__(self, k, cfg):
        self.k, self.name, self.offset = k, cfg["name"], cfg["offset"]
        self.bit = 1 << k
        msgs = load_jsonl(cfg["verdicts"])
        self.dropped = {(m["seq"], m["frame_id"]) for m in
                        (load_jsonl(cfg["dropped"]) if cfg.get("dropped") else [])}
        self.runs, cur = [], []
        for m in msgs:
            if cur and m["seq"] <= cur[-1]["seq"]:
                self.runs.append(Run(cur))
                cur = []
            cur.append(m)
        if cur:
            self.runs.append(Run(cur))
        self.nplaced = 0
        self.by_step = {}       # absolute step -> message (placed runs only)
        self.dropped_steps = []
        self.undefined = []     # (from, to) absolute steps with no expectation
        self.lenient = []       # (from, to) steps whose verdict may have come too late
        self.silent = []        # (from, to) publication times (ns) the bridge called it down
        self.first = None       # first absolute step the bridge had placed

    def finish(self):
        for r in self.runs:
            if r.delta is None:
                continue
            steps = [e + r.delta for e in r.ext]
            if self.first is None:
                self.first = steps[r.placed_at]
            else:
                if r.placed_at:
                    self.undefined.append((steps[0], steps[r.placed_at] - 1))
                self.lenient.append((steps[r.placed_at], steps[r.placed_at] + LENIENT - 1))
            for m, st in zip(r.msgs, steps):
                if (m["seq"], m["frame_id"]) in self.dropped:
                    self.dropped_steps.append(st)
                else:
                    self.by_step[st] = m


def main():
    cfg = json.load(open(sys.argv[1]))
    period = int(round(1e9 / cfg["fps"]))
    cams = [Camera(k, c) for k, c in enumerate(cfg["cameras"])]
    byname = {c.name: c for c in cams}
    errors = []

    def err(s):
        errors.append(s)
        print("  FAIL: " + s)

    def note(s):
        print("  " + s)

    def done(facts):
        facts["errors"] = len(errors)
        print(json.dumps(facts))
        return 1 if errors else 0

    # -- The bridge's placements: each places the next run of that camera.
    place = re.compile(r"camera ([A-Za-z0-9_-]+): .*frame ([0-9]+) is step (-?[0-9]+)")
    consts = []
    for line in open(cfg["log"], errors="replace"):
        m = place.search(line)
        if not m or m.group(1) not in byname:
            continue
        c, fid, bstep = byname[m.group(1)], int(m.group(2)), int(m.group(3))
        run = i = None
        for j in range(c.nplaced, len(c.runs)):
            i = c.runs[j].index_of(fid)
            if i is not None:
                run, c.nplaced = c.runs[j], j + 1
                break
        if run is None:
            err("the bridge placed a frame the test never saw: " + line.strip())
            continue
        run.place(i, period)
        st = run.ext[i] + run.delta
        off = (run.msgs[i]["t_capture_ns"] - st * period) / 1e6
        if abs(off) > period / 1e6 / 4:
            note("NOTE: %s's frame %d, which the bridge placed the camera by, was captured "
                 "%.1f ms off its step (a fake camera's first frame after acquisition start "
                 "is off the frame period's grid, or its capture time jittered)" % (
                     c.name, fid, off))
        consts.append((bstep - st, "%s frame %d: step %d" % (c.name, fid, bstep)))
        for fid2, n in run.skips(period):
            note("NOTE: %s's fake camera skipped %d frame periods before frame %d without "
                 "using a frame id (it fell behind): parts of %s after it are off by %d "
                 "for the bridge and for this test alike" % (c.name, n, fid2, c.name, n))
    if not consts:
        err("maa-plc logged no placement (\"camera NAME: ... frame F is step S\")")
        return done({})
    note("placements: " + "; ".join(t for _, t in consts))
    if len({k for k, _ in consts}) != 1:
        err("the bridge put cameras on different steps from their capture times: "
            "step minus capture step %s" % [k for k, _ in consts])
    const = consts[0][0]  # bridge step = absolute step + const
    for c in cams:
        c.finish()
        if c.first is None:
            err("the bridge never placed camera " + c.name)
            return done({})

    # -- When the bridge called a camera down for its silence (a maad
    # stopped, or a machine so loaded that messages stalled past
    # heartbeat_timeout_ms): the verdicts published around that time may
    # find their parts decided as missing, camera down, fail-safe.
    hb_ns = cfg.get("heartbeat_timeout_ms", 800) * 1000000
    stamp = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z .*camera "
                       r"([A-Za-z0-9_-]+): (down: no message|up)")
    down_at = {}
    for line in open(cfg["log"], errors="replace"):
        m = stamp.search(line)
        if not m or m.group(3) not in byname:
            continue
        t = (calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) * 10**9 +
             int(m.group(2)) * 10**6)
        if m.group(4) != "up":
            down_at[m.group(3)] = t
        elif m.group(3) in down_at:
            byname[m.group(3)].silent.append((down_at.pop(m.group(3)) - hb_ns - 10**9, t))
    for name, t in down_at.items():
        byname[name].silent.append((t - hb_ns - 10**9, float("inf")))

    stop = cfg.get("stop_ns")
    late_ns = cfg.get("stop_margin_ms", 100) * 1000000

    def status(part, c):
        """(what camera c says of the part, whether the bridge may also
        have decided it without that verdict), or None where it is free."""
        st = part - const + c.offset
        if st < c.first or any(lo <= st <= hi for lo, hi in c.undefined):
            return None
        m = c.by_step.get(st)
        if m is None:
            return MISSING, False
        # The first verdicts of a camera placed again (a maad restarted, its
        # camera back) may find their parts decided while it was down; and
        # on SIGTERM the bridge decides what has not come as missing.
        optional = (any(lo <= st <= hi for lo, hi in c.lenient) or
                    any(lo <= m["t_publish_ns"] <= hi for lo, hi in c.silent) or
                    bool(stop and m["t_publish_ns"] > stop - late_ns))
        return m["verdict"], optional

    def outcome(says):
        """(decision, camera bits, verdict reason bits, missing bits)."""
        bits = reasons = missing = 0
        for c, v in zip(cams, says):
            if v == PASS:
                continue
            bits |= c.bit
            if v == MISSING:
                missing |= c.bit
            else:
                reasons |= R_REJECT if v == REJECT else R_UNINSPECTED
        return (REJECT if bits else PASS, bits, reasons, missing)

    def expect(part):
        """The outcomes the verdicts allow, the one they make first; None
        where the bridge's choice is free."""
        sts = [status(part, c) for c in cams]
        if None in sts:
            return None
        alts = [[v] + ([MISSING] if opt and v != MISSING else []) for v, opt in sts]
        combos = [[]]
        for a in alts:
            combos = [x + [v] for x in combos for v in a]
        return [outcome(x) for x in combos]

    def published(part):
        """When the part's last verdict was published; None if one is missing."""
        ts = []
        for c in cams:
            m = c.by_step.get(part - const + c.offset)
            if m is None:
                return None
            ts.append(m["t_publish_ns"])
        return max(ts)

    def describe(part):
        out = []
        for c in cams:
            m = c.by_step.get(part - const + c.offset)
            out.append("%s %s" % (c.name, "none" if m is None else "%s (frame %s, seq %s)" % (
                m["verdict"], m["frame_id"], m["seq"])))
        return ", ".join(out)

    # -- What the PLC received, in order.
    res = load_jsonl(cfg["results"])
    if not res:
        err("the PLC received no result")
        return done({})
    viol = [r for r in res if r.get("violations") or "counter_expected" in r]
    if viol:
        err("%d results broke the handshake, first: %s" % (len(viol), json.dumps(viol[0])))
    parts, dups, got = [], [], {}
    for i, r in enumerate(res):
        if i and r["part"] == res[i - 1]["part"]:
            if r["run"] != res[i - 1]["run"] and all(
                    r[k] == res[i - 1][k] for k in ("decision", "reasons", "cameras")):
                dups.append(r["part"])   # the one in flight when the PLC died
                continue
            err("part %d delivered twice (%s)" % (r["part"], "within one PLC run" if
                r["run"] == res[i - 1]["run"] else "with another result"))
            continue
        if parts and r["part"] != parts[-1] + 1:
            err("part %d follows part %d: parts out of order or lost" % (r["part"], parts[-1]))
        parts.append(r["part"])
        got.setdefault(r["part"], r)
    note("the PLC got %d results for parts %d..%d; twice, at a PLC restart: %s" % (
        len(res), min(parts), max(parts), dups or "none"))

    # -- Each part as the verdicts make it.
    span = range(min(parts) - 100, max(parts) + 100)
    defined = [p for p in span if expect(p) is not None]
    compared, wrong, lenient = 0, [], []
    kinds = {"pass": [], "reject": [], "missing": []}
    for p in defined:
        r = got.get(p)
        if r is None:
            continue
        compared += 1
        rd = {1: PASS, 2: REJECT}.get(r["decision"], "decision %d" % r["decision"])
        match = None
        for i, (dec, bits, reasons, missing) in enumerate(expect(p)):
            ok = rd == dec and r["cameras"] == bits
            if ok and dec == REJECT:
                ok = ((r["reasons"] & (R_REJECT | R_UNINSPECTED)) == reasons and
                      bool(missing) == bool(r["reasons"] & (R_MISSING | R_DOWN)) and
                      not r["reasons"] & ~0xF)
            elif ok:
                ok = r["reasons"] == 0
            if ok:
                match = i, missing
                break
        if match is None:
            wrong.append(p)
            if len(wrong) <= 10:
                dec, bits = expect(p)[0][:2]
                err("part %d: the PLC got %s (reasons %d, cameras %d), the verdicts make it %s "
                    "(cameras %d): %s" % (p, rd, r["reasons"], r["cameras"], dec, bits,
                                          describe(p)))
            continue
        if match[0]:
            lenient.append(p)
        kinds["missing" if match[1] else "reject" if rd == REJECT else "pass"].append(p)
    if len(wrong) > 10:
        err("... %d parts decided otherwise in all, %d..%d" % (len(wrong), wrong[0], wrong[-1]))
    note("%d parts compared with the verdicts, %d as expected: %d pass, %d reject on a "
         "verdict, %d reject on a missing verdict" % (
             compared, compared - len(wrong), len(kinds["pass"]), len(kinds["reject"]),
             len(kinds["missing"])))
    if lenient:
        note("decided without a verdict that came too late (a camera placed again, the "
             "bridge stopping, or a camera it called down): parts %s: %s" % (lenient, "; ".join(describe(p) for p in lenient)))
    if compared < 100:
        err("only %d parts could be compared" % compared)

    # -- No part lost: from the first part the verdicts define, every part
    # whose verdicts had all been published settle_ms before the bridge was
    # stopped reached the PLC (parts are decided in order, so every part
    # before such a one too).
    if defined and min(parts) > min(defined):
        err("parts %d..%d have verdicts from every camera but never reached the PLC "
            "(the first result it got is part %d)" % (min(defined), min(parts) - 1, min(parts)))
    if stop:
        settle = cfg.get("settle_ms", 1000) * 1000000
        ready = [p for p in defined if (published(p) or stop) < stop - settle]
        lost = [p for p in range(min(parts), max(ready, default=0) + 1) if p not in got]
        if lost:
            err("%d parts never reached the PLC although part %d's verdicts were all "
                "published %d ms before the bridge was stopped: %s" % (
                    len(lost), max(ready), settle // 1000000, lost[:20]))

    facts = {"compared": compared, "wrong": len(wrong), "const": const, "duplicates": dups,
             "parts": [min(parts), max(parts)], "missing_parts": kinds["missing"],
             "reject_parts": kinds["reject"], "pass_parts": len(kinds["pass"]), "lenient": lenient}
    for c in cams:
        facts[c.name] = {
            "dropped_parts": [st - c.offset + const for st in c.dropped_steps],
            "rejected_by": [p for p in defined if p in got and
                            expect(p)[0][1] & c.bit & ~expect(p)[0][3]],
            "missing_in": [p for p in defined if p in got and expect(p)[0][3] & c.bit],
        }
    return done(facts)


if __name__ == "__main__":
    sys.exit(main())
