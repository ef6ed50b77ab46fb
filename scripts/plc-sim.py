#!/usr/bin/python3
"""plc-sim — a simulated PLC for maa-plc, the PLC bridge (docs/plc.md).

A real Modbus TCP server (pymodbus) with holding registers and coils, running
"the PLC program" of the bridge's handshake:

  - when the bridge writes a new result counter to R+0 (R = --mailbox), the
    result (R+0..R+5: counter, part number, decision, reasons, cameras) is
    appended as one JSON line to DIR/results.jsonl, and after --ack-delay-ms
    the counter is copied to R+6 (acknowledge);
  - every change of the healthy coil and of the reject coil, and of the
    health word (R+7, with R+8 queued and R+9 late), every client connection
    and disconnection, and the simulator's own start and stop are appended as
    JSON lines to DIR/events.jsonl, each with "t_ns" (CLOCK_REALTIME).

The files are appended to, so a simulator restarted with the same --out adds
to them; each line carries "run" (the start time of the simulator that wrote
it) to tell runs apart.  A human summary of the same goes to stdout.

Registers and coils are 0-based PDU addresses, as in maa-plc's configuration
(plc.mailbox_register, plc.healthy_coil, plc.reject_coil).  Every unit id is
answered.

Example, to try maa-plc without a PLC:

    scripts/plc-sim.py --port 1502 --out /tmp/plc
    # maa-plc's config: plc: {address: "127.0.0.1", port: 1502}
    tail -f /tmp/plc/results.jsonl /tmp/plc/events.jsonl

Exit status: 0 after SIGTERM or SIGINT, 1 when it cannot listen or write its
files, 2 on a usage error.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

try:
    from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                    ModbusSlaveContext)
    from pymodbus.server.async_io import ModbusConnectedRequestHandler, ModbusTcpServer
except ImportError as e:  # pragma: no cover
    sys.exit("plc-sim: needs pymodbus 3 (Debian: apt-get install python3-pymodbus; "
             "run it with /usr/bin/python3): %s" % e)

PROG = "plc-sim"
DECISIONS = {1: "pass", 2: "reject"}
REASON_BITS = ((1, "reject"), (2, "uninspected"), (4, "missing"), (8, "down"))

# Modbus function codes as pymodbus hands them to the data store.
FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_COILS, FC_WRITE_REGISTERS = 5, 6, 15, 16
FC_READ_WRITE_REGISTERS = 23


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def reasons_text(bits):
    names = [n for b, n in REASON_BITS if bits & b]
    if bits & ~0xF:
        names.append("0x%x" % (bits & ~0xF))
    return "+".join(names) or "-"


class Plc:
    """The PLC's memory and program."""

    def __init__(self, args, results, events, loop):
        self.a = args
        self.results = results
        self.events = events
        self.loop = loop
        self.run = now_ns()
        self.hr = ModbusSequentialDataBlock(0, [0] * 65536)
        self.co = ModbusSequentialDataBlock(0, [False] * 65536)
        self.counter = 0          # the last counter taken from R+0
        self.taken = 0            # results taken
        self.ack_pending = None   # TimerHandle of an acknowledgement to come
        self.health = None        # (R+7, R+8, R+9) last written
        self.prev_coils = {}      # coil address: last value

    # -- records

    def record(self, f, obj):
        obj = dict(obj, run=self.run)
        f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        f.flush()

    def say(self, text):
        if not self.a.quiet:
            print(text, flush=True)

    def event(self, kind, say=None, **kw):
        self.record(self.events, dict(kind=kind, t_ns=now_ns(), **kw))
        if say:
            self.say(say)

    # -- the program, run on every write a client makes

    def written(self, fc, address, values):
        t = now_ns()
        if fc in (FC_WRITE_COIL, FC_WRITE_COILS):
            self.coils_written(t, address, values)
        elif fc in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS, FC_READ_WRITE_REGISTERS):
            self.registers_written(t, fc, address, len(values))

    def coils_written(self, t, address, values):
        for i, v in enumerate(values):
            a = address + i
            if a == self.a.healthy_coil:
                kind = "healthy"
            elif a == self.a.reject_coil:
                kind = "reject"
            else:
                continue
            v = bool(v)
            if v != self.prev_coils.get(a, False):
                self.prev_coils[a] = v
                self.record(self.events, dict(kind="coil", coil=kind, address=a,
                                              value=int(v), t_ns=t))
                if kind == "healthy" or not self.a.quiet_pulses:
                    self.say("coil %s (%d) -> %d" % (kind, a, v))

    def registers_written(self, t, fc, address, count):
        r = self.a.mailbox
        end = address + count
        if address <= r < end:
            self.mailbox_written(t, fc, address, count)
        if address <= r + 7 < end or address <= r + 8 < end or address <= r + 9 < end:
            h = tuple(self.hr.getValues(r + 7, 3))
            if h != self.health:
                self.health = h
                self.record(self.events, dict(kind="health", word=h[0], queued=h[1], late=h[2],
                                              t_ns=t))

    def mailbox_written(self, t, fc, address, count):
        r = self.a.mailbox
        m = self.hr.getValues(r, 7)
        counter = m[0]
        if counter == self.counter:
            return  # the same result again: not a new one
        expect = self.counter % 65535 + 1 if self.counter else None
        notes = []
        # The spec's handshake: R+0..R+5 in one FC16 request ...
        if fc != FC_WRITE_REGISTERS or address > r or address + count < r + 6:
            notes.append("not one FC16 write of R+0..R+5 (fc %d, %d registers from %d)"
                         % (fc, count, address))
        # ... and only once the last one was acknowledged.
        if self.counter and m[6] != self.counter:
            notes.append("written before counter %d was acknowledged (R+6 = %d)"
                         % (self.counter, m[6]))
        if counter == 0:
            notes.append("counter 0")
        part = m[1] << 16 | m[2]
        res = dict(counter=counter, part=part, decision=m[3],
                   verdict=DECISIONS.get(m[3], "invalid"), reasons=m[4], cameras=m[5],
                   t_ns=t)
        if expect is not None and counter != expect:
            res["counter_expected"] = expect
        if notes:
            res["violations"] = notes
        self.record(self.results, res)
        self.counter = counter
        self.taken += 1
        self.say("result %d: part %d %s%s%s" % (
            counter, part, res["verdict"],
            "" if m[3] == 1 else " (reasons %s, cameras 0x%x)" % (reasons_text(m[4]), m[5]),
            "".join("; " + n for n in notes)))
        if self.ack_pending:
            self.ack_pending.cancel()
            self.ack_pending = None
        if self.a.no_ack:
            return
        if self.a.ack_delay_ms > 0:
            self.ack_pending = self.loop.call_later(self.a.ack_delay_ms / 1000.0,
                                                    self.acknowledge, counter)
        else:
            self.acknowledge(counter)

    def acknowledge(self, counter):
        self.ack_pending = None
        self.hr.setValues(self.a.mailbox + 6, [counter])


