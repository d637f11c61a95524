#!/usr/bin/env bash
# gpu-check.sh: the one-shot proof that xspan runs on a GPU machine, and what it measures
# there. On a machine with this checkout, a built ./xspan with its ./xspan-native bundle
# (make build, here or elsewhere) and a PyTorch install (no Go needed), it:
#   0. builds the native library against python3's torch (or $LIBTORCH) and times it;
#   1. checks CUDA against the CPU from the same weights: the first step's loss and
#      gradient norm (fp32, relative 1e-4), the per-token log-probabilities of an
#      evaluation and the greedy text, and that a checkpoint written on CUDA loads on the CPU;
#      and the fused attention against the composed one on CUDA (first step's loss and
#      gradient norm);
#   2. trains enwik8-small on enwik8-shaped bytes made on the spot for a fixed number of
#      steps, in fp32, tf32 and bf16;
#   3. writes report.md and report.json: tokens/s, ms/step, peak GPU memory, model FLOPs
#      utilisation against the card's peak, live memory per layer, the stubbed ops.
# It must finish within 8 minutes on one H200. --device cpu --quick runs the same path on
# the CPU with a small model in about a minute (make test runs it).
#
# usage: scripts/gpu-check.sh [--device cuda|cpu] [--quick] [--steps N] [--out DIR] [--peak-tflops X]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
device=cuda quick=0 steps="" out="$root/out/gpu-check" peak=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --steps) steps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --peak-tflops) peak=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$device" in cuda|cpu) ;; *) echo "gpu-check: --device cuda or cpu" >&2; exit 2 ;; esac
xspan="$root/xspan"
[ -x "$xspan" ] || { echo "gpu-check: no $xspan: run 'make build' (here, or elsewhere and copy xspan and xspan-native/)" >&2; exit 1; }
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "gpu-check: python3 is needed for the report" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
log() { printf '== %s\n' "$*" | tee -a "$out/log.txt"; }
started=$(date +%s.%N)
elapsed() { "$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }

# 0. The native library.
build_s=""
if [ -x "$root/xspan-native/build-native" ] && { [ "$device" = cuda ] || [ ! -e "$root/.build/native/libxspantorch.so" ]; }; then
  log "0/3 native library: xspan-native/build-native"
  t=$(date +%s.%N)
  "$root/xspan-native/build-native" -bundle "$root/xspan-native" 2>&1 | tee "$out/native-build.log"
  build_s=$(elapsed "$t")
fi
"$xspan" version | tee "$out/version.txt"
lib=$(sed -n 's/^native library: //p' "$out/version.txt")
stubs="$(dirname "$lib")/STUBBED-OPS.txt"
if [ "$device" = cuda ] && ! grep -q '^cuda:0' "$out/version.txt"; then
  echo "gpu-check: xspan sees no CUDA device (see $out/version.txt)" >&2
  exit 1
fi

# Sizes: the enwik8-small preset on the GPU; a small model for --quick on the CPU.
if [ "$quick" = 1 ]; then
  corpus_bytes=400000 steps=${steps:-3} evalblocks=2 gen=40
  shape=(--preset enwik8-small --batch 4 --block 32 --set layers=2 --set dim=64 --set heads=2 --set ffn=128 --set max_span=256 --set ramp=16 --set pre_div=1)
else
  corpus_bytes=30000000 steps=${steps:-100} evalblocks=8 gen=200
  shape=(--preset enwik8-small)
fi
common=(--no-bar --threads 0 --eval-every 0 --ckpt-every 0 --warmup 10 --set dropout=0 --set noisy=false)

log "corpus: $corpus_bytes bytes of the machine's own text (enwik8-shaped: bytes; 98/1/1 split)"
find /usr/share /usr/lib/python3* -type f \( -name '*.txt' -o -name '*.py' -o -name 'copyright' -o -name '*.html' -o -name '*.md' \) -size -2M 2>/dev/null |
  sort | while read -r f; do cat "$f"; done 2>/dev/null | head -c "$corpus_bytes" >"$out/corpus.txt" || true
have=$(wc -c <"$out/corpus.txt")
[ "$have" -ge 100000 ] || { echo "gpu-check: found only $have bytes of text on this machine" >&2; exit 1; }
"$xspan" prep --input "$out/corpus.txt" --out "$out/data" --vocab byte --split 0.98,0.01,0.01 >"$out/prep.log" 2>&1

log "1/3 $device against the CPU from the same weights"
"$xspan" train --data "$out/data" --out "$out/init" "${shape[@]}" "${common[@]}" --steps 0 --device cpu >"$out/init.log" 2>&1
# "ref" runs on the CPU, "dev" on --device (the CPU too with --device cpu).
for side in ref dev; do
  d=cpu
  [ "$side" = dev ] && d=$device
  "$xspan" train --data "$out/data" --out "$out/step-$side" --init-from "$out/init" "${shape[@]}" "${common[@]}" --log-every 1 --steps 1 --device "$d" >"$out/step-$side.log" 2>&1
  "$xspan" eval --ckpt "$out/step-ref" --data "$out/data" --split valid --max-blocks "$evalblocks" --dump "$out/dump-$side.jsonl" --device "$d" --json >"$out/eval-$side.json" 2>"$out/eval-$side.log"
  "$xspan" generate --ckpt "$out/step-ref" --prompt "The " --max-new-tokens "$gen" --temperature 0 --device "$d" >"$out/greedy-$side.txt" 2>"$out/greedy-$side.log"
done
"$xspan" eval --ckpt "$out/step-dev" --data "$out/data" --split valid --max-blocks 2 --device cpu --json >"$out/cross-load.json" 2>"$out/cross-load.log"
# The same first step as one rank of a c10d group (world size 1: NCCL on CUDA, Gloo on the
# CPU): proves the distributed build; its step must equal the plain one.
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=${XSPAN_CHECK_PORT:-29517} \
  "$xspan" train --data "$out/data" --out "$out/step-dist" --init-from "$out/init" "${shape[@]}" "${common[@]}" --log-every 1 --steps 1 --device "$device" --dist-timeout 2m >"$out/step-dist.log" 2>&1 || true
# The fused attention against the composed one, both on --device, from the same weights.
for path in composed fused; do
  "$xspan" train --data "$out/data" --out "$out/step-$path" --init-from "$out/init" "${shape[@]}" "${common[@]}" --log-every 1 --steps 1 --device "$device" --set attention=$path >"$out/step-$path.log" 2>&1
done

log "2/3 training ${shape[*]} for $steps steps on $device: fp32, tf32, bf16"
for p in fp32 tf32 bf16; do
  "$xspan" train --data "$out/data" --out "$out/train-$p" "${shape[@]}" "${common[@]}" --log-every "$steps" --steps "$steps" --device "$device" --set precision=$p >"$out/train-$p.log" 2>&1
done

log "3/3 report"
"$py" - "$out" "$device" "$steps" "${build_s:-}" "$stubs" "${peak:-}" "$xspan" "$(elapsed "$started")" <<'EOF'
import json, math, os, subprocess, sys
out, device, steps, build_s, stubs, peak, xspan, wall = sys.argv[1:9]
def rows(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
def first_train(run):
    return next(r for r in rows(os.path.join(out, run, "metrics.jsonl")) if r.get("kind") == "train")
def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)
checks, ok = [], True
def check(name, passed, detail):
    global ok
    ok = ok and passed
    checks.append({"check": name, "pass": passed, "detail": detail})

a, b = first_train("step-ref"), first_train("step-dev")
check("first-step loss, cpu vs " + device, rel(a["loss"], b["loss"]) <= 1e-4, f'{a["loss"]:.7f} vs {b["loss"]:.7f} (relative {rel(a["loss"], b["loss"]):.1e})')
check("first-step gradient norm, cpu vs " + device, rel(a["grad_norm"], b["grad_norm"]) <= 1e-4, f'{a["grad_norm"]:.7f} vs {b["grad_norm"]:.7f} (relative {rel(a["grad_norm"], b["grad_norm"]):.1e})')
da, db = rows(os.path.join(out, "dump-ref.jsonl")), rows(os.path.join(out, "dump-dev.jsonl"))
worst = max(abs(x.get("bits", 0) - y.get("bits", 0)) for x, y in zip(da, db)) if len(da) == len(db) else math.inf
check("per-token log-probabilities, cpu vs " + device, len(da) == len(db) and worst <= 1e-3, f"{len(da)} tokens, largest difference {worst:.2e} bits")
ga, gb = open(os.path.join(out, "greedy-ref.txt"), "rb").read(), open(os.path.join(out, "greedy-dev.txt"), "rb").read()
same = sum(1 for x, y in zip(ga, gb) if x == y) if ga != gb else len(ga)
check("greedy text, cpu vs " + device, ga == gb, f"{len(ga)} bytes, {'identical' if ga == gb else f'first {next((i for i, (x, y) in enumerate(zip(ga, gb)) if x != y), 0)} bytes equal (a near-tie can flip an argmax; the log-probabilities decide)'}")
backend = "NCCL" if device.startswith("cuda") else "Gloo"
try:
    c = first_train("step-dist")
    check(f"c10d {backend}, world size 1: first step as the plain one", rel(c["loss"], b["loss"]) <= 1e-6 and rel(c["grad_norm"], b["grad_norm"]) <= 1e-6, f'{c["loss"]:.7f} vs {b["loss"]:.7f}, all-reduce {c.get("allreduce_ms", 0):.2f} ms')
except (OSError, StopIteration):
    tail = open(os.path.join(out, "step-dist.log")).read().strip().splitlines()[-1:] if os.path.exists(os.path.join(out, "step-dist.log")) else ["no log"]
    check(f"c10d {backend}, world size 1: first step as the plain one", False, "did not train: " + " ".join(tail)[:300])
a, b = first_train("step-composed"), first_train("step-fused")
check(f"fused attention vs composed on {device}: first-step loss and gradient norm", rel(a["loss"], b["loss"]) <= 1e-5 and rel(a["grad_norm"], b["grad_norm"]) <= 1e-4,
      f'loss {a["loss"]:.7f} vs {b["loss"]:.7f}, gradient norm {a["grad_norm"]:.7f} vs {b["grad_norm"]:.7f}')
cross = json.load(open(os.path.join(out, "cross-load.json")))
check(f"checkpoint written on {device} evaluates on the cpu", cross.get("tokens", 0) > 0, f'{cross.get("tokens")} tokens, {cross.get("bpc", 0):.4f} bpc')

cfg = json.load(open(os.path.join(out, "train-fp32", "config.json")))
L, d, B, M = cfg["layers"], cfg["dim"], cfg["batch"], cfg["block"]
name = ""
for line in open(os.path.join(out, "version.txt")):
    if line.startswith("cuda:0: "):
        name = line.split(": ", 1)[1].strip()
peaks = {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4} if "H100" in name or "H200" in name else {}
if peak:
    peaks = {p: float(peak) for p in ("fp32", "tf32", "bf16")}
runs = {}
for p in ("fp32", "tf32", "bf16"):
    rs = [r for r in rows(os.path.join(out, f"train-{p}", "metrics.jsonl")) if r.get("kind") == "train"]
    last = rs[-1]
    params = None
    for l in open(os.path.join(out, f"train-{p}.log")):
        if "parameters" in l and "model:" in l:
            params = int(l.split("model:")[1].split("parameters")[0].strip().replace(",", ""))
    live = last.get("live") or []
    lc = sum(live) / len(live) + M if live else M
    # FLOPs per token, forward and backward: 6 per parameter (the products of the weights)
    # plus the attention: per layer 2·2·d·Lc (scores and the weighted sum over Lc keys) forward, x3.
    flop_tok = 6 * (params or 0) + L * 12 * d * lc
    tps = last.get("tok_per_s", 0)
    mfu = tps * flop_tok / (peaks[p] * 1e12) if peaks and params else None
    runs[p] = {"tokens_per_second": round(tps), "ms_per_step": round(B * M / tps * 1000, 1) if tps else None,
               "peak_gpu_mib": round(last.get("gpu_peak_mib", 0)), "peak_rss_mib": round(last.get("rss_mib", 0)),
               "loss": round(last["loss"], 4), "live_per_layer": [round(x) for x in live],
               "flop_per_token": round(flop_tok), "mfu": round(mfu, 4) if mfu is not None else None, "card_peak_tflops": peaks.get(p)}
stubbed = [l.strip() for l in open(stubs) if l.strip() and not l.startswith("#")] if os.path.exists(stubs) else []
glibc = ""
try:
    t = subprocess.run(["objdump", "-T", xspan], capture_output=True, text=True).stdout
    vs = sorted({w.strip("()") for w in t.split() if w.strip("()").startswith("GLIBC_2.")}, key=lambda v: [int(x) for x in v[6:].split(".")])
    glibc = vs[-1] if vs else ""
except OSError:
    pass
rep = {"device": device, "device_name": name, "steps": int(steps), "native_build_seconds": float(build_s) if build_s else None,
       "binary_needs": glibc, "checks": checks, "all_checks_pass": ok, "training": runs, "stubbed_ops": stubbed,
       "flop_count": "6 x parameters + layers x 12 x dim x (mean live memory + block), per token, forward and backward",
       "wall_seconds": float(wall), "version": open(os.path.join(out, "version.txt")).read().splitlines()}
json.dump(rep, open(os.path.join(out, "report.json"), "w"), indent=2)
md = [f"# xspan GPU check: {device} {name}".rstrip(), ""]
md += [l for l in rep["version"]] + [""]
if build_s:
    md.append(f"Native library built in {float(build_s):.0f} s ({len(stubbed)} functions stubbed).")
if glibc:
    md.append(f"The xspan binary needs glibc {glibc[6:]} or newer.")
md += ["", "| check | result | detail |", "|---|---|---|"]
md += [f'| {c["check"]} | {"pass" if c["pass"] else "FAIL"} | {c["detail"]} |' for c in checks]
md += ["", f"Training {cfg['layers']} layers, d {d}, batch {B}x{M}, {steps} steps (FLOPs: {rep['flop_count']}):", "",
       "| precision | tokens/s | ms/step | peak GPU MiB | peak RSS MiB | MFU | live per layer | loss |", "|---|---:|---:|---:|---:|---:|---|---:|"]
for p, r in runs.items():
    mfu = f'{100 * r["mfu"]:.1f}% of {r["card_peak_tflops"]} TFLOP/s' if r["mfu"] is not None else "n/a"
    md.append(f'| {p} | {r["tokens_per_second"]} | {r["ms_per_step"]} | {r["peak_gpu_mib"]} | {r["peak_rss_mib"]} | {mfu} | {r["live_per_layer"]} | {r["loss"]} |')
md += ["", f"Stubbed ({len(stubbed)}): " + (", ".join(stubbed) if stubbed else "none"), "", f"Wall time: {float(wall):.0f} s"]
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
sys.exit(0 if ok else 1)
EOF
