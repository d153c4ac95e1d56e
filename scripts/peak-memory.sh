#!/usr/bin/env bash
# Peak resident memory of `cairn index` over a directory holding one huge
# file and many small ones (issue 13 item 5: bounded resources).
#
#   scripts/peak-memory.sh [path/to/cairn]
#
# Builds /tmp/cairn-peak/src: one BIG_MB file (default 900, sparse: it takes
# no disk, but a reader that loads it still needs BIG_MB of memory) and
# SMALL_FILES source files of SMALL_KB each (defaults 1000 x 8 KiB), indexes
# it into a fresh data dir with the hash embedder (no model files needed)
# under /usr/bin/time -v and prints the "Maximum resident set size" line.
# The directory is removed afterwards unless KEEP=1.
set -euo pipefail

cairn=${1:-${CARGO_TARGET_DIR:-target}/release/cairn}
big_mb=${BIG_MB:-900}
small_files=${SMALL_FILES:-1000}
small_kb=${SMALL_KB:-8}
work=${WORK:-/tmp/cairn-peak}

[[ -x $cairn ]] || { echo "no cairn binary at $cairn (cargo build --release --bin cairn)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 2; }

rm -rf "$work"
mkdir -p "$work/src" "$work/data"
truncate -s "${big_mb}M" "$work/src/huge.rs"
python3 - "$work/src" "$small_files" "$small_kb" <<'PY'
import os, sys
root, n, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"mod{i // 100}")
    os.makedirs(d, exist_ok=True)
    body, j = [], 0
    while sum(map(len, body)) < kb * 1024:
        body.append(f"/// Computes item {i}.{j}.\npub fn item_{i}_{j}(x: u64) -> u64 {{\n    x.wrapping_mul({j + 3}) ^ {i}\n}}\n\n")
        j += 1
    with open(os.path.join(d, f"f{i}.rs"), "w") as f:
        f.write("".join(body))
PY

echo "indexing $work/src: one ${big_mb} MiB file, $small_files files of ${small_kb} KiB" >&2
CAIRN_EMBED__KIND=hash /usr/bin/time -v "$cairn" index "$work/src" --repo peak --data-dir "$work/data" \
    2> "$work/time.txt" | sed 's/^/  /' || { cat "$work/time.txt" >&2; exit 1; }
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$work/time.txt"
[[ ${KEEP:-0} == 1 ]] || rm -rf "$work"
