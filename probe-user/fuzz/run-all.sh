#!/bin/sh
# Runs every fuzz target for RUNS executions (default 1M), two at a time
# (one per core), each from its committed seeds and its working corpus
# (corpus/, not committed), with an RSS limit that catches decompression
# bombs; prints each target's executions, time and rate. Then merges each
# working corpus into regressions/TARGET with -merge=1 (the minimal set
# with the same coverage), which the host test replays.
# Needs nightly and cargo-fuzz (cargo install cargo-fuzz).
set -eu
cd "$(dirname "$0")"
runs=${RUNS:-1000000}
targets="ko_reader config_parser symvers_parser btf module_btf signature trace_decoder kallsyms proc_modules"
cargo +nightly fuzz build -O
mkdir -p logs
one() {
    t=$1
    mkdir -p "corpus/$t" "regressions/$t" "seeds/$t"
    start=$(date +%s)
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- \
        -runs="$runs" -rss_limit_mb=1024 -max_len=65536 -timeout=10 \
        -print_final_stats=1 >"logs/$t.log" 2>&1 || { echo "$t: FAILED (logs/$t.log)"; return 1; }
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "logs/$t.log")
    echo "$t: $execs executions in ${secs}s, peak RSS ${rss} MB, no crash"
}
status=0
set -- $targets
while [ $# -gt 0 ]; do
    a=$1; shift
    if [ $# -gt 0 ]; then
        b=$1; shift
        one "$a" & pa=$!
        one "$b" || status=1
        wait $pa || status=1
    else
        one "$a" || status=1
    fi
done
for t in $targets; do
    mkdir -p "regressions/$t.new"
    cargo +nightly fuzz run -O "$t" "regressions/$t.new" "regressions/$t" "corpus/$t" -- \
        -merge=1 >/dev/null 2>&1 || true
    rm -rf "regressions/$t" && mv "regressions/$t.new" "regressions/$t"
done
exit $status
