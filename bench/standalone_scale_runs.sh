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
static="student.token_lattice=false student.bigram_buckets=0"  # runs before the bigram rows shipped
lattice="student.token_lattice=true student.bigram_buckets=0"
# Every run before the last section trained its corpus stage as the config did then (cosine + 0.5
# InfoNCE at lr 0.002); the config now ships cosine alone at lr 0.005 there (the last section).
was="stages[0].loss.terms.infonce=0.5 stages[0].optim.lr=0.002"

run st-10k 10000 $static $was
run st-100k-ep 100000 $static $(pass 782) $was
for seed in 0 1 2; do
  run st-300k-ep$([ $seed = 0 ] || echo "-s$seed") 300000 $static run.seed=$seed $(pass 2344) $was
done
run lat-300k-ep 300000 $lattice $(pass 2344) $was
run sc-10k 10000 $lattice $was
run sc-100k 100000 $lattice $was
run sc-300k 300000 $lattice $was
run sc-100k-static 100000 $static $was

# What the anchors say matters at scale, each against st-300k-ep (seed 0, same data and schedule):
for seed in 0 1 2; do                                                 # two passes (the shipped recipe)
  run st-300k-2ep$([ $seed = 0 ] || echo "-s$seed") 300000 $static run.seed=$seed $(pass 4688) $was
done
# Both sides (loss.both_sides): the qa stage alone, again, from each two-pass seed's Dolly-text
# student, as shipped (qa-base) and with the student's own answer encodings in the loss (qa-both).
qa() {  # qa NAME INIT SEED [overrides...]
  local name=$1 init=$2 seed=$3; shift 3
  distill train "$CFG" --resume --set "${common[@]}" run.name="$name" run.seed="$seed" student.bigram_buckets=0 \
    student.init_from="$init" "stages=[{name: qa, data: {task: pairs}, loss: {terms: {cosine: 0.5, infonce: 1.0}}, optim: {lr: 0.001}, train: {max_steps: 300}}]" "$@"
}
for seed in 0 1 2; do
  s=$([ $seed = 0 ] || echo "-s$seed")
  qa qa-base-s$seed "$RUNS/st-300k-2ep$s-dolly/student" $seed
  qa qa-both-s$seed "$RUNS/st-300k-2ep$s-dolly/student" $seed loss.both_sides.infonce=1.0 loss.both_sides.cosine=1.0
  qa qa-anc-s$seed "$RUNS/st-300k-2ep$s-dolly/student" $seed loss.both_sides.cosine=1.0
done

# 1M sentences (the whole corpus), two passes, seeds 0 and 1. Fill the other 700k rows first:
# ~45 min of a quiet 2-core machine, 1.5 h with a training beside it.
distill embed "$CFG" --set "${common[@]}" stages[0].data.max_pairs=1000000
for seed in 0 1; do
  s=$([ $seed = 0 ] || echo "-s$seed")
  run st-1m-2ep$s 1000000 $static run.seed=$seed $(pass 15600) $was
  qa qa1m-both$s "$RUNS/st-1m-2ep$s-dolly/student" $seed loss.both_sides.infonce=1.0 loss.both_sides.cosine=1.0
done

run st-300k-rel 300000 $static $(pass 2344) loss.terms.relational=10 $was # + in-batch similarity-matrix term
run st-300k-w384 300000 $static $(pass 2344) student.token_dim=384 $was # token width 384 (MiniLM's own; 512 > its 384 cannot be PCA'd)
run st-300k-center 300000 $static $(pass 2344) loss.target_norm=center $was

