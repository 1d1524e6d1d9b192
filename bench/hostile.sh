#!/usr/bin/env bash
# A hostile load against a release onlineca with its default limits, on loopback only.
#
# Starts a release `onlineca serve` on 127.0.0.1 in a temporary directory, with the
# configuration `onlineca init` writes (default rate limits, per-address connection
# cap, lockout, password pool), two users (alice, whose right password is sent, and
# bob, whose password is guessed), then drives it with `onlineca-load --mix`:
# REQUESTS requests (default 20,000) from CONCURRENCY connections (default 256) spread
# over SOURCES loopback addresses (default 8: 127.0.0.2 to 127.0.0.9), mixing right
# passwords, wrong passwords, unknown users and oversized bodies (128 KiB, 256 KiB and
# 2 MiB against the 64 KiB limit). Meanwhile a side loop fetches the trust roots from
# 127.0.0.1 with curl every 100 ms and records each answer.
#
# Reports the counts per status (overall and per kind of request), the trust roots'
# availability, the server's peak RSS (VmHWM) and the duration. Fails (exit 1) if any
# answer is other than 200 or a designed refusal (401, 405, 429, 503), if any request
# failed without an answer (connection, TLS, timeout, HTTP error), if a trust-roots
# fetch failed, if the server died, or if its peak RSS passed MAX_RSS_MB (default 300).
# Not part of the test run: it takes a few minutes of both cores.
#
# Usage: bench/hostile.sh     Environment: REQUESTS, CONCURRENCY, SOURCES, MIX
# (default good=4,bad=3,unknown=3,oversized=2), CONNECTION (keepalive | new, default
# keepalive), MAX_RSS_MB, KEEP (set: keep the work directory and print its path),
# RATE_LIMIT (default: init's 120; 0 turns the per-address limit off, to load what is
# behind it as an attacker with many addresses would).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${REQUESTS:-20000}
concurrency=${CONCURRENCY:-256}
sources=${SOURCES:-8}
mix=${MIX:-good=4,bad=3,unknown=3,oversized=2}
connection=${CONNECTION:-keepalive}
max_rss_mb=${MAX_RSS_MB:-300}

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "hostile.sh needs $tool" >&2; exit 1; }
done

echo "== building release binaries" >&2
cargo build --release --locked -q -p onlineca -p onlineca-load
bin=$PWD/target/release/onlineca
load=$PWD/target/release/onlineca-load

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "== kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the server: init's configuration, untouched but for the port ------------------
o=$work/ca
"$bin" init --dir "$o" >/dev/null 2>&1
if [ -n "${RATE_LIMIT:-}" ]; then
  sed -i "s/^rate_limit = 120 /rate_limit = $RATE_LIMIT /" "$o/onlineca.toml"
  grep -q "^rate_limit = $RATE_LIMIT " "$o/onlineca.toml" || { echo "could not set rate_limit" >&2; exit 1; }
fi
head -c 18 /dev/urandom | base64 >"$work/alice.pw"
head -c 18 /dev/urandom | base64 >"$work/bob.pw"
"$bin" user add alice --password-stdin --config "$o/onlineca.toml" <"$work/alice.pw" >/dev/null 2>&1
"$bin" user add bob --password-stdin --config "$o/onlineca.toml" <"$work/bob.pw" >/dev/null 2>&1
port=$(free_port)
url=https://127.0.0.1:$port/onlineca
"$bin" serve --config "$o/onlineca.toml" --listen "127.0.0.1:$port" >"$work/server.out" 2>"$work/server.log" &
server=$!
pids+=("$server")
for _ in $(seq 2000); do
  curl -sf -o /dev/null --cacert "$o/ca/root.pem" "$url/trustroots/" && break
  kill -0 "$server" 2>/dev/null || { echo "onlineca exited:" >&2; cat "$work/server.log" >&2; exit 1; }
  sleep 0.01
done
idle_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
echo "== onlineca $url (pid $server, ${idle_kib} KiB resident idle), defaults:" >&2
grep -E '^(max_body|request_timeout|max_connections|max_connections_per_address|rate_limit|rate_burst|max_failures|lockout|password_threads|password_queue|credential_cache) ' \
  "$o/onlineca.toml" | sed 's/^/   /' >&2 || true

src_list=$(seq -s, -f '127.0.0.%g' 2 $((sources + 1)))

