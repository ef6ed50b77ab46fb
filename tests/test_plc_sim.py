"""test_plc_sim.py — scripts/plc-sim.py, the simulated PLC that the PLC
bridge's end-to-end test (tests/e2e_plc.sh) and commissioning engineers use,
driven by two Modbus TCP clients: pymodbus's and libmodbus (the library
maa-plc uses, through ctypes).  The handshake of the register map (a result
taken when R+0 gets a new counter, acknowledged by copying it to R+6, at once,
late or never), coil and health word changes recorded with CLOCK_REALTIME
times, the handshake rules a client breaks recorded as violations, files
appended to across a restart, and its errors (port taken, --out not
writable, bad options).

Listens on a free port of 127.0.0.1 (--port 0), so it needs no namespace."""
import ctypes
import ctypes.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "..", "scripts", "plc-sim.py")
PY = os.environ.get("PYTHON", "/usr/bin/python3")

passed = failed = problems = 0


def check(cond, what):
    global problems
    if not cond:
        print("  FAIL: " + what)
        problems += 1
    return cond


def run(fn):
    """One test: passed, or failed once however many of its checks failed."""
    global passed, failed
    before = problems
    try:
        fn()
    except Exception as e:  # a crash in a test is a failure of that test
        import traceback
        traceback.print_exc()
        check(False, "%s raised %r" % (fn.__name__, e))
    if problems == before:
        passed += 1
        print("ok   " + fn.__name__)
    else:
        failed += 1
        print("FAIL " + fn.__name__)


class Sim:
    def __init__(self, *args, port=0, out=None):
        self.out = out or tempfile.mkdtemp(prefix="plcsim.")
        self.p = subprocess.Popen([PY, SIM, "--port", str(port), "--out", self.out] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        m = re.match(r"listening on ([0-9.]+):(\d+)$", line.strip())
        if not m:
            raise RuntimeError("no listening line: %r %s" % (line, self.p.stderr.read()))
        self.port = int(m.group(2))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=10)
        return self.p.returncode, out, err

    def results(self):
        return load(os.path.join(self.out, "results.jsonl"))

    def events(self, kind=None):
        ev = load(os.path.join(self.out, "events.jsonl"))
        return [e for e in ev if kind is None or e["kind"] == kind]


def load(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def client(port):
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port)
    assert c.connect()
    return c


def regs(c, a, n):
    r = c.read_holding_registers(a, n)
    assert not r.isError(), r
    return r.registers


def wait(cond, secs=3.0):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_result_taken_and_acknowledged():
    s = Sim()
    c = client(s.port)
    t0 = time.time_ns()
    c.write_registers(0, [1, 0x0001, 0x0002, 2, 4 | 1, 0b101])
    check(regs(c, 6, 1) == [1], "R+6 is the counter at once without --ack-delay-ms")
    c.write_registers(0, [2, 0, 9, 1, 0, 0])
    c.write_registers(0, [2, 0, 9, 1, 0, 0])  # the same counter again: not a new result
    c.close()
    rc, out, err = s.stop()
    check(rc == 0, "exit status %d after SIGTERM: %s" % (rc, err))
    r = s.results()
    check(len(r) == 2, "two results, not %d" % len(r))
    check(r[0]["counter"] == 1 and r[0]["part"] == 0x10002 and r[0]["decision"] == 2 and
          r[0]["verdict"] == "reject" and r[0]["reasons"] == 5 and r[0]["cameras"] == 5,
          "first result as written: %s" % r[0])
    check(r[1]["part"] == 9 and r[1]["verdict"] == "pass", "second result: %s" % r[1])
    check(all("violations" not in x and "counter_expected" not in x for x in r),
          "no violation in a correct handshake: %s" % r)
    check(t0 <= r[0]["t_ns"] <= time.time_ns(), "result time is CLOCK_REALTIME")
    check("result 1: part 65538 reject (reasons reject+missing, cameras 0x5)" in out,
          "a person reads the result on stdout: %r" % out)
    check([e["kind"] for e in s.events()] == ["start", "connect", "disconnect", "stop"],
          "start, connect, disconnect, stop events: %s" % s.events())


