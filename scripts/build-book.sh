#!/usr/bin/env bash
# Quick-start command 1: install what is needed into .venv, then build the book with
# `jupyter-book build book/`, executing every chapter (each in a fresh kernel, as many at once as
# the machine has cores: book/_ext/parallel_execution.py) at the scale CLKIT_SCALE (default:
# "default"). Warnings, broken references, failing cells and failing claims all fail the build.
# The HTML lands in book/_build/html; each chapter's claims in book/_build/claims/<chapter>.json,
# audited at the end. Extra arguments go to jupyter-book.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup-env.sh"
cd "$repo"
export CLKIT_SCALE="${CLKIT_SCALE:-default}"
rm -rf book/_build/claims book/_build/.jupyter_cache  # every chapter executes, its claims are audited
jupyter-book build book/ --all -W -n --keep-going "$@"  # --all: re-read (so execute) every page
python scripts/audit_claims.py book/_build/claims
