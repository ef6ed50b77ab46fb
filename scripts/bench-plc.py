#!/usr/bin/python3
"""bench-plc.py — maa-plc's latency, verdict in to mailbox written, against a
bridge a line would otherwise write itself, in the same run.

Three synthetic maad publishers (ZeroMQ PUB, verdicts in maad's v2 format,
frame ids and capture times of one index pulse, cameras at offsets 0, 1, 2)
send PARTS parts at RATE parts/s.  The PLC acknowledges every result at
once: libmodbus's server (build/tests/helper_modbus_plc) and pymodbus's
(scripts/plc-sim.py), one after the other.  First maa-plc bridges them; then the
competitor: a straightforward Python bridge (pyzmq + pymodbus's client),
matching by frame id and doing the same handshake (FC16 R+0..R+5, poll R+6).
Both measure the same interval: from receiving the verdict that completes a
part to the PLC's response to the mailbox write.  Prints p50/p99/max for
both and their ratio; checks that every part reached the PLC in order.

  scripts/bench-plc.py [--parts 10000] [--rate 100] [--plc libmodbus,pymodbus]
                       [--skip-competitor]

Not a test: timings depend on the machine.  docs/plc.md records a run."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable or "/usr/bin/python3"
CAMERAS = [("groove", 0), ("cylinder", 1), ("hook", 2)]
MAILBOX = 0


def verdict_json(cam, seq, frame_id, t_ns, verdict):
    # The fields and size of a real maad v2 verdict (docs/protocol.md).
    judged = verdict != "uninspected"
    return json.dumps({
        "v": 2, "camera": cam, "seq": seq, "frame_id": frame_id, "t_capture_ns": t_ns,
        "t_publish_ns": time.time_ns(), "verdict": verdict,
        "reason": "score at or below threshold, no defect region in the mask",
        "score": 0.0071 if judged else None, "threshold": 0.0075, "rule": "either",
        "evidence": [] if verdict == "pass" else ["score"], "mask_peak": 0.0002,
        "mask_threshold": 0.00027, "defects": [],
        "mask": {"format": "none", "width": 0, "height": 0}}, separators=(",", ":"))


def feed(endpoints, parts, rate):
    """The three maad publishers: heartbeats for 2 s (subscribers join),
    then one verdict per camera per step; every 7th part rejected by
    camera 1.  Returns when the last step is sent."""
    ctx = zmq.Context()
    socks = []
    for ep in endpoints:
        s = ctx.socket(zmq.PUB)
        s.setsockopt(zmq.SNDHWM, 0)
        s.bind(ep)
        socks.append(s)
    ids = [100, 65000, 7]
    seqs = [0, 0, 0]

    def heartbeats():
        for (cam, _), s, q in zip(CAMERAS, socks, seqs):
            s.send_multipart([f"maad.{cam}.heartbeat".encode(), json.dumps(
                {"v": 2, "camera": cam, "t_ns": time.time_ns(), "seq_next": q,
                 "stats": {}}).encode()])

    t_end = time.monotonic() + 2
    while time.monotonic() < t_end:
        heartbeats()
        time.sleep(0.2)
    period = 1.0 / rate
    steps = parts + max(o for _, o in CAMERAS)
    t0 = time.monotonic()
    last_hb = t0
    for step in range(steps):
        wait = t0 + step * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        t_ns = time.time_ns()
        for k, ((cam, off), s) in enumerate(zip(CAMERAS, socks)):
            part = step - off
            v = "reject" if k == 1 and part % 7 == 3 else "pass"
            s.send_multipart([f"maad.{cam}".encode(),
                              verdict_json(cam, seqs[k], ids[k], t_ns, v).encode()])
            seqs[k] += 1
            ids[k] = 1 if ids[k] == 65535 else ids[k] + 1
        if time.monotonic() - last_hb > 0.5:
            heartbeats()
            last_hb = time.monotonic()
    for _ in range(5):
        heartbeats()
        time.sleep(0.2)
    for s in socks:
        s.close(linger=1000)
    ctx.term()


def start_plc(kind, port, out):
    """The PLC: libmodbus's server (build/tests/helper_modbus_plc, answers
    in microseconds) or pymodbus's (scripts/plc-sim.py, a
    quarter of a millisecond and a longer tail, more like a busy PLC)."""
    os.makedirs(out, exist_ok=True)
    if kind == "libmodbus":
        cmd = [os.path.join(ROOT, "build/tests/helper_modbus_plc"), str(port), str(MAILBOX),
               os.path.join(out, "results.jsonl")]
    else:
        cmd = [PY, os.path.join(ROOT, "scripts/plc-sim.py"), "--port", str(port), "--quiet",
               "--mailbox", str(MAILBOX), "--out", out]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    if "listening" not in line:
        sys.exit(f"bench-plc: the {kind} PLC did not start: {line}{p.stdout.read()}")
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()


def received(out):
    path = os.path.join(out, "results.jsonl")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def run_maa_plc(tmp, endpoints, port, args):
    cfg = os.path.join(tmp, "plc.yaml")
    with open(cfg, "w") as f:
        f.write("line:\n  name: bench\n  deadline_ms: 1000\n  sync_tolerance_ms: 2\n"
                f"plc:\n  address: 127.0.0.1\n  port: {port}\n  mailbox_register: {MAILBOX}\n"
                "cameras:\n")
        for (cam, off), ep in zip(CAMERAS, endpoints):
            f.write(f"  - name: {cam}\n    endpoint: \"{ep}\"\n    offset: {off}\n")
        f.write("log:\n  level: notice\n  summary_interval_s: 3600\n")
    log = open(os.path.join(tmp, "maa-plc.log"), "w+")
    p = subprocess.Popen([os.path.join(ROOT, "build/maa-plc"), "--config", cfg],
                         stdout=log, stderr=subprocess.STDOUT)
    feed(endpoints, args.parts, args.rate)
    time.sleep(1)
    stop(p)
    log.seek(0)
    text = log.read()
    m = re.search(r"final: .*latency p50 ([\d.]+) ms p99 ([\d.]+) ms max ([\d.]+) ms", text)
    if not m:
        sys.exit("bench-plc: no final line from maa-plc:\n" + text[-2000:])
    return [float(x) for x in m.groups()], text


def competitor(endpoints, port, parts, result):
    """What a line would write itself: one loop, pyzmq and pymodbus's
    synchronous client, steps from frame ids counted from each camera's
    first frame, the same handshake as maa-plc."""
    from pymodbus.client import ModbusTcpClient
    ctx = zmq.Context()
    socks = []
    for (cam, _), ep in zip(CAMERAS, endpoints):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, f"maad.{cam}".encode())
        s.connect(ep)
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    client = ModbusTcpClient("127.0.0.1", port=port)
    client.connect()
    counter = client.read_holding_registers(MAILBOX, 1, slave=1).registers[0]
    first = [None] * 3
    got = {}
    next_part = 0  # every camera's first frame is of the same step
    lat = []
    done = 0
    deadline = time.monotonic() + parts / 50 + 30
    while done < parts and time.monotonic() < deadline:
        for s, _ in poller.poll(100):
            k = socks.index(s)
            topic, body = s.recv_multipart()[:2]
            if topic.endswith(b".heartbeat"):
                continue
            t_in = time.monotonic()
            m = json.loads(body)
            if first[k] is None:
                first[k] = m["frame_id"]
            d = (m["frame_id"] - first[k]) % 65535  # ids skip 0
            got[(d - CAMERAS[k][1], k)] = m["verdict"]
            while all((next_part, j) in got for j in range(3)):
                reject = any(got.pop((next_part, j)) != "pass" for j in range(3))
                counter = 1 if counter == 65535 else counter + 1
                client.write_registers(MAILBOX, [counter, next_part >> 16, next_part & 0xFFFF,
                                                 2 if reject else 1, 1 if reject else 0, 0],
                                       slave=1)
                lat.append((time.monotonic() - t_in) * 1000)
                while client.read_holding_registers(MAILBOX + 6, 1,
                                                    slave=1).registers[0] != counter:
                    pass
                next_part += 1
                done += 1
    client.close()
    for s in socks:
        s.close(0)
    ctx.term()
    result.extend(lat)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--port", type=int, default=15020)
    ap.add_argument("--plc", default="libmodbus,pymodbus",
                    help="the PLC servers to run against, comma-separated")
    ap.add_argument("--skip-competitor", action="store_true")
    args = ap.parse_args()
    for f in ("build/maa-plc", "build/tests/helper_modbus_plc"):
        if not os.access(os.path.join(ROOT, f), os.X_OK):
            sys.exit(f"bench-plc: {f} missing: run make")
    eps = [f"tcp://127.0.0.1:{args.port + 1 + k}" for k in range(3)]
    print(f"bench-plc: {args.parts} parts at {args.rate:g} parts/s, 3 cameras (offsets 0, 1, 2), "
          f"loopback; latency = verdict in to the PLC's reply to the mailbox write")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.plc.split(","):
            out = os.path.join(tmp, kind + "-maa")
            plc = start_plc(kind, args.port, out)
            try:
                (p50, p99, mx), _ = run_maa_plc(tmp, eps, args.port, args)
            finally:
                stop(plc)
            parts = [r["part"] for r in received(out)]
            # maa-plc numbers the feed's first step 2 (the largest offset):
            # its parts 0, 1 and the last two are incomplete (missing), the
            # rest are the feed's parts.
            ok = parts == list(range(args.parts + 4))
            rows.append((kind, "maa-plc", p50, p99, mx,
                         f"{len(parts)} results, {'every part in order' if ok else 'NOT IN ORDER'}"))
            if args.skip_competitor:
                continue
            out = os.path.join(tmp, kind + "-py")
            plc = start_plc(kind, args.port, out)
            lat = []
            th = threading.Thread(target=competitor,
                                  args=(eps, args.port, args.parts, lat))
            try:
                th.start()
                time.sleep(0.5)
                feed(eps, args.parts, args.rate)
                th.join()
            finally:
                stop(plc)
            rows.append((kind, "python bridge", pct(lat, 0.5), pct(lat, 0.99),
                         max(lat) if lat else float("nan"), f"{len(lat)} results"))
    print(f"{'PLC server':<11} {'bridge':<14} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, who, p50, p99, mx, note in rows:
        print(f"{kind:<11} {who:<14} {p50:8.3f} {p99:8.3f} {mx:8.3f}  {note}")
    for kind in args.plc.split(","):
        mine = [r for r in rows if r[0] == kind and r[1] == "maa-plc"][0]
        other = [r for r in rows if r[0] == kind and r[1] != "maa-plc"]
        if other:
            print(f"{kind}: python / maa-plc: p50 {other[0][2] / mine[2]:.2f}x, "
                  f"p99 {other[0][3] / mine[3]:.2f}x")
        print(f"{kind}: target p99 <= 2 ms: {'met' if mine[3] <= 2 else 'MISSED'} "
              f"({mine[3]:.3f} ms)")


if __name__ == "__main__":
    main()