def test_ack_delay_and_no_ack():
    s = Sim("--ack-delay-ms", "300", "--mailbox", "100")
    c = client(s.port)
    c.write_registers(100, [1, 0, 5, 1, 0, 0])
    t = time.monotonic()
    check(regs(c, 106, 1) == [0], "not acknowledged before the delay")
    check(wait(lambda: regs(c, 106, 1) == [1]), "acknowledged after the delay")
    check(time.monotonic() - t >= 0.25, "acknowledged no sooner than --ack-delay-ms")
    c.close()
    s.stop()
    s = Sim("--no-ack")
    c = client(s.port)
    c.write_registers(0, [1, 0, 5, 1, 0, 0])
    time.sleep(0.2)
    check(regs(c, 6, 1) == [0], "--no-ack: R+6 stays 0")
    c.write_registers(0, [2, 0, 6, 1, 0, 0])
    c.close()
    s.stop()
    r = s.results()
    check(len(r) == 2 and "violations" not in r[0], "first result fine: %s" % r)
    check(len(r) == 2 and any("before counter 1 was acknowledged" in v
                              for v in r[1].get("violations", [])),
          "a result written before the last was acknowledged is a violation: %s" % r)


def test_handshake_violations():
    s = Sim()
    c = client(s.port)
    c.write_registers(0, [1, 0, 1, 1, 0, 0])
    c.write_registers(0, [3, 0, 2, 1, 0, 0])    # counter skips 2
    c.write_register(0, 4)                      # R+0 alone, FC06
    c.write_registers(0, [5, 0, 3])             # FC16 but only R+0..R+2
    c.write_registers(0, [65535, 0, 4, 1, 0, 0])
    c.write_registers(0, [1, 0, 5, 1, 0, 0])    # 65535 wraps to 1: fine
    c.close()
    s.stop()
    r = s.results()
    check([x["counter"] for x in r] == [1, 3, 4, 5, 65535, 1], "counters %s" % r)
    check(r[1].get("counter_expected") == 2, "a skipped counter is marked: %s" % r[1])
    check(any("not one FC16" in v for v in r[2].get("violations", [])),
          "FC06 of R+0 is a violation: %s" % r[2])
    check(any("not one FC16" in v for v in r[3].get("violations", [])),
          "a short FC16 is a violation: %s" % r[3])
    check("counter_expected" not in r[5] and "violations" not in r[5],
          "65535 -> 1 is the wrap: %s" % r[5])


def test_coils_and_health():
    s = Sim("--healthy-coil", "10", "--reject-coil", "11", "--mailbox", "20")
    c = client(s.port)
    for v in (False, True, True, False, True):
        c.write_coil(10, v)
    c.write_coil(11, True)
    c.write_coil(11, False)
    c.write_coil(12, True)                     # not one of ours: not recorded
    c.write_registers(27, [1, 0, 0])
    c.write_registers(27, [1, 0, 0])           # unchanged: not recorded
    c.write_registers(27, [2, 3, 1])
    check(c.read_coils(10, 2).bits[:2] == [True, False], "coils read back")
    c.close()
    s.stop()
    coils = [(e["coil"], e["address"], e["value"]) for e in s.events("coil")]
    check(coils == [("healthy", 10, 1), ("healthy", 10, 0), ("healthy", 10, 1),
                    ("reject", 11, 1), ("reject", 11, 0)], "coil changes %s" % coils)
    h = [(e["word"], e["queued"], e["late"]) for e in s.events("health")]
    check(h == [(1, 0, 0), (2, 3, 1)], "health word changes %s" % h)
    check(s.results() == [], "no result from coils and health")


