"""test_watch.py — `maa watch` against a stand-in publisher speaking the
protocol of docs/protocol.md: JSON lines, --count, seq gaps, daemon restarts,
missing heartbeats, the summary on SIGTERM, --timeout, and --passes count
(passes counted, not listed: in a pipe as a line per run, on a terminal in
a status line rewritten in place).

Runs in a private network namespace (unshare -n, lo up); re-executes itself
there unless MAAD_TEST_NETNS is set.  MAA names the binary (default
build/maa)."""
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAA = os.environ.get("MAA", os.path.join(HERE, "..", "build", "maa"))
EP = "tcp://127.0.0.1:5555"

passed = failed = skipped = 0


def check(cond, what):
    global failed
    if not cond:
        print("  FAIL: " + what)
        failed += 1
    return cond


def run(fn):
    global passed
    before = failed
    try:
        fn()
    except Exception as e:  # a crash in a test is a failure of that test
        check(False, "%s raised %r" % (fn.__name__, e))
    if failed == before:
        passed += 1
        print("ok   " + fn.__name__)
    else:
        print("FAIL " + fn.__name__)
    sys.stdout.flush()


class Daemon:
    """A fake maad: an XPUB socket, so we know when the watcher subscribed."""

    def __init__(self, camera="cam0"):
        import zmq
        self.zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.bind(EP)
        self.camera = camera
        self.seq = 0

    def wait_subscriber(self):
        self.sock.RCVTIMEO = 5000
        return self.sock.recv()[0] == 1

    def verdict(self, verdict="pass", seq=None, mask=None):
        if seq is not None:
            self.seq = seq
        now = time.time_ns()
        msg = {"v": 1, "camera": self.camera, "seq": self.seq,
               "frame_id": 1000 + self.seq, "t_capture_ns": now - 3000000,
               "t_publish_ns": now, "verdict": verdict,
               "reason": {"pass": "score at or below threshold",
                          "reject": "score above threshold"}.get(
                              verdict, "ring overflow"),
               "score": None if verdict == "uninspected" else 1.25,
               "threshold": 2.5,
               "defects": [{"x": 1, "y": 2, "w": 3, "h": 4, "area": 9,
                            "cx": 4, "cy": 8, "cw": 12, "ch": 16}]
               if verdict == "reject" else [],
               "mask": {"format": "raw" if mask else "none",
                        "width": 4 if mask else 0,
                        "height": 4 if mask else 0}}
        parts = [("maad." + self.camera).encode(), json.dumps(msg).encode()]
        if mask:
            parts.append(bytes(16))
        self.sock.send_multipart(parts)
        self.seq += 1

    def heartbeat(self, **stats):
        msg = {"v": 1, "camera": self.camera, "t_ns": time.time_ns(),
               "seq_next": self.seq, "stats": dict({"pass": 0}, **stats)}
        self.sock.send_multipart([("maad.%s.heartbeat" % self.camera).encode(),
                                  json.dumps(msg).encode()])

    def close(self):
        self.sock.close(0)
        self.ctx.term()


class Lines:
    """A process's stdout, read by a thread as it comes, so that a test can
    wait for a line (with a deadline) instead of sleeping."""

    def __init__(self, stream):
        self.lines, self.eof = [], False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,),
                                       daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait(self, prefix, timeout):
        """True once a line starting with prefix has come."""
        def seen():
            return any(l.startswith(prefix) for l in self.lines)
        with self.cond:
            self.cond.wait_for(lambda: seen() or self.eof, timeout)
            return seen()

    def all(self):
        """Every line, once the stream has ended."""
        self.thread.join(10)
        with self.cond:
            return list(self.lines)


