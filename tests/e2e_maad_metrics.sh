#!/usr/bin/env bash
# e2e_maad_metrics — maad's Prometheus endpoint (docs/operations.md,
# "Metrics") scraped by a real Prometheus server (Debian's prometheus) in
# the test's network namespace: its HTTP API returns maad's series, and
# they agree with what a subscriber received (frames captured, verdicts by
# kind, the latency histogram's count), with the model file (its SHA-256)
# and with the archive's records; `promtool check metrics` accepts the exposition; other paths
# and methods are refused; a bad or taken metrics.listen stops the start
# with a message naming it; the alert rules shipped in
# config/maad-alerts.yml pass `promtool check rules` and their unit tests
# (tests/maad-alerts.test.yml).
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
RULES=$E2E_ROOT/config/maad-alerts.yml RULE_TESTS=$E2E_ROOT/tests/maad-alerts.test.yml
cd "$E2E_TMP"
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    skip "prometheus and promtool are not installed (scripts/install-deps.sh)"
    e2e_summary
    exit 0
fi
EP=tcp://127.0.0.1:5621 N=24

check "promtool check rules config/maad-alerts.yml" promtool check rules "$RULES"
check "the alert rules fire on their unit tests' series, and only there" \
    promtool test rules "$RULE_TESTS"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_images replay "$N" 7 4
conf()
{
    cat <<EOC
camera:
  name: cam
  source: replay
replay:
  dir: replay
  fps: 20
  loop: false
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
publish:
  endpoint: $EP
metrics:
  listen: "$1"
archive:
  dir: archive
EOC
}
conf "127.0.0.1" >bad.yaml
"$MAAD" --check-config bad.yaml >bad.out 2>&1
[ $? -ne 0 ] && grep -q 'metrics.listen "127.0.0.1": want HOST:PORT' bad.out &&
    ok "--check-config refuses a listen address without a port" || fail "bad listen" "$(cat bad.out)"
conf "127.0.0.1:9464" >maad.yaml

# Prometheus first, scraping every 500 ms, so that it sees the run whole.
cat >prom.yml <<EOC
global:
  scrape_interval: 500ms
  evaluation_interval: 1s
rule_files: [$RULES]
scrape_configs:
  - job_name: maad
    static_configs:
      - targets: ["127.0.0.1:9464"]
EOC
e2e_bg prom.log prometheus --config.file=prom.yml --storage.tsdb.path=tsdb \
    --web.listen-address=127.0.0.1:9090
prom=$E2E_BG
e2e_wait_for prom.log "Server is ready to receive web requests" 30 "$prom" ||
    fail "prometheus start" "$(tail -5 prom.log)"

e2e_subscribe $EP verdicts.jsonl
e2e_maad_up maad.yaml maad.log
grep -q "metrics: Prometheus endpoint http://127.0.0.1:9464/metrics" maad.log &&
    ok "maad names its endpoint" || fail "endpoint line" "$(grep metrics maad.log)"

# A second maad on the same port is refused, naming the key.
sed -e "s|$EP|tcp://127.0.0.1:5622|" maad.yaml >taken.yaml
"$MAAD" --config taken.yaml >taken.log 2>&1
[ $? -ne 0 ] && grep -q "metrics.listen 127.0.0.1:9464: cannot serve HTTP there: Address already in use" taken.log &&
    ok "a port taken stops the start, named" || fail "taken port" "$(tail -3 taken.log)"

e2e_wait_count verdicts.jsonl . "$N" 30 || fail "the $N verdicts" "$(wc -l <verdicts.jsonl)"
# One more scrape after the last verdict, by maad's own count.
sleep 1.5
curl -s http://127.0.0.1:9464/metrics >metrics.txt
check "promtool check metrics accepts the exposition" bash -c "promtool check metrics <metrics.txt"
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9464/)" = 404 ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:9464/metrics)" = 405 ] &&
    ok "other paths 404, other methods 405" || fail "404/405"

