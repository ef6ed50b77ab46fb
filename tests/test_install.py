"""make install into a staging DESTDIR, as a packager runs it: the installed
documentation finds every file it links or shows (docs/img, the example
configurations), and the systemd units
(maad@, maa-plc) name the installed programs and documentation under the
PREFIX chosen, not /usr/local.  Runs make in the repository (the programs must be built)."""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
passed = failed = 0


def check(name, ok, msg=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok  ", name)
    else:
        failed += 1
        print("FAIL", name, msg)


def install(destdir, prefix=None):
    args = ["make", "-s", "--no-print-directory", "-C", ROOT, "install", "DESTDIR=" + destdir]
    if prefix:
        args.append("PREFIX=" + prefix)
    return subprocess.run(args, capture_output=True, text=True)


with tempfile.TemporaryDirectory() as tmp:
    for prefix in ("/opt/maad", None):
        where = prefix or "/usr/local"
        dest = os.path.join(tmp, where.strip("/").replace("/", "_"))
        r = install(dest, prefix)
        check(f"make install (PREFIX {where}) runs", r.returncode == 0, r.stdout + r.stderr)
        if r.returncode != 0:
            continue
        doc = os.path.join(dest + where, "share/doc/maad")
        missing = []
        for name in sorted(os.listdir(doc)):
            if name.endswith(".md"):
                text = open(os.path.join(doc, name), encoding="utf-8").read()
                for link in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
                    if re.match(r"[a-z]+:", link):
                        continue  # http:, file: and the like
                    if not os.path.isfile(os.path.join(doc, link)):
                        missing.append(f"{name}: {link}")
        check(f"PREFIX {where}: every file the installed docs link or show is installed",
              not missing, "; ".join(missing))
        imgs = sorted(os.listdir(os.path.join(ROOT, "docs/img")))
        absent = [i for i in imgs if not os.path.isfile(os.path.join(doc, "img", i))]
        check(f"PREFIX {where}: docs/img installed whole", not absent, " ".join(absent))
        # maa finds the scripts it runs (plots, review's sheet) installed
        # beside it, with the scripts they import.
        scripts = os.path.join(dest + where, "share/maad/scripts")
        wanted = set()
        for src in os.listdir(os.path.join(ROOT, "maa")):
            text = open(os.path.join(ROOT, "maa", src), encoding="utf-8").read()
            wanted |= set(re.findall(r'maa_cli_run_script\("([^"]+)"', text))
        for name in sorted(wanted):
            text = open(os.path.join(ROOT, "scripts", name), encoding="utf-8").read()
            wanted |= {m + ".py" for m in re.findall(r"^(?:from|import) (\w+)", text, re.M)
                       if os.path.isfile(os.path.join(ROOT, "scripts", m + ".py"))}
        absent = sorted(n for n in wanted if not os.path.isfile(os.path.join(scripts, n)))
        check(f"PREFIX {where}: the scripts maa runs ({len(wanted)}) are installed", not absent,
              " ".join(absent))
        units = {
            "maad@.service": {"ExecStart": f"{where}/bin/maad --config /etc/maad/%i.yaml",
                              "Documentation": f"file:{where}/share/doc/maad/operations.md"},
            "maa-plc.service": {
                "ExecStartPre": f"{where}/bin/maa-plc --check-config /etc/maad/plc.yaml",
                "ExecStart": f"{where}/bin/maa-plc --config /etc/maad/plc.yaml",
                "Documentation": f"file:{where}/share/doc/maad/plc.md"},
        }
        for name, want in units.items():
            unit = open(os.path.join(dest, "etc/systemd/system", name)).read()
            for key, value in want.items():
                line = re.search(rf"^{key}=(.*)$", unit, re.M)
                got = line.group(1) if line else None
                check(f"PREFIX {where}: {name} {key}= names the installed file", got == value,
                      f"{got!r}, wanted {value!r}")
                target = os.path.join(dest + where,
                                      value.split()[0].split(":", 1)[-1][len(where) + 1:])
                check(f"PREFIX {where}: {name} {key}'s file is installed",
                      os.path.isfile(target), target)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
