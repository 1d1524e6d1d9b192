#!/usr/bin/env bash
# onlineca against cfssl (Debian golang-cfssl), side by side on this machine.
#
# Starts, on 127.0.0.1 and in a temporary directory, `cfssl serve` (TLS, HMAC
# `authsign`, an EC P-256 CA) and a release `onlineca serve` (EC P-256 CA,
# rate_limit = 0, no per-address connection cap, one user, one trusted retriever), then drives both with
# `onlineca-load` in alternation (onlineca paths, cfssl, onlineca paths, cfssl) at
# c=1 and c=16, with a new connection per request and with keep-alive. Prints one
# Markdown table (throughput ratio, server CPU per certificate, p99), then onlineca's
# idle memory, memory with HOLD open connections, and its time from spawn to ready.
#
# Usage: bench/compare.sh     Environment: SECS (per run, default 10), WARMUP (per
# run, default 2), CSR_KEY (rsa2048 | p256, default rsa2048), HOLD (default 1000),
# CONCURRENCY (default "1 16"), MODES (default "new keepalive").
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
warm=${WARMUP:-2}
csr_key=${CSR_KEY:-rsa2048}
hold=${HOLD:-1000}
concurrency=${CONCURRENCY:-1 16}
modes=${MODES:-new keepalive}

need_pkg() { # command, Debian package
  command -v "$1" >/dev/null && return
  echo "== installing $2" >&2
  apt-get install -y "$2" >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}
need_pkg cfssl golang-cfssl
need_pkg openssl openssl
need_pkg curl curl
need_pkg python3 python3

echo "== building release binaries" >&2
cargo build --release -q -p onlineca -p onlineca-load
bin=$PWD/target/release/onlineca
load=$PWD/target/release/onlineca-load

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now_ms() { date +%s%3N; }
# A self-signed EC P-256 CA: dir/name.pem, dir/name.key.
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
    -subj "$3" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$1/$2.key" -out "$1/$2.pem" 2>/dev/null
}
# An EC P-256 leaf signed by CA dir/ca: dir/name.pem, dir/name.key; $5: extensions.
make_leaf() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$4" \
    -keyout "$1/$3.key" -out "$1/$3.csr" 2>/dev/null
  printf '%b' "$5" >"$1/$3.ext"
  openssl x509 -req -days 2 -in "$1/$3.csr" -CA "$1/$2.pem" -CAkey "$1/$2.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$1/$3.ext" -out "$1/$3.pem" 2>/dev/null
}

# ---- cfssl: EC P-256 CA, TLS, HMAC authsign ------------------------------------
c=$work/cfssl
mkdir -p "$c"
make_ca "$c" ca "/O=Bench/CN=cfssl bench CA"
make_leaf "$c" ca tls /CN=127.0.0.1 \
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n'
openssl rand -hex 32 >"$c/hmac.hex"
cat >"$c/config.json" <<EOF
{
  "signing": {
    "default": {
      "auth_key": "bench",
      "expiry": "12h",
      "usages": ["signing", "digital signature", "client auth"]
    }
  },
  "auth_keys": {
    "bench": { "type": "standard", "key": "$(cat "$c/hmac.hex")" }
  }
}
EOF
cfssl_port=$(free_port)
cfssl serve -address 127.0.0.1 -port "$cfssl_port" -ca "$c/ca.pem" -ca-key "$c/ca.key" \
  -config "$c/config.json" -tls-cert "$c/tls.pem" -tls-key "$c/tls.key" \
  >"$c/out" 2>"$c/log" &
cfssl_pid=$!
pids+=("$cfssl_pid")
cfssl_url=https://127.0.0.1:$cfssl_port

# ---- onlineca: EC P-256 CA, one user, one retriever ----------------------------
o=$work/onlineca
"$bin" init --dir "$o" --key-type p256 >/dev/null 2>&1
# One address makes every request here: lift the per-address limit.
sed -i "s/^rate_limit = 120/rate_limit = 0/" "$o/onlineca.toml"
grep -q '^rate_limit = 0' "$o/onlineca.toml" || { echo "could not set rate_limit = 0" >&2; exit 1; }
# Every connection here comes from 127.0.0.1: let it hold as many as the HOLD test opens.
sed -i "s/^max_connections_per_address = 64 /max_connections_per_address = 4096 /" "$o/onlineca.toml"
grep -q '^max_connections_per_address = 4096' "$o/onlineca.toml" ||
  { echo "could not raise max_connections_per_address" >&2; exit 1; }
