#!/usr/bin/env bash
# Is issuance as cheap with 1,000,000 certificates on record as with none? Starts a
# release onlineca (SQLite store, EC P-256 CA, rate_limit = 0) on 127.0.0.1 in a
# temporary directory, measures renewal and password issuance with onlineca-load,
# stops it, fills the store with ROWS certificate records (sqlite3, Debian package
# `sqlite3`: 10,000 users, 600 bytes of DER each, one every 30 s over the past
# year), starts it again and measures the same runs. Prints one table.
#
# Usage: bench/bigstore.sh    Environment: ROWS (default 1000000), SECS (default 8),
# CONCURRENCY (default 16), MODES (default "new keepalive").
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
secs=${SECS:-8}
conc=${CONCURRENCY:-16}
modes=${MODES:-new keepalive}
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed: apt-get install sqlite3" >&2; exit 1; }

cargo build --release -q -p onlineca -p onlineca-load
bin=$PWD/target/release/onlineca
load=$PWD/target/release/onlineca-load
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin" init --dir "$work/ca" --key-type p256 >/dev/null 2>&1
sed -i 's/^rate_limit = 120/rate_limit = 0/' "$work/ca/onlineca.toml"
head -c 18 /dev/urandom | base64 >"$work/pw"
"$bin" user add loaduser --password-stdin --config "$work/ca/onlineca.toml" <"$work/pw" 2>/dev/null

start() {
  "$bin" serve --config "$work/ca/onlineca.toml" --listen 127.0.0.1:0 >"$work/out" 2>"$work/log" &
  server=$!
  for _ in $(seq 100); do [ -s "$work/out" ] && break; sleep 0.1; done
  url=$(sed -n 's/^onlineca listening on //p' "$work/out")
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=; : >"$work/out"; }

declare -A result
measure() { # label
  for auth in renewal password; do
    for mode in $modes; do
      j=$("$load" --url "$url" --cacert "$work/ca/ca/root.pem" --auth "$auth" --user loaduser \
        --password-file "$work/pw" -c "$conc" --connection "$mode" --duration "${secs}s" \
        --warmup 2s --server-pid "$server" --json)
      result[$1,$auth,$mode]=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f/s %.3f ms" % (d["certs_per_s"], d["server"]["cpu_ms_per_cert"]))' "$j")
    done
  done
}

start
measure empty
before=$(sqlite3 "$work/ca/onlineca.db" 'SELECT count(*) FROM certificates')
stop
echo "== filling the store with $rows certificate records" >&2
sqlite3 "$work/ca/onlineca.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO certificates (serial, username, subject, auth_method, retriever, spki_sha256,
  not_before, not_after, issued_at, client_addr, der, revoked_at, revocation_reason)
SELECT lower(hex(randomblob(20))), 'user' || (i % 10000), '/O=Bench/CN=user' || (i % 10000),
  'password', NULL, lower(hex(randomblob(32))),
  strftime('%s', 'now') - 31536000 + i * 30 - 300, strftime('%s', 'now') - 31536000 + i * 30 + 43200,
  strftime('%s', 'now') - 31536000 + i * 30, '127.0.0.1', randomblob(600), NULL, NULL
FROM n;
SQL
after=$(sqlite3 "$work/ca/onlineca.db" 'SELECT count(*) FROM certificates')
start
measure full
stop

echo "| path | mode | c | $before rows on record | $after rows on record |"
echo "|---|---|---|---|---|"
for auth in renewal password; do
  for mode in $modes; do
    echo "| $auth | $mode | $conc | ${result[empty,$auth,$mode]} | ${result[full,$auth,$mode]} |"
  done
done