# A second teacher (all-mpnet-base-v2; `make mpnet` first): 20k corpus sentences, 600 corpus steps,
# MiniLM alone, MiniLM + MPNet, MPNet alone. MPNet embeds ~10 rows/s on one busy core: fill first.
MP=$ROOT/configs/experiments/standalone_corpus_mpnet.yaml
MPNET_ONLY="teachers=[{name: mpnet, preset: mpnet, max_length: 128}]"   # with $CFG: MPNet alone
distill embed "$MP" --set "${common[@]}" stages[0].data.max_pairs=20000
mp() {  # mp NAME CONFIG [overrides...]
  local name=$1 cfg=$2; shift 2
  distill train "$cfg" --resume --set "${common[@]}" run.name="$name" stages[0].data.max_pairs=20000 $static $(pass 600) "$@"
}
mp one-20k "$CFG" $was
mp two-20k "$MP" $was
mp mp-20k "$CFG" "$MPNET_ONLY" $was
mp two-20k-center "$MP" loss.target_norm=center $was
# ... and on 30k sentences with the recipe as shipped (two passes = 470 corpus steps), seeds 0 and 1,
# against r30k-static-s0/s1 below (MiniLM alone): MPNet alone, and MiniLM + MPNet. MPNet embedded
# 5 rows/s per process here (two processes: the 30k corpus rows in 57 min, Dolly's after them).
# python bench/standalone_scale.py --runs ... --out bench/results/standalone_mpnet_30k.json
distill embed "$MP" --set "${common[@]}" stages[0].data.max_pairs=30000
run_mp() {  # run_mp NAME N [overrides...]: `run` with MiniLM + MPNet (the two-teacher config)
  local name=$1 n=$2; shift 2
  distill train "$MP" --resume --set "${common[@]}" run.name="$name" stages[0].data.max_pairs="$n" "$@"
}
two30k() {  # two30k NAME SEED [overrides...]: MiniLM + MPNet, 30k sentences, two passes
  local name=$1 seed=$2; shift 2
  run_mp "$name" 30000 run.seed="$seed" $(pass 470) "$@"
}
for seed in 0 1; do
  run mp30k-s$seed 30000 $static run.seed=$seed $(pass 470) "$MPNET_ONLY"
  two30k two30k-s$seed $seed
  two30k twomp30k-s$seed $seed student.input_teacher=mpnet   # the same two teachers, the student reading MPNet's tokens
  # token width 512 (MPNet's 768-d token embeddings PCA'd; MiniLM's 384 cannot give 512):
  # bench/results/standalone_mpnet_width_30k.json
  run mp512-30k-s$seed 30000 $static run.seed=$seed $(pass 470) "$MPNET_ONLY" student.token_dim=512
done

# Composition (the order probe): the lattice student on the first 100k sentences plus 30k of them
# with two words swapped (bench.standalone_scale.swap_two_words, seed 1), each text its own
# MiniLM target; one pass (1016 steps). Against sc-100k and lat-300k-ep above.
SWAPS=${SWAPS:-$RUNS/swap130k.jsonl}
mkdir -p "$RUNS"
PYTHONPATH="$ROOT" python - "$CORPUS" "$SWAPS" <<'PY'
import gzip, json, random, sys
from bench.standalone_scale import swap_two_words
rng, texts = random.Random(1), []
with gzip.open(sys.argv[1], "rt") as f:
    for i, line in zip(range(100000), f):
        texts.append(json.loads(line)["text"])
swapped = [s for s in (swap_two_words(t, rng) for t in texts[:40000]) if s is not None][:30000]
rows = texts + swapped
random.Random(2).shuffle(rows)
with open(sys.argv[2], "w") as f:
    f.writelines(json.dumps({"text": t}) + "\n" for t in rows)
PY
distill train "$CFG" --resume --set "${common[@]}" run.name=lat-swap stages[0].data.path="$SWAPS" $lattice $(pass 1016) $was

# The corpus stage as shipped now (cosine alone, lr 0.005: the config's stage 1), 300k two passes,
# 3 seeds, and 1M two passes, seed 0; compare with st-300k-2ep* and st-1m-2ep. Screened first with
# bench/standalone_probe.py (docs/benchmarks/standalone.md "The corpus stage").
for seed in 0 1 2; do
  run cz-300k-lr5-s$seed 300000 $static run.seed=$seed $(pass 4688)
done
run cz-1m-lr5-s0 1000000 $static run.seed=0 $(pass 15600)

