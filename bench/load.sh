#!/usr/bin/env bash
# Load generator: starts a release onlineca on 127.0.0.1 in a temporary directory,
# adds a user, and drives it with wrk (Debian package `wrk`) for a bounded time:
# trust roots (no auth), then certificate issuance with HTTP Basic over TLS.
# Prints wrk's figures. Usage: bench/load.sh [seconds per run] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-8}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q
bin=target/release/onlineca
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" init --dir "$work/ca" --key-type "${KEY_TYPE:-p256}" 2>/dev/null
# One address makes every request here: lift the per-address limit.
sed -i "s/^rate_limit = 120/rate_limit = 0/" "$work/ca/onlineca.toml"
pw=$(head -c 18 /dev/urandom | base64)
printf '%s\n' "$pw" | "$bin" user add loaduser --password-stdin --config "$work/ca/onlineca.toml" 2>/dev/null
"$bin" serve --config "$work/ca/onlineca.toml" --listen 127.0.0.1:0 >"$work/out" 2>"$work/log" &
server=$!
for _ in $(seq 100); do [ -s "$work/out" ] && break; sleep 0.1; done
base=$(sed -n 's/^onlineca listening on //p' "$work/out")

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/k" \
  -subj /CN=load -out "$work/csr" 2>/dev/null
python3 - "$work/csr" "$pw" > "$work/post.lua" <<'PY'
import base64, sys, urllib.parse
body = urllib.parse.urlencode({"certificate_request": open(sys.argv[1]).read()})
auth = base64.b64encode(("loaduser:" + sys.argv[2]).encode()).decode()
print('wrk.method = "POST"')
print('wrk.body = %r' % body)
print('wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"')
print('wrk.headers["Authorization"] = "Basic %s"' % auth)
print('done = function(summary, latency, requests)')
print('  io.write(string.format("non-2xx or errors: %d\\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))')
print('end')
PY

echo "== GET trustroots/ (keep-alive, $conns connections, ${secs}s)"
wrk -t2 -c"$conns" -d"${secs}s" --latency "$base/trustroots/"
echo "== POST certificate/ (password auth: one argon2id verify per request; $conns connections, ${secs}s)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "$base/certificate/"
issued=$(grep 'path=/onlineca/certificate/' "$work/log" | grep -c 'status=200' || true)
echo "== certificates issued (access log): $issued"