head -c 18 /dev/urandom | base64 >"$work/password"
"$bin" user add bench --password-stdin --config "$o/onlineca.toml" <"$work/password" >/dev/null 2>&1
# A portal, trusted as a retriever for user bench, with its own anchor CA.
make_ca "$work" portal-ca "/O=Bench/CN=Portal CA"
make_leaf "$work" portal-ca portal "/O=Bench/OU=Portals/CN=portal.bench" \
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n'
sed -i "s|^retriever_anchors = \[\]|retriever_anchors = [\"$work/portal-ca.pem\"]|" "$o/onlineca.toml"
grep -q "^retriever_anchors = \[\"$work" "$o/onlineca.toml" || { echo "could not set retriever_anchors" >&2; exit 1; }
printf '\n[[retrievers]]\nsubject = "/O=Bench/OU=Portals/CN=portal.bench"\nusers = ["bench"]\n' >>"$o/onlineca.toml"
"$bin" config check --config "$o/onlineca.toml" >/dev/null

onlineca_port=$(free_port)
onlineca_url=https://127.0.0.1:$onlineca_port/onlineca
spawned=$(now_ms)
"$bin" serve --config "$o/onlineca.toml" --listen "127.0.0.1:$onlineca_port" >"$o/out" 2>"$o/log" &
onlineca_pid=$!
pids+=("$onlineca_pid")
# Ready: from spawn to the first successful answer (curl's own start-up included).
for _ in $(seq 2000); do
  curl -sf -o /dev/null --cacert "$o/ca/root.pem" "$onlineca_url/trustroots/" && break
  kill -0 "$onlineca_pid" 2>/dev/null || { echo "onlineca exited:" >&2; cat "$o/log" >&2; exit 1; }
  sleep 0.005
done
ready_ms=$(($(now_ms) - spawned))
for _ in $(seq 200); do
  curl -s -o /dev/null --cacert "$c/ca.pem" "$cfssl_url/" && break
  kill -0 "$cfssl_pid" 2>/dev/null || { echo "cfssl exited:" >&2; cat "$c/log" >&2; exit 1; }
  sleep 0.05
done
idle_rss=$(awk '/^VmRSS/ {print $2}' "/proc/$onlineca_pid/status")
echo "== onlineca $onlineca_url (pid $onlineca_pid, ready in $ready_ms ms), cfssl $cfssl_url (pid $cfssl_pid)" >&2

# ---- load ------------------------------------------------------------------------
results=$work/results
mkdir -p "$results"
common=(--csr-key "$csr_key" --csr-cache "$work/csrs-$csr_key.pem" --json)
# run NAME PATH MODE C [extra args]: one load run, its JSON in $results/NAME.json.
run() {
  local name=$1 path=$2 mode=$3 conc=$4
  shift 4
  local args
  case $path in
  cfssl) args=(--target cfssl --url "$cfssl_url" --cacert "$c/ca.pem"
    --hmac-key-hex-file "$c/hmac.hex" --server-pid "$cfssl_pid") ;;
  password) args=(--url "$onlineca_url" --cacert "$o/ca/root.pem" --auth password
    --user bench --password-file "$work/password" --server-pid "$onlineca_pid") ;;
  renewal) args=(--url "$onlineca_url" --cacert "$o/ca/root.pem" --auth renewal
    --user bench --password-file "$work/password" --server-pid "$onlineca_pid") ;;
  retriever) args=(--url "$onlineca_url" --cacert "$o/ca/root.pem" --auth retriever
    --user bench --cert "$work/portal.pem" --key "$work/portal.key" --server-pid "$onlineca_pid") ;;
  esac
  if ! "$load" "${args[@]}" "${common[@]}" --connection "$mode" -c "$conc" "$@" >"$results/$name.json"; then
    echo "== $name failed; its report: $(cat "$results/$name.json")" >&2
    exit 1
  fi
  python3 - "$results/$name.json" "$name" >&2 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["server"] or {}
print(f"   {sys.argv[2]:<26} {r['certs_per_s']:8.1f}/s  server {s.get('cpu_ms_per_cert') or 0:.3f} ms/cert"
      f"  generator {r['generator_cpu_ms_per_cert'] or 0:.3f} ms/cert  p99 {r['latency_ms']['p99']:.2f} ms"
      f"  errors {r['errors']}" + (f" {r['errors_by_kind']} first: {r['first_error']}" if r['errors'] else ""))
