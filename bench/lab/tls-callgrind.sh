#!/bin/bash
# Instructions per TLS connection (BENCHMARKS.md, TLS handshakes, 2026-12-07): perimeter
# (--workers 0, the bench's TLS configuration, resumption off) or the bench's `node:tls proxy`
# floor, under valgrind's callgrind, behind a backend nginx. WARM connections first (V8 compiles),
# then the counters are zeroed, N connections are made (GET /small, Connection: close, 4 at a
# time) and the counters dumped. Prints the instructions per connection, all of them and without
# the RSA signature's big-number code. Instruction counts repeat within about 1 % where timed
# rounds on this machine drift by 10-30 %; they do not see cache misses. Under valgrind OpenSSL
# takes its AVX2 path (about 6.2 M instructions per RSA-2048 signature), not AVX-512 IFMA.
#
#   npm run build && bench/lab/tls-callgrind.sh perimeter|floor OUTDIR [WARM] [N]
#
# MAIN=path/to/main.js measures another perimeter build. About 80 ms per connection under valgrind.
set -eu
WHAT=$1; OUT=$(realpath -m "$2"); WARM=${3:-2500}; N=${4:-1000}
LAB=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$LAB/../.." && pwd)
MAIN=${MAIN:-$REPO/dist/src/cli/main.js}
B=18491; P=18492
case "$WHAT" in perimeter|floor) ;; *) echo "usage: $0 perimeter|floor OUTDIR [WARM] [N]" >&2; exit 2 ;; esac
rm -rf "$OUT"; mkdir -p "$OUT/p/sites"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$OUT/key.pem" -out "$OUT/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,DNS:bench.test 2>/dev/null
# The backend keeps idle connections for an hour: the floor reuses its upstream connections blindly.
cat > "$OUT/backend.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/backend.pid; error_log $OUT/backend.err;
events {}
http { access_log off; keepalive_timeout 3600s; keepalive_requests 1000000;
  server { listen 127.0.0.1:$B; location / { return 200 "$(printf 'x%.0s' $(seq 99))\n"; } } }
EOF
node --input-type=module -e "
import { writeFileSync } from 'node:fs';
import { perimeterTlsPlatformYaml, perimeterSitesYaml } from '$REPO/dist/bench/harness.js';
writeFileSync('$OUT/p/perimeter.yaml', perimeterTlsPlatformYaml({ httpsPort: $P, backendPort: $B, cert: '$OUT/cert.pem', key: '$OUT/key.pem', resumption: false }));
writeFileSync('$OUT/p/sites/bench.yaml', perimeterSitesYaml(0, ['localhost']));
"
nginx -p "$OUT" -c "$OUT/backend.conf" & BACKEND=$!
if [ "$WHAT" = perimeter ]; then
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" node "$MAIN" run --workers 0 --no-watch "$OUT/p" > "$OUT/target.log" 2>&1 & TARGET=$!
else
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" node "$REPO/dist/bench/tls-floor.js" proxy $P "$OUT/cert.pem" "$OUT/key.pem" $B > "$OUT/target.log" 2>&1 & TARGET=$!
fi
trap 'kill $TARGET $BACKEND 2>/dev/null || true' EXIT
for _ in $(seq 240); do
  curl -skf -o /dev/null --max-time 5 -H 'Host: bench.test' "https://localhost:$P/small" && break
  sleep 1
done
connections() {
  node --input-type=module -e "
import tls from 'node:tls';
const n = $1; let started = 0, done = 0, ok = 0;
await new Promise((resolve) => {
  const one = () => {
    if (started >= n) return;
    started++;
    let text = '';
    const s = tls.connect({ host: '127.0.0.1', port: $P, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] },
      () => s.write('GET /small HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n'));
    s.on('data', (c) => (text += c));
    s.on('error', () => {});
    s.on('close', () => { done++; if (text.startsWith('HTTP/1.1 200')) ok++; if (done === n) resolve(); else one(); });
  };
  for (let i = 0; i < Math.min(4, n); i++) one();
});
if (ok !== n) { console.error(ok + ' of ' + n + ' connections answered 200'); process.exit(1); }
"
}
[ "$WARM" -gt 0 ] && connections "$WARM"
# valgrind's pid is the target's: callgrind_control finds it by pid.
callgrind_control -z $TARGET > /dev/null 2>&1
connections "$N"
callgrind_control -d $TARGET > /dev/null 2>&1
sleep 2
DUMP=$(ls -t "$OUT"/callgrind.out.* | head -1)
callgrind_annotate --auto=no --inclusive=no --threshold=100 "$DUMP" 2>/dev/null | awk -v n="$N" -v what="$WHAT" '
  /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
  /rsaz_|bn_sqr8x|bn_mul4x|mulx4x|sqrx8x|bn_mul_mont|__bn_|extract_multiplier|scatter5|gather5/ { gsub(",", "", $1); rsa += $1 }
  END { printf "%s: %.2f M instructions per connection over %d, %.2f M without the RSA signature (%.2f M)\n", what, total / n / 1e6, n, (total - rsa) / n / 1e6, rsa / n / 1e6 }'