# Word order (docs/benchmarks/standalone.md "Word order"): the recipe on the first 30k sentences, two
# passes (470 corpus steps), with and without student.position_weights, seeds 0 and 1 (the 100k
# runs below: bench/results/standalone_position_100k.json); measured with
#   python bench/standalone_scale.py --runs "static/30k-s0=$RUNS/r30k-static-s0" ... --out bench/results/standalone_position.json
# The order-loss and position screens are bench/standalone_probe.py arms (bench/results/standalone_order_probe.json).
for seed in 0 1; do
  run r30k-static-s$seed 30000 $static run.seed=$seed $(pass 470)
  run r30k-pos-s$seed 30000 $static run.seed=$seed $(pass 470) student.position_weights=vector
done
# ... and on the first 100k, two passes (1562 corpus steps), seeds 0 and 1.
for seed in 0 1; do
  run r100k-static-s$seed 100000 $static run.seed=$seed $(pass 1562)
  run r100k-pos-s$seed 100000 $static run.seed=$seed $(pass 1562) student.position_weights=vector
done
# Four passes at 100k (3124 corpus steps), seeds 0 and 1, against the two-pass runs above
# (docs/benchmarks/standalone.md "Post-hoc ..., and more passes"; bench/results/standalone_passes_100k.json).
for seed in 0 1; do
  run r100k-4p-s$seed 100000 $static run.seed=$seed $(pass 3124)
done
# A pooled MLP (student.pooled_mlp: a residual MLP on the mean, before the head; a deep-averaging
# network) at 100k, two passes, seeds 0 and 1, against r100k-static-s0/s1 above
# (docs/benchmarks/standalone.md "A pooled MLP"; bench/results/standalone_pooled_mlp_100k.json).
for seed in 0 1; do
  run r100k-mlp512-s$seed 100000 $static run.seed=$seed $(pass 1562) student.pooled_mlp=512
done
# Short spans (docs/benchmarks/standalone.md "Short spans"): the first 100k sentences plus one random
# 2-12-word span of each (bench/standalone_crops.py, --span-seeds 0), or two (--span-seeds 0 1),
# each span its own MiniLM target; two passes over all the texts (3124 / 4686 corpus steps), seeds 0
# and 1, against r100k-static-s0/s1 and r100k-4p-s0/s1 above (bench/results/standalone_spans_100k.json).
SPANS=$ROOT/.cache/spans
python "$ROOT/bench/standalone_crops.py" --corpus "$CORPUS" --n 100000 --span-seeds 0 --out "$SPANS/mix100k-1.jsonl.gz"
python "$ROOT/bench/standalone_crops.py" --corpus "$CORPUS" --n 100000 --span-seeds 0 1 --out "$SPANS/mix100k-2.jsonl.gz"
for seed in 0 1; do
  run r100k-crops-s$seed 200000 $static run.seed=$seed $(pass 3124) stages[0].data.path="$SPANS/mix100k-1.jsonl.gz"
  run r100k-spans2-s$seed 300000 $static run.seed=$seed $(pass 4686) stages[0].data.path="$SPANS/mix100k-2.jsonl.gz"
done
# The qa stage alone at a lower learning rate, or with more cosine and less InfoNCE, from the 100k
# two-pass runs' Dolly-text students (bench/results/standalone_qa_100k.json).
for seed in 0 1; do
  qa qa100k-lr5e4-s$seed "$RUNS/r100k-static-s$seed-dolly/student" $seed stages[0].optim.lr=0.0005
  qa qa100k-cos1-s$seed "$RUNS/r100k-static-s$seed-dolly/student" $seed stages[0].loss.terms.cosine=1.0 stages[0].loss.terms.infonce=0.25