PY
}

echo "== warm-up (CSR pool, credential cache)" >&2
run warm-password password keepalive 1 --duration 1s --warmup 0s
run warm-cfssl cfssl keepalive 1 --duration 1s --warmup 0s

paths="password renewal retriever"
for mode in $modes; do
  for conc in $concurrency; do
    echo "== $mode connection, c=$conc (${secs}s runs after ${warm}s warm-up; onlineca then cfssl, twice)" >&2
    for rep in 1 2; do
      for path in $paths; do
        run "$path-$mode-$conc-$rep" "$path" "$mode" "$conc" --duration "${secs}s" --warmup "${warm}s"
      done
      run "cfssl-$mode-$conc-$rep" cfssl "$mode" "$conc" --duration "${secs}s" --warmup "${warm}s"
    done
  done
done

echo "== holding $hold connections" >&2
"$load" --url "$onlineca_url" --cacert "$o/ca/root.pem" --hold "$hold" --hold-for 3s \
  --server-pid "$onlineca_pid" --json >"$results/hold-onlineca.json"
"$load" --target cfssl --url "$cfssl_url" --cacert "$c/ca.pem" --hold "$hold" --hold-for 3s \
  --server-pid "$cfssl_pid" --json >"$results/hold-cfssl.json"
cfssl_idle_rss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server_before"]["vm_rss_kib"])' "$results/hold-cfssl.json")

# ---- the table ---------------------------------------------------------------------
python3 - "$results" "$paths" "$modes" "$concurrency" "$idle_rss" "$ready_ms" "$cfssl_idle_rss" \
  "$csr_key" "$secs" <<'PY'
import json, os, sys
res, paths, modes, concs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
idle_rss, ready_ms, cfssl_idle, csr_key, secs = sys.argv[5:10]

def load(name):
    return json.load(open(os.path.join(res, name + ".json")))

def combine(prefix):
    runs = [load(f"{prefix}-{rep}") for rep in (1, 2)]
    certs = sum(r["certificates"] for r in runs)
    window = sum(r["window_s"] for r in runs)
    cpu = sum(r["server"]["cpu_ms"] for r in runs)
    return {
        "rate": certs / window if window else 0.0,
        "cpu": cpu / certs if certs else float("nan"),
        "p99": max(r["latency_ms"]["p99"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }

print(f"\n{csr_key} CSRs, EC P-256 CAs, {secs} s per run, each figure over two runs (A B A B)\n")
print("| path | mode | c | onlineca certs/s | cfssl certs/s | ratio | onlineca CPU ms/cert | cfssl CPU ms/cert | onlineca p99 ms | errors (onlineca/cfssl) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mode in modes:
    for c in concs:
        cf = combine(f"cfssl-{mode}-{c}")
        for path in paths:
            on = combine(f"{path}-{mode}-{c}")
            ratio = on["rate"] / cf["rate"] if cf["rate"] else float("inf")
            print(f"| {path} | {mode} | {c} | {on['rate']:,.0f} | {cf['rate']:,.0f} | {ratio:.2f}× "
                  f"| {on['cpu']:.3f} | {cf['cpu']:.3f} | {on['p99']:.1f} | {on['errors']}/{cf['errors']} |")

ho, hc = load("hold-onlineca"), load("hold-cfssl")
mib = lambda kib: f"{int(kib) / 1024:.1f} MiB"
print()
print(f"- onlineca idle RSS (after start): {mib(idle_rss)}; after the runs: {mib(ho['server_before']['vm_rss_kib'])}"
      f" (cfssl: {mib(cfssl_idle)})")
print(f"- RSS with {ho['held_connections']} open connections: onlineca {mib(ho['server_holding']['vm_rss_kib'])}"
      f" ({ho['failed']} failed to open); cfssl {mib(hc['server_holding']['vm_rss_kib'])}"
      f" ({hc['held_connections']} held)")
print(f"- onlineca ready {ready_ms} ms after spawn (first successful GET trustroots/, curl start-up included)")
print(f"- TLS negotiated: onlineca {load('warm-password')['tls']}; cfssl {load('warm-cfssl')['tls']}")
PY
