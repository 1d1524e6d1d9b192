#!/bin/sh
# Runs every fuzz target for SECONDS each (default 600), two at a time (the
# machine has two cores), at the lowest priority. Stable Rust: RUSTC_BOOTSTRAP=1
# lets cargo-fuzz pass its -Z flags; no sanitizer by default (FUZZ_SANITIZER=address
# to use ASan, whose runtime ships with the stable toolchain).
#   fuzz/run.sh [SECONDS]
# Corpora grow in fuzz/corpus/<target> (git-ignored) from the seeds (seed.sh) and
# the kept inputs in fuzz/regressions/<target>; crashes land in fuzz/artifacts/;
# each run's log (its last line: executions, cov, ft) is fuzz/logs/<target>.log.
set -eu
secs=${1:-600}
jobs=${FUZZ_JOBS:-2}
san=${FUZZ_SANITIZER:-none}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export RUSTC_BOOTSTRAP=1
targets="csr body client_chain trustroots_client config"

[ -d seeds ] || ./seed.sh
nice -n 19 cargo fuzz build -s "$san"
mkdir -p logs

run() {
    t=$1
    mkdir -p "corpus/$t" "regressions/$t" "seeds/$t"
    rc=0
    nice -n 19 cargo fuzz run -s "$san" "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        > "logs/$t.log" 2>&1 || rc=$?
    last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)
    execs=$(grep -E '^stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}')
    echo "$t: exit $rc, ${secs}s, ${execs:-?} executions; last: $last"
    return $rc
}

status=0
set -- $targets
while [ $# -gt 0 ]; do
    pids=""
    n=0
    while [ $# -gt 0 ] && [ $n -lt "$jobs" ]; do
        ( run "$1" ) &
        pids="$pids $!"
        n=$((n + 1))
        shift
    done
    for p in $pids; do
        wait "$p" || status=1
    done
done
ls artifacts/*/* 2>/dev/null && { echo "crashes above (fuzz/artifacts)"; status=1; }
exit $status