done
# Where the Dolly-text stage's STS gain comes from: one text stage alone (300 steps, the base loss
# cosine + 0.5 InfoNCE at lr 0.002 unless set) from the 100k runs' corpus-stage students: Dolly's
# texts with cosine alone, and corpus texts instead of Dolly's; then ChatterBot's texts (200 steps)
# after the Dolly-text stage (bench/results/standalone_text_stage_100k.json).
one_stage() {  # one_stage NAME INIT SEED STAGE
  distill train "$CFG" --resume --set "${common[@]}" run.name="$1" run.seed="$3" student.bigram_buckets=0 \
    student.init_from="$2" "stages=[$4]"
}
for seed in 0 1; do
  one_stage p2-dollycos-s$seed "$RUNS/r100k-static-s$seed-corpus/student" $seed \
    "{name: d2, data: {task: texts, text_fields: [question, answer]}, loss: {terms: {cosine: 1.0, infonce: 0.0}}, train: {max_steps: 300}}"
  one_stage p2-corpus-s$seed "$RUNS/r100k-static-s$seed-corpus/student" $seed \
    "{name: c2, data: {path: $CORPUS, task: texts, text_fields: [text], max_pairs: 100000, holdout_fraction: 0.02, validation_fraction: 0.02, holdout_max: 2000, validation_max: 2000}, train: {max_steps: 300}}"
  one_stage p3-chat-s$seed "$RUNS/r100k-static-s$seed-dolly/student" $seed \
    "{name: chat, data: {path: 'builtin:chatterbot_english', task: texts, text_fields: [question, answer]}, train: {max_steps: 200}}"
done
# The Dolly-text stage with each training answer's sentences as extra texts (distill.data.text_sentences,
# what data.sentences reads: split after . ! ?, at least 3 words; the file written from
# bench.standalone_data.dolly_splits()["train"] as in docs/benchmarks/standalone.md), then the qa stage
# (bench/results/standalone_dolly_sentences_100k.json).
DSENT=$ROOT/.cache/spans/dolly_train_sents.jsonl.gz
mkdir -p "$(dirname "$DSENT")"
python - "$DSENT" "$ROOT" <<'PY'
import gzip, json, sys
sys.path.insert(0, sys.argv[2])
from bench.standalone_data import dolly_splits
from distill.data import text_sentences
q, a = dolly_splits()["train"]
sents = [s for t in a for s in text_sentences(t)]
with gzip.open(sys.argv[1], "wt") as f:
    for t in dict.fromkeys(q + a + sents):
        f.write(json.dumps({"text": t}) + "\n")
PY
DS_STAGE="{name: ds, data: {path: $DSENT, task: texts, text_fields: [text], holdout_fraction: 0.02, validation_fraction: 0.02}, train: {max_steps: 300}}"
dsent() {  # dsent NAME FROM SEED: that stage from FROM's corpus-stage student, then the qa stage
  one_stage "$1-s$3" "$RUNS/$2-s$3-corpus/student" "$3" "$DS_STAGE"
  qa "$1-qa-s$3" "$RUNS/$1-s$3/student" "$3"
}
for seed in 0 1; do
  dsent p4-dsent r100k-static $seed
done
# Both: the +1-span corpus-stage students, then the Dolly-text stage with the answers' sentences,
# then the qa stage (bench/results/standalone_spans_sentences_100k.json).
for seed in 0 1; do
  dsent p5-spans-dsent r100k-crops $seed
