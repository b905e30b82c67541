#!/usr/bin/env bash
# Crash soak: the crash test (tests/it/crash.rs) with many more kills, over several seeds.
#
#   scripts/crash-soak.sh [kills] [seeds...]
#
# Defaults: 500 kills, three seeds. Each round kills the worker `kills` times at random moments and
# checks that every instruction was applied exactly once; the workload grows with the kills
# (200 instructions per 50 kills). Stops at the first failure, printing its seed to reproduce it:
#
#   ACTGUARD_CRASH_KILLS=500 ACTGUARD_CRASH_SEED=<seed> cargo test -p actguard-tests --test it crash:: -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."

kills="${1:-500}"
shift || true
seeds=("$@")
if [ "${#seeds[@]}" -eq 0 ]; then
  seeds=(1 2 3)
fi

cargo build -p actguard-tests --bin crash_worker --test it
for seed in "${seeds[@]}"; do
  echo "== crash soak: ${kills} kills, seed ${seed}"
  ACTGUARD_CRASH_KILLS="$kills" ACTGUARD_CRASH_SEED="$seed" \
    cargo test -p actguard-tests --test it crash:: -- --nocapture --test-threads=1
done
echo "== crash soak passed: ${#seeds[@]} rounds of ${kills} kills"
