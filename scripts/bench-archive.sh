#!/usr/bin/env bash
# The reject archive's cost (docs/operations.md, "Reject archive"): maad on
# the replay source keeping every frame (archive.sample_passes 1, so each
# frame is a record with its frame and mask), W x H Mono8 frames of a
# textured surface with sensor noise (every fifth with a scratch), for
# SECONDS_RUN seconds at FPS frames/s.  Prints the bytes of a record (frame
# PNG, mask PNG, JSON), the records written and dropped, and the archive
# thread's CPU time per record, from /proc.  Not part of make test.
#
#   scripts/bench-archive.sh
#   env: W (1280), H (1024), FPS (30), SECONDS_RUN (20), DIR (an archive
#        directory on the disk to measure; default: in the test's temporary
#        directory)
. "$(dirname "$0")/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP" || exit 1
w=${W:-1280} h=${H:-1024} fps=${FPS:-30} run=${SECONDS_RUN:-20}
arch=${DIR:-$E2E_TMP/arch}

e2e_fixture >/dev/null || { echo "fixture failed"; exit 1; }
e2e_images frames 50 4 5 "$w" "$h"
cat >maad.yaml <<EOC
camera:
  name: bench
  source: replay
replay:
  dir: frames
  fps: $fps
  loop: true
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 2
publish:
  endpoint: tcp://127.0.0.1:5621
log:
  summary_interval_s: 60
archive:
  dir: $arch
  max_bytes: 1e12
  max_files: 1000000000
  sample_passes: 1
EOC
e2e_maad maad.yaml maad.log || { echo "maad did not start: $(tail -n 3 maad.log)"; exit 1; }
echo "running $run s at $fps frames/s, ${w}x$h Mono8, every frame archived to $arch"
sleep "$run"
task=$(grep -l '^maad-archive$' /proc/"$E2E_MAAD"/task/*/comm | head -n 1)
ticks=$(awk '{print $14 + $15}' "${task%/comm}/stat")
e2e_stop "$E2E_MAAD" 30
grep -E 'final' maad.log | sed 's/.*: final/final/'
"$PY" - "$arch" "$ticks" "$(getconf CLK_TCK)" "$fps" <<'PYEOF'
import os, sys
d, ticks, hz, fps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
size = {".png": [], ".mask.png": [], ".json": []}
for n in os.listdir(d):
    k = ".mask.png" if n.endswith(".mask.png") else os.path.splitext(n)[1]
    if k in size:
        size[k].append(os.path.getsize(os.path.join(d, n)))
recs = len(size[".json"])
mean = {k: sum(v) / max(len(v), 1) for k, v in size.items()}
total = sum(mean.values())
print("records %d; bytes a record: frame %.0f, mask %.0f, JSON %.0f, all %.0f" %
      (recs, mean[".png"], mean[".mask.png"], mean[".json"], total))
print("archive thread: %.2f s CPU, %.1f ms a record" % (ticks / hz, 1000.0 * ticks / hz / max(recs, 1)))
print("a shift of 8 h at %g frames/s with 1 %% of frames kept: %.1f GB" %
      (fps, 8 * 3600 * fps * 0.01 * total / 1e9))
PYEOF
