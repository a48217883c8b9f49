#!/usr/bin/env bash
# Fuzzes the readers of untrusted files (GGUF container, GGUF tokenizer, saved interventions and
# checkpoints) with cargo-fuzz/libFuzzer and AddressSanitizer.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]     (default: 30 s each, all three)
# Seeds: fuzz/seeds/<target> (committed) and fuzz/seeds-model/<target> (cut from the default
# model by fuzz/make_seeds.py, made here when missing; never committed); the growing corpus is
# kept in fuzz/corpus/<target> (git-ignored); crashes land in fuzz/artifacts/<target>.
# A crash, a hang over 10 s, or one allocation over 512 MiB (inputs are at most ~70 KB) fails.
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z sanitizer flags (the sanitizer
# runtimes ship with the stable standard library).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(gguf_reader gguf_tokenizer intervention_file)
if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
if [[ ! -d fuzz/seeds-model/gguf_tokenizer ]]; then
  [[ -x .venv/bin/python ]] || bash scripts/venv.sh
  bash scripts/fetch-model.sh
  .venv/bin/python fuzz/make_seeds.py
fi
export RUSTC_BOOTSTRAP=1
(cd fuzz && cargo fuzz build -O)
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/$t.log"
  echo "== fuzzing $t for $seconds s"
  start=$(date +%s)
  (cd fuzz && cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" $( [[ -d "seeds-model/$t" ]] && echo "seeds-model/$t") -- \
      -max_total_time="$seconds" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=512 -print_final_stats=1) >"$log" 2>&1 || {
    tail -40 "$log"
    echo "== $t FAILED (log: $log, inputs: fuzz/artifacts/$t)"
    exit 1
  }
  stat() { grep -o "stat::$1: *[0-9]*" "$log" | grep -o '[0-9]*$' || echo "?"; }
  done_line=$(grep 'DONE' "$log" | tail -1)
  echo "== $t: $(stat number_of_executed_units) executions in $(( $(date +%s) - start )) s," \
    "$(echo "$done_line" | grep -o 'cov: [0-9]*'), corpus $(echo "$done_line" | grep -o 'corp: [^ ]*')" \
    "(files in fuzz/corpus/$t: $(ls "fuzz/corpus/$t" | wc -l)), peak RSS $(stat peak_rss_mb) MiB, no crash"
done
