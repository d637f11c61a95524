#!/usr/bin/env bash
# The main job on a fresh machine: for now, the build and a smoke check of libtorch.
set -euo pipefail
cd "$(dirname "$0")/.."
./xspan version