done
# ... and a third seed of the four arms (shipped, + spans, + answer sentences, + both).
run r100k-static-s2 100000 $static run.seed=2 $(pass 1562)
run r100k-crops-s2 200000 $static run.seed=2 $(pass 3124) stages[0].data.path="$SPANS/mix100k-1.jsonl.gz"
dsent p4-dsent r100k-static 2
dsent p5-spans-dsent r100k-crops 2
# The two extra-text gains as data options, at 300k (docs/benchmarks/standalone.md "Spans and
# answer sentences at 300k"): data.spans=1 on the corpus stage (each training sentence and one span
# of it, the same span texts as bench/standalone_crops.py --n 300000 --span-seeds 0 writes, so one
# store fill serves both; two passes over ~592k texts = 9250 steps) and data.sentences on the
# Dolly-text stage, against the shipped recipe on the same 300k sentences, seeds 0 1 2
# (bench/results/standalone_aug_300k.json).
python "$ROOT/bench/standalone_crops.py" --corpus "$CORPUS" --n 300000 --span-seeds 0 --out "$SPANS/mix300k-1.jsonl.gz"
distill embed "$CFG" --set "${common[@]}" stages[0].data.path="$SPANS/mix300k-1.jsonl.gz" stages[0].data.max_pairs=600000
for seed in 0 1 2; do
  run r300k-aug-s$seed 300000 $static run.seed=$seed $(pass 9250) stages[0].data.spans=1 stages[1].data.sentences=true
  run r300k-base-s$seed 300000 $static run.seed=$seed $(pass 4688)
  # each alone (their corpus stages are the two runs' above, copied: the same config and seed)
  run r300k-sp-s$seed 300000 $static run.seed=$seed $(pass 9250) stages[0].data.spans=1
  run r300k-se-s$seed 300000 $static run.seed=$seed $(pass 4688) stages[1].data.sentences=true
  # the qa stage's weights blended with the Dolly-text stage's it started from (bench/standalone_blend.py)
  for arm in base aug; do
    for a in 25 50 75; do
      python "$ROOT/bench/standalone_blend.py" --start "$RUNS/r300k-$arm-s$seed-dolly" --final "$RUNS/r300k-$arm-s$seed" \
        --alpha 0.$a --out "$ROOT/.cache/blend/r300k-$arm-s$seed-a$a"
    done
  done
done
# Position weights (student.position_weights: vector) at 300k, seeds 0 1 2, against r300k-base-s*
# above (bench/results/standalone_position_300k.json).
for seed in 0 1 2; do
  run r300k-pos-s$seed 300000 $static run.seed=$seed $(pass 4688) student.position_weights=vector
done
# ... and learned in the two Dolly stages only, on the shipped plain-mean corpus stage (the corpus
# stage here has r300k-base-s*'s config and seed; the measured runs reused r300k-base-s*-corpus's
# exports, converted to a position-weighted student with weights 1: the start init_from now gives).
for seed in 0 1 2; do
  run r300k-pq-s$seed 300000 $static run.seed=$seed $(pass 4688) \
    stages[1].student.position_weights=vector stages[2].student.position_weights=vector
done
# Hashed token-pair rows (student.bigram_buckets: 16384) at 300k, seeds 0 1 2, against r300k-base-s*
# (bench/results/standalone_bigrams_300k.json): throughout (bg), in the Dolly stages only on the
# shipped corpus stage (bq; the measured runs copied r300k-base-s*-corpus, the same config and seed,
# and --resume skipped it), and with data.spans and data.sentences as in r300k-aug-s* (bga).
for seed in 0 1 2; do
  run r300k-bg-s$seed 300000 $static run.seed=$seed $(pass 4688) student.bigram_buckets=16384
  run r300k-bq-s$seed 300000 $static run.seed=$seed $(pass 4688) \
    stages[1].student.bigram_buckets=16384 stages[2].student.bigram_buckets=16384
  run r300k-bga-s$seed 300000 $static run.seed=$seed $(pass 9250) student.bigram_buckets=16384 \
    stages[0].data.spans=1 stages[1].data.sentences=true
done
# ... and the bucket count, throughout: 4096 (seeds 0 1 2) and 65536 (seed 0).
for seed in 0 1 2; do
  run r300k-bg4-s$seed 300000 $static run.seed=$seed $(pass 4688) student.bigram_buckets=4096