def watch(*args):
    return subprocess.Popen([MAA, "watch", EP] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_json_count():
    d = Daemon()
    w = watch("--json", "--count", "5", "--timeout", "10")
    try:
        check(d.wait_subscriber(), "watcher subscribed")
        d.heartbeat()
        for i in range(5):
            d.verdict("reject" if i == 2 else "pass", mask=(i == 1))
        out, err = w.communicate(timeout=15)
    finally:
        d.close()
    check(w.returncode == 0, "exit %s: %s" % (w.returncode, err))
    lines = out.splitlines()
    check(len(lines) == 5, "5 JSON lines, got %r" % lines)
    seqs = [json.loads(l)["seq"] for l in lines]
    check(seqs == [0, 1, 2, 3, 4], "seqs %r" % seqs)
    check(json.loads(lines[2])["verdict"] == "reject", lines[2])
    check("# summary: 5 frames: 4 pass, 1 reject, 0 uninspected; 0 seq gaps"
          in err, "summary on stderr: %r" % err)


def test_gaps_restart_heartbeat():
    d = Daemon()
    w = watch()
    out = Lines(w.stdout)
    try:
        check(d.wait_subscriber(), "watcher subscribed")
        d.heartbeat()
        for s in (0, 1, 2, 5, 6):
            d.verdict("pass", seq=s)
        d.verdict("uninspected")      # 7
        d.heartbeat()                 # seq_next 8: nothing lost
        d.seq = 10
        d.heartbeat()                 # seq_next 10: 8 and 9 lost
        d.verdict("reject", seq=0)    # a restarted daemon
        d.heartbeat()
        # Heartbeats stop until the watcher says so (after 2 s), then one
        # comes again.
        check(out.wait("# cam0: no heartbeat for", 20),
              "no 'no heartbeat' note in 20 s")
        d.heartbeat()
        check(out.wait("# cam0: heartbeat back after", 10),
              "no 'heartbeat back' note in 10 s")
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=10)
        err = w.stderr.read()
    finally:
        if w.poll() is None:
            w.kill()
        d.close()
    check(w.returncode == 0, "exit %s: %s" % (w.returncode, err))
    lines = [l for l in out.all() if not l.startswith("#")]
    notes = [l for l in out.all() if l.startswith("#")]
    check(len(lines) == 7, "7 verdict lines: %r" % lines)
    check(any("cam0 seq 5 frame 1005 pass" in l and "score 1.25/2.5" in l
              and "defects 0" in l and "latency 3.0 ms" in l for l in lines),
          "a verdict line: %r" % lines)
    check(any("uninspected" in l and "(ring overflow)" in l and "score -/2.5"
              in l for l in lines), "uninspected line: %r" % lines)
    check("# cam0: seq gap: 2 verdicts lost (seq 3..4)" in notes,
          "gap note: %r" % notes)
    check("# cam0: seq gap: 2 verdicts lost (seq 8..9)" in notes,
          "gap seen from a heartbeat: %r" % notes)
    check(any("maad restarted" in n for n in notes), "restart: %r" % notes)
    check(any(n.startswith("# cam0: no heartbeat for") for n in notes),
          "missing heartbeat: %r" % notes)
    check(any(n.startswith("# cam0: heartbeat back after") for n in notes),
          "heartbeat back: %r" % notes)
    check(notes and notes[-1].startswith(
        "# summary: 7 frames: 5 pass, 1 reject, 1 uninspected; 2 seq gaps "
        "(4 verdicts lost); 1 restarts; 1 heartbeat outages"),
        "summary: %r" % notes[-1:])


def test_drift_alarm():
    """maad's drift alarm, as its heartbeats carry it: a note when it is
    raised (naming the cause) and when it clears, none while it stays, none
    for a value it cannot have."""
    d = Daemon()
    w = watch()
    out = Lines(w.stdout)
    try:
        check(d.wait_subscriber(), "watcher subscribed")
        for alarm in (0, 0, 1, 1, 3, 7, "1", 0, 2):
            d.heartbeat(drift_alarm=alarm, drift_mean=0.5, drift_reject_rate=0.0)
        check(out.wait("# cam0: drift alarm: too many rejects", 10),
              "no note of the reject share in 10 s")
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=10)
    finally:
        if w.poll() is None:
            w.kill()
        d.close()
    notes = [l for l in out.all() if l.startswith("# cam0: drift")]
    tail = ': the parts or the pictures have changed since the calibration ' \
        '(docs/operations.md, "Drift alarm")'
    check(notes == ["# cam0: drift alarm: the passes' mean score has drifted" + tail,
                    "# cam0: drift alarm: the passes' mean score has drifted, too many "
                    "rejects" + tail,
                    "# cam0: drift alarm over",
                    "# cam0: drift alarm: too many rejects" + tail], "notes: %r" % notes)


# The stream the --passes tests send, then the lines a person should see.
PASS_RUN = ["pass"] * 5 + ["reject"] + ["pass"] * 3 + ["uninspected", "pass"]
TIME = r"\d\d:\d\d:\d\d\.\d\d\d"
SUMMARY = "# summary: 11 frames: 9 pass, 1 reject, 1 uninspected; 0 seq gaps"


def send_pass_run(d):
    check(d.wait_subscriber(), "watcher subscribed")
    d.heartbeat()
    for v in PASS_RUN:
        d.verdict(v)


