#!/usr/bin/env bash
# make demo: xspan's main job, end to end, on a fresh Debian machine.
#   1. a public-domain corpus from Debian's packages (the King James Bible, bible-kjv)
#   2. xspan prep      -> a dataset folder of zstd token shards (char vocabulary)
#   3. xspan train     -> the tiny preset for a few minutes on the CPU
#   4. xspan eval      -> bits per character on the test split, memory carried
#   5. xspan generate  -> a few hundred characters, with live-memory statistics
#   6. xspan report    -> the learning curve and span statistics as a PNG
# Finished work is reused when run again (make demo-clean starts over).
# XSPAN_DEMO_STEPS sets the training steps (default 1500).
set -euo pipefail
cd "$(dirname "$0")/.."

out=out/demo
steps=${XSPAN_DEMO_STEPS:-1500}
mkdir -p "$out"
say() { printf '\n== %s\n' "$*"; }

say "1/6 corpus: the King James Bible (Debian package bible-kjv)"
if ! command -v bible >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "demo: the corpus comes from Debian's bible-kjv; run 'sudo apt-get install -y bible-kjv' first" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q bible-kjv >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bible-kjv >/dev/null; }
fi
if [ ! -s "$out/kjv.txt" ]; then
  bible -f "Gen1:1-Rev22:21" >"$out/kjv.txt.tmp"
  mv "$out/kjv.txt.tmp" "$out/kjv.txt"
fi
echo "text: $out/kjv.txt ($(wc -c <"$out/kjv.txt") bytes)"

say "2/6 xspan prep"
if [ -f "$out/data/manifest.json" ]; then
  echo "reusing the dataset in $out/data"
else
  ./xspan prep --input "$out/kjv.txt" --out "$out/data"
fi

say "3/6 xspan train: preset tiny, $steps steps"
run=$out/run
if [ -d "$run/checkpoints/$(printf 'step-%09d' "$steps")" ]; then
  echo "reusing the finished run in $run"
elif [ -f "$run/config.json" ]; then
  ./xspan train --out "$run" --resume
else
  # Validation during training looks at the first 40 blocks of each valid stream; step 4
  # evaluates the whole test split.
  ./xspan train --data "$out/data" --out "$run" --preset tiny --steps "$steps" \
    --eval-every 250 --ckpt-every 250 --valid-blocks 40
fi

say "4/6 xspan eval: the test split, one stream, memory carried"
./xspan eval --ckpt "$run" --data "$out/data" --split test | tee "$out/eval.txt"

say "5/6 xspan generate: the prompt and 400 characters after it, with memory statistics"
./xspan generate --ckpt "$run" --prompt "And God said unto Moses, " --max-new-tokens 400 --echo \
  --seed 7 --stats --stats-every 100000 | tee "$out/sample.txt"
echo

say "6/6 xspan report"
./xspan report "$run" --data "$out/data"

say "done: where everything went"
cat <<TXT
  corpus        $out/kjv.txt
  dataset       $out/data            (xspan inspect $out/data)
  run           $run                 (config.json, metrics.jsonl, checkpoints/, best)
  test bpc      $out/eval.txt
  sample        $out/sample.txt
  learning curve and spans  $run/report.png
TXT
