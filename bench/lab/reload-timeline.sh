#!/bin/bash
# The reload timeline lab (BENCHMARKS.md, the reload row): perimeter --workers 1 pinned to
# CPU 0 with the bench's configuration, the backend nginx and the load on CPU 1, all at
# nice -10 as in `npm run bench`. Per pair: 10 s of paced load (20 connections, 4 ms between
# requests) without changes, then 10 s with 20 configuration changes (SIGHUP) 500 ms apart.
# Every request and every change is timestamped, then compared: the slowest request of the
# burst in flight in the 20 ms after each change, against the same at evenly spaced moments
# of the steady run.
#
#   npm run build && sudo bench/lab/reload-timeline.sh OUTDIR [PAIRS]
#
# Needs: nginx, cc, python3, taskset; root for nice -10 (as the bench). MAIN=path/to/main.js
# runs another build (compare builds by alternating runs: one run drifts ±40%).
set -eu
OUT=$(realpath -m "$1"); PAIRS=${2:-3}
LAB=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$LAB/../.." && pwd)
MAIN=${MAIN:-$REPO/dist/src/cli/main.js}
rm -rf "$OUT"; mkdir -p "$OUT/p/sites" "$OUT/gen" "$OUT/www"
cc -O2 -o "$OUT/pace" "$REPO/bench/pace.c"
B=18080; S=18081; P=18082
node --input-type=module -e "
import { writeFileSync } from 'node:fs';
import { nginxBackendConf, perimeterPlatformYaml, perimeterSitesYaml } from '$REPO/dist/bench/harness.js';
const out = '$OUT';
writeFileSync(out + '/backend.conf', nginxBackendConf(out, { port: $B, statusPort: $S }));
writeFileSync(out + '/p/perimeter.yaml', perimeterPlatformYaml({ port: $P, backendPort: $B }));
for (let g = 0; g <= 20 * $PAIRS; g++) writeFileSync(out + '/gen/' + g + '.yaml', perimeterSitesYaml(g));
"
cp "$OUT/gen/0.yaml" "$OUT/p/sites/bench.yaml"
taskset -c 1 nice -n -10 nginx -p "$OUT" -e "$OUT/backend.err" -c "$OUT/backend.conf" & BACKEND=$!
nice -n -10 node "$MAIN" run --workers 1 --no-watch "$OUT/p" > "$OUT/perimeter.log" 2>&1 & PERIMETER=$!
trap 'kill $PERIMETER $BACKEND 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null -H 'Host: bench.test' "http://127.0.0.1:$P/small" && break; sleep 0.2; done
sleep 1
for pid in $PERIMETER $(pgrep -P $PERIMETER); do taskset -a -p -c 0 "$pid" > /dev/null; done
# Warm-up, unmeasured: the first seconds of a process just started are slower (as in the bench).
taskset -c 1 nice -n -10 "$OUT/pace" $P bench.test /small 20 2 4 /dev/null > /dev/null
for pair in $(seq "$PAIRS"); do
  taskset -c 1 nice -n -10 "$OUT/pace" $P bench.test /small 20 10 4 "$OUT/steady$pair.txt"
  taskset -c 1 nice -n -10 "$OUT/pace" $P bench.test /small 20 10 4 "$OUT/changing$pair.txt" & LOAD=$!
  # The changes come from one process, as in the bench (no fork per change).
  node --input-type=module -e "
import { readFileSync, writeFileSync, appendFileSync } from 'node:fs';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(250);
for (let k = 1; k <= 20; k++) {
  writeFileSync('$OUT/p/sites/bench.yaml', readFileSync('$OUT/gen/' + (($pair - 1) * 20 + k) + '.yaml'));
  appendFileSync('$OUT/changes$pair.txt', Math.round((performance.timeOrigin + performance.now()) * 1000) + '\n');
  process.kill($PERIMETER, 'SIGHUP');
  await sleep(500);
}"
  wait $LOAD; sleep 1
done
echo "reloads applied: $(grep -c '"config-reloaded"' "$OUT/perimeter.log")"
python3 - "$OUT" "$PAIRS" <<'PY'
import bisect, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
def load(f): return sorted(tuple(map(int, l.split()[:2])) for l in open(f))
def worst(rs, ts, t): # slowest request started from 1 ms before t to 20 ms after
    i, j = bisect.bisect_left(ts, t - 1000), bisect.bisect_left(ts, t + 20000)
    return max((l for _, l in rs[i:j]), default=0)
def p99(rs): ls = sorted(l for _, l in rs); return ls[int(len(ls) * 0.99)]
after, base = [], []
for k in range(1, pairs + 1):
    st, ch = load(f'{out}/steady{k}.txt'), load(f'{out}/changing{k}.txt')
    changes = [int(l) for l in open(f'{out}/changes{k}.txt')]
    print(f'pair {k}: p99 steady {p99(st)} µs, changing {p99(ch)} µs, ratio {p99(ch) / p99(st):.2f}')
    after += [worst(ch, [r[0] for r in ch], c) for c in changes]
    base += [worst(st, [r[0] for r in st], st[0][0] + 250000 + 500000 * i) for i in range(len(changes))]
q = lambda xs, p: sorted(xs)[int(len(xs) * p)] / 1000
for name, xs in (('after a change', after), ('steady, same moments', base)):
    print(f'slowest request within 20 ms, {name}: median {q(xs, .5):.2f} ms, p90 {q(xs, .9):.2f} ms, mean {statistics.mean(xs) / 1000:.2f} ms (n={len(xs)})')
PY
