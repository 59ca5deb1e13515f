#!/usr/bin/env bash
# Quick-start command 1: install what is needed into .venv and build the book, executing every
# chapter at the scale CLKIT_SCALE (default: "default"). Warnings, broken references, failing cells
# and failing claims all fail the build. The HTML lands in book/_build/html.
#
# The chapters are independent, so with more than one core they execute in parallel first
# (scripts/execute_parallel.py: CLBOOK_JOBS at a time, default the number of cores, into a fresh
# jupyter-cache; each in a new kernel forked from a process that imported torch, SymPy, SciPy and
# ipykernel once, scripts/warm_kernel.py), and jupyter-book then builds from those outputs (execute_notebooks: cache, in a
# config derived from book/_config.yml); a notebook that failed there is executed again by the build,
# which reports the failure. CLBOOK_JOBS=1 builds exactly as `jupyter-book build book/` does
# (execute_notebooks: force, one chapter after another). Nothing is reused from an earlier build.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup-env.sh"
cd "$repo"
export CLKIT_SCALE="${CLKIT_SCALE:-default}"
jobs="${CLBOOK_JOBS:-$(nproc 2>/dev/null || echo 1)}"
rm -rf book/_build/claims book/_build/.jupyter_cache book/_build/_config.parallel.yml
if [[ "$jobs" -gt 1 ]]; then
  config="$(python scripts/execute_parallel.py book --jobs "$jobs")"
  jupyter-book build book/ --config "$config" -W -n --keep-going "$@"
else
  jupyter-book build book/ -W -n --keep-going "$@"
fi
python scripts/audit_claims.py book/_build/claims