done
run r300k-bg64-s0 300000 $static run.seed=0 $(pass 4688) student.bigram_buckets=65536
# Swapped texts for the pair rows: the first 300k sentences plus 60k of them (4+ words) with two
# words swapped (bench.standalone_scale.swap_two_words, seed 7), each its own MiniLM target; two
# passes over the 360k (5625 corpus steps), 16,384 buckets, seeds 0 and 1, against r300k-bg-s0/s1
# (docs/benchmarks/standalone.md "A second teacher at 100k"; bench/results/standalone_swaps_bigram_360k.json).
SWAPS360=$RUNS/swap360k.jsonl.gz
PYTHONPATH="$ROOT" python - "$CORPUS" "$SWAPS360" <<'PY'
import gzip, json, random, sys
from pathlib import Path
from bench.standalone_data import read_corpus
from bench.standalone_scale import swap_two_words
rng, texts = random.Random(7), read_corpus(Path(sys.argv[1]), 300000)
src = texts[:]
random.Random(8).shuffle(src)
swapped = [s for s in (swap_two_words(t, rng) for t in src[:80000] if len(t.split()) >= 4) if s is not None][:60000]
rows = texts + swapped
random.Random(9).shuffle(rows)
with gzip.open(sys.argv[2], "wt") as f:
    f.writelines(json.dumps({"text": t}) + "\n" for t in rows)
PY
for seed in 0 1; do
  run r360k-sw-s$seed 360000 $static run.seed=$seed $(pass 5625) student.bigram_buckets=16384 stages[0].data.path="$SWAPS360"
done
# A second teacher at 100k (the issue's size), seeds 0 1 2: MiniLM alone (r100k-static-s*, as in
# "Word order" above), MPNet alone (MPNet's tokens) and MiniLM + MPNet (MiniLM's tokens); the plain
# mean, two passes (1562 corpus steps), all trained in the same pass
# (bench/results/standalone_mpnet_100k.json). The MPNet fill: two processes, 11-15 rows/s each.
distill embed "$MP" --set "${common[@]}" stages[0].data.max_pairs=100000
for seed in 0 1 2; do
  run r100k-static-s$seed 100000 $static run.seed=$seed $(pass 1562)
  run mp100k-s$seed 100000 $static run.seed=$seed $(pass 1562) "$MPNET_ONLY"
  run_mp two100k-s$seed 100000 $static run.seed=$seed $(pass 1562)
done
# ... and with the shipped pair rows in both (student.bigram_buckets=16384), seeds 0 1
# (bench/results/standalone_mpnet_bigrams_100k.json).
for seed in 0 1; do
  run r100k-bg-s$seed 100000 $static run.seed=$seed $(pass 1562) student.bigram_buckets=16384
  run_mp two100k-bg-s$seed 100000 $static run.seed=$seed $(pass 1562) student.bigram_buckets=16384
done
# The shipped pair rows at 300k with four passes (9376 corpus steps), seeds 0 1, against r300k-bg-s*
# (bench/results/standalone_bigram_passes_300k.json).
for seed in 0 1; do
  run r300k-bg4p-s$seed 300000 $static run.seed=$seed $(pass 9376) student.bigram_buckets=16384
done
# Which texts: the first 300k Wikipedia and BBC sentences of the corpus (no Gutenberg, no IMDb; the
# 100k probe `bench/standalone_probe.py --sources wikipedia,bbc` scored STS +0.2 over all four
# sources, Gutenberg alone -0.8), the shipped recipe (16,384 buckets, two passes), seeds 0 1, against
# r300k-bg-s* (bench/results/standalone_sources_300k.json). The fill: about 200k new MiniLM rows,
# two processes at ~110 rows/s each.
WIKIBBC=$RUNS/wikibbc300k.jsonl.gz
PYTHONPATH="$ROOT" python - "$CORPUS" "$WIKIBBC" <<'PY'
import gzip, json, sys
from pathlib import Path
from bench.standalone_data import read_corpus
texts = read_corpus(Path(sys.argv[1]), 300000, {"wikipedia", "bbc"})
with gzip.open(sys.argv[2], "wt") as f:
    f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
PY
distill embed "$CFG" --set "${common[@]}" stages[0].data.path="$WIKIBBC" stages[0].data.max_pairs=300000
for seed in 0 1; do
  run r300k-wb-s$seed 300000 $static run.seed=$seed $(pass 4688) student.bigram_buckets=16384 stages[0].data.path="$WIKIBBC"
done
