#!/usr/bin/env bash
# The training runs behind bench/results/standalone_scale.json (issue #20): the standalone student
# through configs/standalone_corpus.yaml on the first N sentences of ../shared/data/corpus_1m.jsonl.gz
# (benchmark data, never shipped), MiniLM teacher. Then evaluate them all in one process:
#   python bench/standalone_scale.py --runs "static, one pass/300k-s0=$RUNS/st-300k-ep" ...
# (the JSON's "command" has the full line). One pass = max(600, N/128) corpus steps at batch 128;
# "600 steps" is the config's default. Fill the store first, once: the first line below.
# 2 CPU cores: about 10 minutes per 300k static run, 30 per lattice run, on a quiet machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$ROOT/../shared/data/corpus_1m.jsonl.gz}
STORE=${STORE:-$ROOT/.cache/targets}
RUNS=${RUNS:-$ROOT/runs/scale}
CFG=$ROOT/configs/standalone_corpus.yaml
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(stages[0].data.path=$CORPUS targets.store_dir=$STORE run.output_dir=$RUNS)

distill embed "$CFG" --set "${common[@]}" stages[0].data.max_pairs=300000     # MiniLM, ~150 rows/s

run() {  # run NAME N [overrides...]
  local name=$1 n=$2; shift 2
  distill train "$CFG" --resume --set "${common[@]}" run.name="$name" stages[0].data.max_pairs="$n" "$@"
}
pass() { echo "stages[0].train.max_steps=$1 stages[0].train.eval_every=$(($1 / 2)) stages[0].train.save_every=$(($1 / 2))"; }
static=student.token_lattice=false
lattice=student.token_lattice=true

run st-10k 10000 $static
run st-100k-ep 100000 $static $(pass 782)
for seed in 0 1 2; do
  run st-300k-ep$([ $seed = 0 ] || echo "-s$seed") 300000 $static run.seed=$seed $(pass 2344)
done
run lat-300k-ep 300000 $lattice $(pass 2344)
run sc-10k 10000 $lattice
run sc-100k 100000 $lattice
run sc-300k 300000 $lattice
run sc-100k-static 100000 $static
