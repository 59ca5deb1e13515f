#!/usr/bin/env bash
# Creates (or reuses) the local virtual environment .venv and installs clkit with its extras.
# Sourced by build-book.sh and run-tests.sh; needs only Python >= 3.10 on the machine.
#   CLBOOK_VENV    where the environment lives (default: .venv in the repository)
#   CLBOOK_PYTHON  the interpreter that creates it (default: python3)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CLBOOK_VENV:-$repo/.venv}"
python="${CLBOOK_PYTHON:-python3}"

"$python" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"clbook needs Python >= 3.10, found {sys.version.split()[0]}")
PY

if [ ! -x "$venv/bin/python" ]; then
  echo ">> creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)

# torch: keep any torch already there; otherwise take the CPU build when there is no GPU, so that a
# CPU machine never downloads the multi-GB CUDA wheels. A locally provided wheel
# (pip's find-links) is preferred; otherwise PyTorch's CPU index is used.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo ">> GPU found: installing torch with CUDA support"
    "${pip[@]}" install "torch>=2.2"
  else
    echo ">> no GPU: installing the CPU build of torch"
    version="${CLBOOK_TORCH_VERSION:-2.13.0}"
    if "${pip[@]}" download --quiet --no-index --no-deps "torch==$version" -d "$(mktemp -d)" >/dev/null 2>&1; then
      "${pip[@]}" install "torch==$version"   # a CPU wheel provided locally (pip's find-links)
    else
      "${pip[@]}" install "torch>=2.2" --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
fi

echo ">> installing clkit and the book/test tools"
"${pip[@]}" install --quiet --disable-pip-version-check -e "$repo[book,test]" 2>&1 \
  | grep -v -E "^WARNING: Location .* is ignored" || true
# byte-compile clkit once: with PYTHONDONTWRITEBYTECODE set (as on some CI machines) every chapter's
# kernel would otherwise compile it from source again (~0.1 s each); stale .pyc files are ignored
"$venv/bin/python" -m compileall -q "$repo/clkit" >/dev/null || true
"$venv/bin/python" -c "import clkit, torch; print(f'>> clkit {clkit.__version__}, torch {torch.__version__}, device {clkit.default_device()}')"

export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
