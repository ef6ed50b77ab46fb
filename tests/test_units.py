"""The systemd units as shipped: systemd's own security rating (systemd-analyze
security --offline) at or below 2.0 for maad@ and maa-plc, and the
tightening of the hardening review kept: no capability granted by default
(CAP_NET_RAW only in the packet socket's drop-in), no profiling device, a
realtime CPU-time limit wherever realtime priority is allowed, no unbounded
locked memory, and only loopback, link-local and multicast addresses
allowed until the installer adds the cell's network."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
passed = failed = skipped = 0


def check(name, ok, msg=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok  ", name)
    else:
        failed += 1
        print("FAIL", name, msg)


def settings(text):
    """Key -> list of values, comments left out."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


UNITS = {"maad@.service": "maad@cam0.service", "maa-plc.service": "maa-plc.service"}
analyze = shutil.which("systemd-analyze")
with tempfile.TemporaryDirectory() as tmp:
    for unit, instance in UNITS.items():
        text = open(os.path.join(ROOT, "systemd", unit)).read()
        s = settings(text)
        caps = " ".join(s.get("AmbientCapabilities", []) + s.get("CapabilityBoundingSet", []))
        check(f"{unit}: no capability granted", caps.strip() == "", caps)
        check(f"{unit}: no profiling device", "nvidia-uvm-tools" not in
              " ".join(s.get("DeviceAllow", [])))
        check(f"{unit}: no unbounded locked memory",
              "infinity" not in " ".join(s.get("LimitMEMLOCK", [])))
        if "LimitRTPRIO" in s:
            check(f"{unit}: realtime priority comes with LimitRTTIME", "LimitRTTIME" in s)
        allowed = " ".join(s.get("IPAddressAllow", [])).split()
        check(f"{unit}: IPAddressDeny=any, only loopback, link-local, multicast allowed",
              s.get("IPAddressDeny") == ["any"] and
              set(allowed) <= {"localhost", "link-local", "multicast"}, " ".join(allowed))
        if not analyze:
            skipped += 1
            print("skip", f"{unit}: systemd-analyze missing")
            continue
        path = os.path.join(tmp, instance)
        shutil.copy(os.path.join(ROOT, "systemd", unit), path)
        r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", path],
                           capture_output=True, text=True)
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
        level = float(m.group(1)) if m else None
        check(f"{unit}: systemd-analyze security rates it <= 2.0",
              level is not None and level <= 2.0, f"{level} {r.stderr[-300:]}")

if skipped:
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
else:
    print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
