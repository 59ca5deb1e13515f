#!/usr/bin/env bash
# Quick-start command 2: install what is needed into .venv and run the test suite (clkit unit tests,
# every chapter executed at smoke scale, the build guard). Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup-env.sh"
cd "$repo"
python -m pytest "$@"
