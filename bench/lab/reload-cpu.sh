#!/bin/bash
# CPU per reload, per thread (BENCHMARKS.md, Reloads under load): perimeter --workers 1 with the
# bench's configuration, every thread pinned to CPU 0, no load. 20 reloads to warm up, then N
# reloads SPACING seconds apart, each after a change of the site file; the CPU time of every
# thread of the control process and the worker from /proc/<pid>/task/*/schedstat before and after.
#
#   npm run build && bench/lab/reload-cpu.sh OUTDIR [N] [SPACING]
#
# HOSTS=1000 adds that many sites to the site file; CERTS=10 adds an https listener with that many
# RSA-2048 certificates (one per site, made with openssl). MAIN=path/to/main.js runs another build
# (compare builds by alternating runs: the control process's figure moves by ±0.6 ms run to run).
set -eu
OUT=$(realpath -m "$1"); N=${2:-100}; SPACING=${3:-0.2}
LAB=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$LAB/../.." && pwd)
MAIN=${MAIN:-$REPO/dist/src/cli/main.js}
P=18480; B=18481; S=18482
rm -rf "$OUT"; mkdir -p "$OUT/p/sites" "$OUT/gen"
HOSTS=${HOSTS:-0} CERTS=${CERTS:-0} node --input-type=module -e "
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { perimeterPlatformYaml, perimeterSitesYaml } from '$REPO/dist/bench/harness.js';
const out = '$OUT', certs = Number(process.env.CERTS), gens = 20 + $N;
const hosts = Array.from({ length: Number(process.env.HOSTS) }, (_, i) => 'h' + i + '.bench.test');
let platform = perimeterPlatformYaml({ port: $P, backendPort: $B });
if (certs > 0) {
  let list = '';
  for (let i = 0; i < certs; i++) {
    const name = 's' + i + '.bench.test';
    hosts.push(name);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', out + '/k' + i + '.pem', '-out', out + '/c' + i + '.pem', '-days', '30', '-subj', '/CN=' + name, '-addext', 'subjectAltName=DNS:' + name], { stdio: 'ignore' });
    list += '        - { cert: \"' + out + '/c' + i + '.pem\", key: \"' + out + '/k' + i + '.pem\" }\n';
  }
  platform = platform.replace('listen: { http: \"127.0.0.1:$P\" }', 'listen: { http: \"127.0.0.1:$P\", https: \"127.0.0.1:$S\" }\n    tls:\n      certificates:\n' + list);
}
writeFileSync(out + '/p/perimeter.yaml', platform);
for (let g = 0; g <= gens; g++) writeFileSync(out + '/gen/' + g + '.yaml', perimeterSitesYaml(g, hosts));
"
cp "$OUT/gen/0.yaml" "$OUT/p/sites/bench.yaml"
node "$MAIN" run --workers 1 --no-watch "$OUT/p" > "$OUT/perimeter.log" 2>&1 & PERIMETER=$!
trap 'kill $PERIMETER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$P/" && break; sleep 0.1; done
sleep 0.5
for pid in $PERIMETER $(pgrep -P $PERIMETER); do taskset -a -p -c 0 "$pid" > /dev/null; done
change() { cp "$OUT/gen/$1.yaml" "$OUT/p/sites/bench.yaml"; kill -HUP $PERIMETER; sleep "$SPACING"; }
snap() { for pid in $PERIMETER $(pgrep -P $PERIMETER); do for t in /proc/$pid/task/*; do echo "$pid ${t##*/} $(cut -d' ' -f1 "$t/schedstat")"; done; done; }
for g in $(seq 1 20); do change "$g"; done
snap > "$OUT/before"
for g in $(seq 21 $((20 + N))); do change "$g"; done
snap > "$OUT/after"
echo "reloads applied: $(grep -c '"config-reloaded"' "$OUT/perimeter.log") of $((20 + N))"
python3 - "$OUT" "$N" "$PERIMETER" <<'PY'
import sys
out, n, control = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def read(f): return {(l.split()[0], l.split()[1]): int(l.split()[2]) for l in open(f)}
before, after = read(out + '/before'), read(out + '/after')
total = {}
for (pid, tid), ns in sorted(after.items()):
    ms = (ns - before.get((pid, tid), 0)) / n / 1e6
    who = 'control' if pid == control else 'worker'
    main = ' (main thread)' if pid == tid else ''
    if ms >= 0.005: print(f'{who:8s} thread {tid:>7s}{main:14s} {ms:6.2f} ms per reload')
    total[who] = total.get(who, 0) + ms
print('  '.join(f'{w} {v:.2f} ms' for w, v in total.items()) + f'  all {sum(total.values()):.2f} ms per reload')
PY