query()
{
    curl -s --get --data-urlencode "query=$1" http://127.0.0.1:9090/api/v1/query
}
sha=$(sha256sum model.safetensors | cut -d' ' -f1)
# Until Prometheus has a scrape with the last verdict in every count
# (frames are counted when captured, verdicts when published, the
# histograms after each batch).
k=40
until query "sum(maad_verdicts_total) + sum(maad_verdict_latency_seconds_count) == bool $((2 * N))" |
    grep -q '"1"' || [ $k -eq 0 ]; do
    sleep 0.5
    k=$((k - 1))
done
{
    for q in maad_frames_captured_total 'sum(maad_verdicts_total)' \
        'maad_verdicts_total{verdict="pass"}' 'maad_verdicts_total{verdict="reject"}' \
        'maad_verdicts_total{verdict="uninspected"}' maad_verdict_latency_seconds_count \
        'sum(maad_batch_frames_sum)' maad_model_info maad_build_info 'up{job="maad"}' \
        maad_archive_records maad_archive_written_total 'sum(maad_archive_lost_total)'; do
        printf '%s\t%s\n' "$q" "$(query "$q")"
    done
} >api.txt
check "Prometheus's API returns maad's series, as the subscriber counted them" \
    "$PY" - api.txt verdicts.jsonl "$N" "$sha" "$(ls archive/*.json | wc -l)" <<'PYEOF'
import json, sys
api = {}
for line in open(sys.argv[1]):
    q, body = line.rstrip("\n").split("\t", 1)
    r = json.loads(body)
    assert r["status"] == "success", (q, r)
    api[q] = r["data"]["result"]
msgs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
n, sha = int(sys.argv[3]), sys.argv[4]
def one(q):
    res = api[q]
    assert len(res) == 1, (q, res)
    return res[0]
def val(q):
    return float(one(q)["value"][1])
errs = []
def want(q, v):
    got = val(q)
    if got != v:
        errs.append("%s = %g, want %g" % (q, got, v))
want("maad_frames_captured_total", n)
want("sum(maad_verdicts_total)", len(msgs))
for kind in ("pass", "reject", "uninspected"):
    want('maad_verdicts_total{verdict="%s"}' % kind,
         sum(m["verdict"] == kind for m in msgs))
want("maad_verdict_latency_seconds_count", n)
want("sum(maad_batch_frames_sum)", n)
want('up{job="maad"}', 1)
# The archive keeps rejects and uninspected frames (no sampled passes here).
kept = sum(m["verdict"] != "pass" for m in msgs)
want("maad_archive_written_total", kept)
want("maad_archive_records", int(sys.argv[5]))
want("sum(maad_archive_lost_total)", 0)
mi = one("maad_model_info")["metric"]
if mi.get("sha256") != sha or mi.get("camera") != "cam":
    errs.append("maad_model_info %r, model %s" % (mi, sha))
if not one("maad_build_info")["metric"].get("version"):
    errs.append("maad_build_info without a version")
if len(msgs) != n:
    errs.append("%d verdicts received for %d frames" % (len(msgs), n))
if not any(m["verdict"] == "reject" for m in msgs):
    errs.append("no reject in the replay: the per-kind check says little")
print("; ".join(errs))
sys.exit(1 if errs else 0)
PYEOF

# The shipped rules, loaded by this Prometheus, evaluate on maad's series
# without an error.
curl -s http://127.0.0.1:9090/api/v1/rules >rules.json
check "Prometheus evaluates the shipped alert rules on maad's series" "$PY" - rules.json \
    "$(grep -c -- '- alert:' "$RULES")" <<'PYEOF'
import json, sys
groups = json.load(open(sys.argv[1]))["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
if len(rules) != int(sys.argv[2]) or bad:
    sys.exit("%d rules; not ok: %r" % (len(rules), bad))
PYEOF

e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"
e2e_stop "$prom" 10
e2e_summary
