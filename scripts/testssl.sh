#!/usr/bin/env bash
# Audit perimeter's default HTTPS listener with testssl.sh (Debian package
# testssl.sh). Starts perimeter with a default https cluster and a
# certificate from a throwaway CA, runs testssl, and fails when it reports
# any finding of severity MEDIUM or above, or no HSTS.
#
#   bash scripts/testssl.sh            # from the repository root, after npm run build
#
# Exit status: 0 clean, 1 findings, 2 a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in testssl openssl node; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install testssl.sh openssl)"; exit 2; }
done
[ -f dist/src/cli/main.js ] || npm run build --silent

work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A CA the audit trusts (--add-ca) and a leaf for www.example.com, with a CRL
# distribution point as public CAs provide.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 100 -subj "/CN=perimeter test CA" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/site.key" -out "$work/site.csr" -subj "/CN=www.example.com" >/dev/null 2>&1
cat > "$work/ext.cnf" <<EXT
subjectAltName=DNS:www.example.com
basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=serverAuth
crlDistributionPoints=URI:http://crl.example.com/test.crl
EXT
openssl x509 -req -in "$work/site.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 89 -extfile "$work/ext.cnf" -out "$work/leaf.pem" >/dev/null 2>&1
cat "$work/leaf.pem" "$work/ca.pem" > "$work/site.pem"

# Two ports below the kernel's ephemeral range, where no outgoing connection
# can take them before perimeter listens (as test/helpers/cli.ts freePort),
# and that no socket uses now.
eph_start=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
for _ in $(seq 1 20); do
  port_http=$((10000 + RANDOM % (eph_start - 10001)))
  port_https=$((port_http + 1))
  [ -z "$(ss -Htan "( sport = :$port_http or sport = :$port_https )" 2>/dev/null)" ] && break
done
mkdir -p "$work/conf/sites"
cat > "$work/conf/perimeter.yaml" <<YAML
clusters:
  web:
    listen: { http: "127.0.0.1:$port_http", https: "127.0.0.1:$port_https" }
    tls:
      certificates:
        - { cert: "$work/site.pem", key: "$work/site.key" }
defaults:
  health: { type: none }
discovery:
  static:
    app: ["127.0.0.1:9"]
access-log:
  path: "off"
YAML
printf 'www.example.com:\n  service: app\n' > "$work/conf/sites/a.yaml"
node dist/src/cli/main.js run "$work/conf" --workers 0 --no-watch --log-level warn >"$work/perimeter.log" 2>&1 &
pid=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port_https") 2>/dev/null && break; sleep 0.1; done

testssl --quiet --color 0 --warnings batch --add-ca "$work/ca.pem" --ip 127.0.0.1 \
  --jsonfile "$work/testssl.json" "https://www.example.com:$port_https/" >"$work/testssl.txt" 2>&1 || true

node -e '
const f = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const order = ["OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
// The backend is a closed port (502): findings about the HTTP answer itself are not TLS posture.
const bad = f.filter((x) => order.indexOf(x.severity) >= order.indexOf("MEDIUM"));
const hsts = f.find((x) => x.id === "HSTS_time") ?? f.find((x) => /^HSTS/.test(x.id));
console.log("HSTS entries: " + f.filter((x) => /HSTS/.test(x.id)).map((x) => `${x.id}=${x.severity}:${x.finding}`).join(" | "));
for (const x of bad) console.log(`${x.severity}\t${x.id}\t${x.finding}`);
console.log(`HSTS: ${hsts ? hsts.finding : "missing"}`);
console.log(`${f.length} checks, ${bad.length} findings of severity MEDIUM or above`);
process.exit(bad.length === 0 && hsts && hsts.severity === "OK" ? 0 : 1);
' "$work/testssl.json"