# ---- the side loop: trust roots every 100 ms from 127.0.0.1 -------------------------
stop_file=$work/stop
(
  while [ ! -e "$stop_file" ]; do
    # One line per fetch: status (000 when none) and seconds taken.
    curl -s -o /dev/null --max-time 5 --cacert "$o/ca/root.pem" \
      -w '%{http_code} %{time_total}\n' "$url/trustroots/" || true
    sleep 0.1
  done
) >"$work/trustroots.log" &
side=$!
pids+=("$side")

# ---- the load ----------------------------------------------------------------------
echo "== $requests requests, $concurrency connections ($connection) from $src_list, mix $mix" >&2
started=$(date +%s.%N)
"$load" --url "$url" --cacert "$o/ca/root.pem" --auth password \
  --user alice --password-file "$work/alice.pw" --bad-user bob \
  --mix "$mix" --requests "$requests" --duration 20m --timeout 60s \
  -c "$concurrency" --connection "$connection" --source "$src_list" \
  --csr-key p256 --csr-pool 64 --server-pid "$server" --json >"$work/mix.json"
ended=$(date +%s.%N)
touch "$stop_file"
wait "$side" 2>/dev/null || true
alive=yes
kill -0 "$server" 2>/dev/null || alive=no
hwm_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
threads=$(awk '/^Threads/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)

# Still serving a legitimate client afterwards: a certificate for alice from 127.0.0.1.
openssl_csr=$work/after.csr
after=000
if command -v openssl >/dev/null; then
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/after.key" \
    -subj /CN=ignored -out "$openssl_csr" 2>/dev/null
  (umask 077; printf 'machine 127.0.0.1 login alice password %s\n' "$(cat "$work/alice.pw")" >"$work/netrc")
  after=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 --cacert "$o/ca/root.pem" \
    --netrc-file "$work/netrc" --data-urlencode "certificate_request@$openssl_csr" "$url/certificate/" || true)
fi

# ---- the verdict -------------------------------------------------------------------
python3 - "$work/mix.json" "$work/trustroots.log" "$started" "$ended" "$hwm_kib" "$rss_kib" \
  "$idle_kib" "$threads" "$alive" "$max_rss_mb" "$after" <<'PY'
import json, sys
(mix_path, tr_path, started, ended, hwm, rss, idle, threads, alive, max_mb, after) = sys.argv[1:]
r = json.load(open(mix_path))
designed = {"200", "401", "405", "429", "503"}
problems = []
print(f"requests     {r['requests']} in {float(ended) - float(started):.1f} s "
      f"(load generator's window {r['window_s']:.1f} s), from {', '.join(r['sources']) or '127.0.0.1'}")
print("by status    " + ", ".join(f"{k}: {v}" for k, v in sorted(r["by_status"].items())))
for kind, counts in sorted(r["by_kind"].items()):
    print(f"  {kind:<10} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
for k, e in sorted(r["examples"].items()):
    print(f"  first {k}: {e}")
undesigned = {k: v for k, v in r["by_status"].items() if k not in designed}
if undesigned:
    problems.append(f"answers other than the designed ones: {undesigned}")
fetches = [l.split() for l in open(tr_path) if l.strip()]
ok = [f for f in fetches if f[0] == "200"]
worst = max((float(f[1]) for f in fetches), default=0.0)
print(f"trust roots  {len(ok)}/{len(fetches)} fetches answered 200 "
      f"({100.0 * len(ok) / max(len(fetches), 1):.1f} %), slowest {worst * 1000:.0f} ms")
if not fetches or len(ok) != len(fetches):
    bad = sorted({f[0] for f in fetches if f[0] != "200"})
    problems.append(f"trust roots failed {len(fetches) - len(ok)} times (statuses {bad})")
hwm_mb = int(hwm) / 1024
print(f"server       peak RSS (VmHWM) {hwm_mb:.1f} MiB, {int(rss) / 1024:.1f} MiB at the end, "
      f"{int(idle) / 1024:.1f} MiB idle before; {threads} threads at the end; "
      f"CPU {((r.get('server') or {}).get('cpu_ms') or 0) / 1000:.1f} s")
if alive != "yes":
    problems.append("the server died")
if hwm_mb > float(max_mb):
    problems.append(f"peak RSS {hwm_mb:.1f} MiB over {max_mb} MiB")
print(f"afterwards   a certificate for alice from 127.0.0.1: {after}")
if after != "200":
    problems.append(f"a legitimate request afterwards answered {after}")
for p in problems:
    print(f"FAIL: {p}")
sys.exit(1 if problems else 0)
PY
