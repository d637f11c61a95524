#!/usr/bin/env bash
# make screenshot: the README's pictures of what the demo model remembers.
#   docs/page.png   the page of xspan serve after a generation, in headless Chromium
#   docs/spans.png  xspan spans on a passage of the test split
# It uses the demo's run (out/demo/run), training it first with scripts/demo.sh when it is
# not there; XSPAN_SHOT_RUN names another run. It needs Debian's chromium (installed here
# when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

run=${XSPAN_SHOT_RUN:-out/demo/run}
data=${XSPAN_SHOT_DATA:-out/demo/data}
port=${XSPAN_SHOT_PORT:-18731}
mkdir -p docs

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "screenshot: needs Debian's chromium; run 'sudo apt-get install -y chromium' first" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi
if [ ! -f "$run/config.json" ] || [ -z "$(ls "$run/checkpoints" 2>/dev/null)" ]; then
  ./scripts/demo.sh
fi

# The spans picture: a passage of the test split, which the model never trained on.
./xspan cat "$data" --split test >out/test-split.txt
head -c 1400 out/test-split.txt | tail -c 700 >out/spans-text.txt
./xspan spans --ckpt "$run" --text out/spans-text.txt --png docs/spans.png --columns 90 --out out/spans.html

./xspan serve --ckpt "$run" --addr "127.0.0.1:$port" --quiet --model-name xspan-demo &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
go run ./internal/browser/shoot --url "http://127.0.0.1:$port/" --prompt "And God said unto Moses, " \
  --new-tokens 240 --seed 7 --layer 1 --hover 4 --out docs/page.png
ls -l docs/page.png docs/spans.png
