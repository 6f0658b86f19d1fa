#!/usr/bin/env bash
# Run here, where PyPI is reachable: download the wheels the device image lacks into
# benchmarks/device/wheels/ (ignored by git; carried to the device by the device tool).
#   bash benchmarks/device/prepare.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/wheels"
rm -rf "$dest" && mkdir -p "$dest"
grep -v '^#' "$here/wheels.txt" | grep . | while read -r req; do
    # Pure-Python wheels only (py3-none-any): one folder for Python 3.12 there and any 3.10+ here.
    python3 -m pip download -q --no-deps --only-binary=:all: --implementation py \
        --python-version 3.12 --platform any -d "$dest" "$req"
done
ls -1 "$dest"
du -sh "$dest"