def test_passes_count():
    """Not on a terminal: each run of passes is one note, in its place
    between the verdicts that are printed."""
    d = Daemon()
    w = watch("--passes", "count", "--count", "11", "--timeout", "10")
    try:
        send_pass_run(d)
        out, err = w.communicate(timeout=15)
    finally:
        d.close()
    check(w.returncode == 0, "exit %s: %s" % (w.returncode, err))
    lines = out.splitlines()
    want = [r"# 5 passes, captured %s to %s$" % (TIME, TIME),
            r"%s cam0 seq 5 frame 1005 reject .*\(score above threshold\)$" % TIME,
            r"# 3 passes, captured %s to %s$" % (TIME, TIME),
            r"%s cam0 seq 9 frame 1009 uninspected .*\(ring overflow\)$" % TIME,
            r"# 1 pass, captured %s to %s$" % (TIME, TIME),
            re.escape(SUMMARY)]
    check(len(lines) == len(want) and all(re.match(p, l) for p, l in zip(want, lines)),
          "lines:\n    %s" % "\n    ".join(lines))


def screen(raw):
    """What a terminal shows after raw: \\r returns to the line's start,
    ESC [ K clears to its end, text overwrites."""
    rows, row, col = [], [], 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            del row[col:]
            i += 3
            continue
        ch = raw[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            rows.append("".join(row))
            row, col = [], 0
        else:
            row[col:col + 1] = [ch]
            col += 1
        i += 1
    if row:
        rows.append("".join(row))
    return rows


def test_passes_count_terminal():
    """On a terminal: one status line, rewritten in place, counts the
    passes; the reject and the uninspected verdict stay on the screen
    above it."""
    master, slave = pty.openpty()
    d = Daemon()
    w = subprocess.Popen([MAA, "watch", EP, "--passes", "count", "--count", "11",
                          "--timeout", "10"], stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end closed
                return
            if not b:
                return
            chunks.append(b)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        send_pass_run(d)
        w.wait(timeout=15)
        reader.join(10)
    finally:
        if w.poll() is None:
            w.kill()
        d.close()
        os.close(master)
    check(w.returncode == 0, "exit %s: %s" % (w.returncode, w.stderr.read()))
    raw = b"".join(chunks).decode()
    rows = screen(raw)
    want = [r"%s cam0 seq 5 frame 1005 reject " % TIME,
            r"%s cam0 seq 9 frame 1009 uninspected " % TIME,
            r"# 9 passes; last: cam0 seq 10 frame 1010 at %s$" % TIME,
            re.escape(SUMMARY)]
    check(len(rows) == len(want) and all(re.match(p, r) for p, r in zip(want, rows)),
          "screen:\n    %s\nraw: %r" % ("\n    ".join(rows), raw))
    check("\r# " in raw and "\x1b[K" in raw, "no status line rewritten in place: %r" % raw)


def test_timeout_and_usage():
    w = subprocess.run([MAA, "watch", EP, "--count", "3", "--timeout", "0.5"],
                       capture_output=True, text=True, timeout=10)
    check(w.returncode == 1, "timeout exit %d" % w.returncode)
    check("timeout after 0.5 s: 0 of 3 verdicts" in w.stdout, w.stdout)
    w = subprocess.run([MAA, "watch"], capture_output=True, text=True,
                       timeout=10)
    check(w.returncode == 2 and "usage: maa watch" in w.stderr, w.stderr)
    w = subprocess.run([MAA, "watch", EP, "--count", "x"],
                       capture_output=True, text=True, timeout=10)
    check(w.returncode == 2 and '--count "x" is not an integer' in w.stderr, w.stderr)
    w = subprocess.run([MAA, "watch", EP, "--passes", "some"],
                       capture_output=True, text=True, timeout=10)
    check(w.returncode == 2 and "--passes some: want each or count" in w.stderr, w.stderr)
    w = subprocess.run([MAA, "watch", "--help"], capture_output=True, text=True,
                       timeout=10)
    check("--passes" in w.stdout, "--passes not in --help: %s" % w.stdout)


def main():
    global skipped, failed
    if not os.environ.get("MAAD_TEST_NETNS"):
        os.environ["MAAD_TEST_NETNS"] = "1"
        if subprocess.run(["unshare", "-n", "true"],
                          stderr=subprocess.DEVNULL).returncode == 0:
            os.execvp("unshare", ["unshare", "-n", "sh", "-c",
                                  'ip link set lo up && exec "$0" "$@"',
                                  sys.executable, os.path.abspath(__file__)])
        print("  SKIP: unshare -n is not permitted here")
        skipped = 6
    # A program missing is a broken build, not a test to skip.
    elif not os.access(MAA, os.X_OK):
        print("FAIL build: %s is not built: run make" % MAA)
        failed += 1
    elif subprocess.run([MAA, "watch", "--help"], capture_output=True,
                        timeout=10).returncode != 0:
        print("FAIL build: %s has no watch command (maa.c does not dispatch "
              "maa_cmd_watch)" % MAA)
        failed += 1
    else:
        run(test_json_count)
        run(test_gaps_restart_heartbeat)
        run(test_drift_alarm)
        run(test_passes_count)
        run(test_passes_count_terminal)
        run(test_timeout_and_usage)
    if skipped:
        print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    else:
        print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
