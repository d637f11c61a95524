#!/bin/sh
# Data-parallel throughput on this machine: the tiny preset's global batch of 16 streams
# on one process, then on --nproc 2 ranks (Gloo on loopback), each with one intra-op
# thread. Prints tokens/s, the speed-up against the ideal 2x, and the all-reduce time per
# step (from the metrics rows). Usage: scripts/bench-dist.sh [STEPS] (default 40).
set -eu
steps=${1:-40}
out=${XSPAN_BENCH_OUT:-out/bench-dist}
xspan=${XSPAN:-./xspan}
rm -rf "$out" && mkdir -p "$out"
cat /usr/share/common-licenses/* /usr/share/common-licenses/* > "$out/corpus.txt"
"$xspan" prep --input "$out/corpus.txt" --out "$out/data" --vocab char >/dev/null 2>&1
common="--data $out/data --preset tiny --steps $steps --device cpu --threads 1 --no-bar --log-every 10 --eval-every 0 --ckpt-every 0 --valid-blocks 1"
"$xspan" train $common --out "$out/one" >/dev/null 2>"$out/one.log"
"$xspan" train $common --out "$out/two" --nproc 2 >/dev/null 2>"$out/two.log"
# The machine's own ceiling: two independent processes of 8 streams each at once (no
# communication); their summed tokens/s is what two ranks could reach here at best.
"$xspan" train $common --batch 8 --out "$out/solo0" >/dev/null 2>"$out/solo0.log" &
"$xspan" train $common --batch 8 --out "$out/solo1" >/dev/null 2>"$out/solo1.log"
wait
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def rows(run):
    # The first logged interval includes warm-up; the rest are steady.
    rs = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if '"kind":"train"' in l]
    return rs[1:] or rs
one, two = rows("one"), rows("two")
tps1 = sum(r["tok_per_s"] for r in one) / len(one)
tps2 = sum(r["tok_per_s"] for r in two) / len(two)
ar = sum(r.get("allreduce_ms", 0) for r in two) / len(two)
solo = sum(sum(r["tok_per_s"] for r in rows(s)) / len(rows(s)) for s in ("solo0", "solo1"))
step2 = 16 * 128 / tps2 * 1000
print(f"1 worker : {tps1:8.0f} tokens/s")
print(f"2 workers: {tps2:8.0f} tokens/s  = {tps2/tps1:.2f}x (ideal 2x); all-reduce {ar:.1f} ms of {step2:.0f} ms per step ({100*ar/step2:.1f}%)")
print(f"2 independent processes of 8 streams (no communication, the machine's ceiling): {solo:.0f} tokens/s = {solo/tps1:.2f}x")
PY