def test_restart_appends():
    s = Sim()
    c = client(s.port)
    c.write_registers(0, [1, 0, 1, 1, 0, 0])
    c.close()
    s.stop()
    time.sleep(0.05)
    s2 = Sim(out=s.out, port=s.port)            # the same port at once
    c = client(s2.port)
    check(regs(c, 0, 7) == [0] * 7, "a restarted PLC starts with cleared registers")
    c.write_registers(0, [1, 0, 2, 1, 0, 0])
    c.close()
    s2.stop()
    r = s2.results()
    check([x["part"] for x in r] == [1, 2], "results of both runs in one file: %s" % r)
    check(len(r) == 2 and r[0]["run"] != r[1]["run"], "the runs told apart")
    check([e["kind"] for e in s2.events()].count("start") == 2, "two start events")


def test_errors():
    s = Sim()
    p = subprocess.run([PY, SIM, "--port", str(s.port), "--out", s.out],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "cannot listen on 127.0.0.1:%d" % s.port in p.stderr,
          "a port in use: exit 1 and why: %d %r" % (p.returncode, p.stderr))
    s.stop()
    f = os.path.join(s.out, "afile")
    open(f, "w").close()
    p = subprocess.run([PY, SIM, "--port", "0", "--out", f], capture_output=True, text=True,
                       timeout=10)
    check(p.returncode == 1 and "cannot write to --out" in p.stderr,
          "--out not a directory: exit 1 and why: %r" % p.stderr)
    for bad in (["--mailbox", "65527"], ["--reject-coil", "0"], ["--port", "70000"],
                ["--ack-delay-ms", "-1"], ["--bogus"]):
        p = subprocess.run([PY, SIM] + bad, capture_output=True, text=True, timeout=10)
        check(p.returncode == 2 and "usage:" in p.stderr and "error:" in p.stderr,
              "%s: usage error: %d %r" % (bad, p.returncode, p.stderr))
    p = subprocess.run([PY, SIM, "--help"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and "register map" in p.stdout, "--help shows the register map")


def test_libmodbus_client():
    """The same handshake from libmodbus, the library maa-plc is built on."""
    name = ctypes.util.find_library("modbus")
    if not check(name, "libmodbus not found"):
        return
    lib = ctypes.CDLL(name)
    lib.modbus_new_tcp.restype = ctypes.c_void_p
    lib.modbus_new_tcp.argtypes = [ctypes.c_char_p, ctypes.c_int]
    for f in ("modbus_connect", "modbus_close", "modbus_free", "modbus_set_slave"):
        getattr(lib, f).argtypes = [ctypes.c_void_p] + ([ctypes.c_int] if f.endswith("slave")
                                                        else [])
    lib.modbus_write_registers.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                           ctypes.POINTER(ctypes.c_uint16)]
    lib.modbus_read_registers.argtypes = lib.modbus_write_registers.argtypes
    lib.modbus_write_bit.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    s = Sim("--mailbox", "40")
    ctx = lib.modbus_new_tcp(b"127.0.0.1", s.port)
    lib.modbus_set_slave(ctx, 7)
    check(lib.modbus_connect(ctx) == 0, "libmodbus connects")
    w = (ctypes.c_uint16 * 6)(1, 2, 3, 2, 8, 2)
    check(lib.modbus_write_registers(ctx, 40, 6, w) == 6, "FC16 of six registers")
    rd = (ctypes.c_uint16 * 10)()
    check(lib.modbus_read_registers(ctx, 40, 10, rd) == 10, "FC03 of ten registers")
    check(list(rd)[:7] == [1, 2, 3, 2, 8, 2, 1], "registers with the acknowledge: %s" % list(rd))
    check(lib.modbus_write_bit(ctx, 0, 1) == 1, "FC05")
    lib.modbus_close(ctx)
    lib.modbus_free(ctx)
    s.stop()
    r = s.results()
    check(len(r) == 1 and r[0]["part"] == 2 << 16 | 3 and r[0]["reasons"] == 8 and
          "violations" not in r[0], "libmodbus's result: %s" % r)
    check([e["value"] for e in s.events("coil")] == [1], "libmodbus's coil")


for t in (test_result_taken_and_acknowledged, test_ack_delay_and_no_ack,
          test_handshake_violations, test_coils_and_health, test_restart_appends, test_errors,
          test_libmodbus_client):
    run(t)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