class SlaveContext(ModbusSlaveContext):
    """The data store, telling the program of every write."""

    def __init__(self, plc):
        super().__init__(hr=plc.hr, co=plc.co, zero_mode=True)
        self.plc = plc

    def setValues(self, fc_as_hex, address, values):  # noqa: N802 (pymodbus' name)
        super().setValues(fc_as_hex, address, values)
        self.plc.written(fc_as_hex, address, values)


def make_handler(plc):
    class Handler(ModbusConnectedRequestHandler):
        def connection_made(self, transport):
            super().connection_made(transport)
            peer = "%s:%d" % tuple(self.client_address[:2])
            plc.event("connect", "client %s connected" % peer, peer=peer)

        def connection_lost(self, exc):
            super().connection_lost(exc)
            peer = "%s:%d" % tuple(self.client_address[:2])
            plc.event("disconnect", "client %s disconnected" % peer, peer=peer)
    return Handler


def port_arg(s):
    v = int(s)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535 (0: any free port)")
    return v


def address_arg(hi):
    def f(s):
        v = int(s, 0)
        if not 0 <= v <= hi:
            raise argparse.ArgumentTypeError("%s is not in 0..%d" % (s, hi))
        return v
    return f


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="plc-sim.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A simulated PLC for maa-plc: a Modbus TCP server that takes the "
        "bridge's results with the handshake of its register map and records them.",
        epilog="""register map (R = --mailbox, 0-based holding registers):
  R+0 counter  R+1..R+2 part number (high, low)  R+3 decision (1 pass, 2 reject)
  R+4 reasons (1 reject, 2 uninspected, 4 missing, 8 camera down)
  R+5 cameras that did not pass (bit k: k-th camera)  R+6 acknowledge (this PLC)
  R+7 health word  R+8 results queued in the bridge  R+9 late results

files in DIR (appended to; one JSON object a line, times CLOCK_REALTIME ns):
  results.jsonl  counter, part, decision, verdict, reasons, cameras, t_ns, run
                 [, counter_expected, violations: handshake rules broken]
  events.jsonl   kind: start, stop, connect, disconnect, coil (coil healthy or
                 reject, value), health (word, queued, late); t_ns, run

example: plc-sim.py --port 1502 --out /tmp/plc   (then maa-plc with
  plc.address "127.0.0.1", plc.port 1502; stop with Ctrl-C)""")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=port_arg, default=1502,
                   help="TCP port (default 1502; Modbus's own 502 needs root; 0: any free)")
    p.add_argument("--mailbox", type=address_arg(65526), default=0, metavar="R",
                   help="first holding register of the mailbox, plc.mailbox_register "
                   "(default 0)")
    p.add_argument("--healthy-coil", type=address_arg(65535), default=0, metavar="N",
                   help="plc.healthy_coil (default 0)")
    p.add_argument("--reject-coil", type=address_arg(65535), default=1, metavar="N",
                   help="plc.reject_coil (default 1)")
    p.add_argument("--out", default=".", metavar="DIR",
                   help="directory for results.jsonl and events.jsonl (default: the "
                   "current one; created if missing)")
    p.add_argument("--ack-delay-ms", type=float, default=0, metavar="N",
                   help="acknowledge a result N ms after it was written (a slow PLC "
                   "program; default 0: at once)")
    p.add_argument("--no-ack", action="store_true",
                   help="never acknowledge (a stopped PLC program): the bridge queues")
    p.add_argument("--quiet", action="store_true",
                   help="print only the listening line and errors")
    p.add_argument("--quiet-pulses", action="store_true",
                   help="do not print reject coil changes (they are still recorded)")
    p.add_argument("--debug", action="store_true", help="pymodbus's own debug log")
    a = p.parse_args(argv)
    if a.healthy_coil == a.reject_coil:
        p.error("--healthy-coil and --reject-coil are the same coil (%d)" % a.healthy_coil)
    if a.ack_delay_ms < 0:
        p.error("--ack-delay-ms must be 0 or more")
    return a


def open_out(d):
    try:
        os.makedirs(d, exist_ok=True)
        return (open(os.path.join(d, "results.jsonl"), "a"),
                open(os.path.join(d, "events.jsonl"), "a"))
    except OSError as e:
        sys.exit("%s: cannot write to --out %s: %s" % (PROG, d, e.strerror or e))


async def serve(a):
    loop = asyncio.get_running_loop()
    results, events = open_out(a.out)
    plc = Plc(a, results, events, loop)
    context = ModbusServerContext(slaves=SlaveContext(plc), single=True)
    server = ModbusTcpServer(context, address=(a.host, a.port), handler=make_handler(plc),
                             allow_reuse_address=True)
    try:
        server.server = await loop.create_server(lambda: server.handler(server),
                                                 a.host, a.port, reuse_address=True)
    except OSError as e:
        sys.stderr.write("%s: cannot listen on %s:%d: %s\n" % (PROG, a.host, a.port,
                                                               e.strerror or e))
        return 1
    host, port = server.server.sockets[0].getsockname()[:2]
    plc.event("start", host=host, port=port, mailbox=a.mailbox, healthy_coil=a.healthy_coil,
              reject_coil=a.reject_coil, ack_delay_ms=a.ack_delay_ms, no_ack=a.no_ack)
    print("listening on %s:%d" % (host, port), flush=True)

    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    for h in list(server.active_connections.values()):
        h.transport.close()
        if h.handler_task:
            h.handler_task.cancel()
    server.active_connections = {}
    server.server.close()
    await server.server.wait_closed()
    await asyncio.sleep(0.05)  # the connections' ends recorded before the stop
    plc.event("stop", "stopped: %d results taken, last counter %d" % (plc.taken, plc.counter),
              taken=plc.taken, counter=plc.counter)
    return 0


def main(argv):
    a = parse_args(argv)
    # pymodbus logs every client's disconnection as an error: its log is
    # for --debug; this program reports connections itself.
    logging.basicConfig(format=PROG + ": pymodbus: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if a.debug else logging.CRITICAL)
    try:
        return asyncio.run(serve(a))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
