#!/usr/bin/env bash
# Mutation testing of clkit's math modules with mutmut (issue 11, item 4). Slow (minutes to hours
# per module on 2 cores); run by hand, never in CI or in the book build.
#
#   bash scripts/mutation-test.sh                     # every module, least-changing first
#   bash scripts/mutation-test.sh losses stats        # some modules
#   MUTATION_JOBS=1 MUTATION_NICE=19 bash scripts/mutation-test.sh losses
#   MUTATION_REV=HEAD bash scripts/mutation-test.sh losses   # clkit and tests as committed
#   MUTATION_RECHECK=1 bash scripts/mutation-test.sh losses  # re-run last run's survivors, new tests
#
# mutmut changes one operator, constant or call at a time in a module ("a mutant") and runs the
# tests; a mutant that no test notices "survives" and points at an untested formula. Each module
# runs in its own copy of the work tree under $MUTATION_DIR (default /tmp/clbook-mutation), so the
# checkout is never touched, against its own unit test file only (MODULE_TESTS below), with the
# rest of the configuration from [tool.mutmut] in pyproject.toml. For every module the script
# writes benchmarks/results/mutation/<module>.txt (score and every surviving mutant's diff) and
# prints one line: module, mutants, killed, survived, timeout, no tests, score = killed /
# (mutants - no tests - skipped). Needs the `mutation` extra: pip install -e ".[mutation]".
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${VIRTUAL_ENV:-}" && -f "$repo/.venv/bin/activate" ]]; then
  source "$repo/.venv/bin/activate"
fi
command -v mutmut >/dev/null || { echo "mutmut missing: pip install -e '.[mutation]'" >&2; exit 2; }

declare -A MODULE_TESTS=(
  [losses]=tests/test_losses.py
  [mixtures]=tests/test_core.py
  [stats]=tests/test_core.py
  [claims]=tests/test_core.py
  [subspaces]=tests/test_subspaces.py
  [projection]=tests/test_projection.py
  [fisher]=tests/test_fisher.py
  [alpha_cl]=tests/test_alpha_cl.py
  [arcl]=tests/test_arcl.py
  [generalization]=tests/test_generalization.py
)
# Default order: the modules that change least first (the chapter modules are being rewritten).
DEFAULT_ORDER=(losses mixtures stats claims subspaces projection fisher alpha_cl arcl generalization)

work="${MUTATION_DIR:-/tmp/clbook-mutation}"
jobs="${MUTATION_JOBS:-2}"
niceness="${MUTATION_NICE:-19}"
out="$repo/benchmarks/results/mutation"
mkdir -p "$work" "$out"
modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=("${DEFAULT_ORDER[@]}")

for module in "${modules[@]}"; do
  tests="${MODULE_TESTS[$module]:-}"
  [[ -n "$tests" ]] || { echo "unknown module '$module' (known: ${!MODULE_TESTS[*]})" >&2; exit 2; }
  copy="$work/$module"
  start=$(date +%s)
  if [[ -n "${MUTATION_RECHECK:-}" && -f "$copy/mutants/clkit/$module.py.meta" ]]; then
    # Re-run only the surviving mutants of the last run, against the work tree's tests (after new
    # tests were written); mutmut's map of which tests cover which function is rebuilt.
    for t in "$copy/tests" "$copy/mutants/tests"; do cp "$repo"/tests/*.py "$t/"; done
    rm -f "$copy/mutants/mutmut-stats.json"
    mapfile -t survivors < <(cd "$copy" && mutmut results 2>/dev/null | awk -F: '/: survived$/ {gsub(/ /, "", $1); print $1}')
    echo "$module: re-checking ${#survivors[@]} surviving mutants" >&2
    if [[ ${#survivors[@]} -gt 0 ]]; then
      (cd "$copy" && nice -n "$niceness" mutmut run --max-children "$jobs" "${survivors[@]}" >"$copy/recheck.log" 2>&1) || {
        echo "mutmut failed for $module; see $copy/recheck.log" >&2; continue; }
    fi
  else
    rm -rf "$copy" && mkdir -p "$copy"
    if [[ -n "${MUTATION_REV:-}" ]]; then  # a committed state (the work tree may be mid-edit)
      git -C "$repo" archive "$MUTATION_REV" clkit tests scripts | (cd "$copy" && tar xf -)
      cp "$repo/pyproject.toml" "$copy/"
    else
      (cd "$repo" && tar cf - --exclude=__pycache__ clkit tests scripts pyproject.toml) | (cd "$copy" && tar xf -)
    fi
    # Override only_mutate and the test selection in the copy's [tool.mutmut].
    python - "$copy/pyproject.toml" "clkit/$module.py" "$tests" <<'EOF2'
import re, sys
path, module, tests = sys.argv[1:]
text = open(path).read()
text = re.sub(r"\nonly_mutate = \[.*?\]\n", f'\nonly_mutate = ["{module}"]\n', text, count=1, flags=re.S)
text = re.sub(r"\npytest_add_cli_args_test_selection = \[.*?\]\n",
              f'\npytest_add_cli_args_test_selection = ["{tests}"]\n', text, count=1, flags=re.S)
open(path, "w").write(text)
EOF2
    (cd "$copy" && nice -n "$niceness" mutmut run --max-children "$jobs" >"$copy/run.log" 2>&1) || {
      echo "mutmut failed for $module; see $copy/run.log" >&2; tail -20 "$copy/run.log" >&2; continue; }
  fi
  elapsed=$(( $(date +%s) - start ))
  (cd "$copy" && mutmut results >"$copy/survivors.txt" 2>&1 || true)
  (cd "$copy" && python - "$copy" "$module" "$tests" "$elapsed" "$out/$module.txt") <<'EOF'
import json, subprocess, sys
from collections import Counter
from pathlib import Path
copy, module, tests, elapsed, report = sys.argv[1:]
sys.path.insert(0, copy)
from mutmut.stats import status_by_exit_code
meta = json.loads((Path(copy) / "mutants" / "clkit" / f"{module}.py.meta").read_text())
status = {k: status_by_exit_code[v] for k, v in meta["exit_code_by_key"].items()}
counts = Counter(status.values())
total = len(status)
checked = total - counts["no tests"] - counts["skipped"] - counts["not checked"]
score = counts["killed"] / checked if checked else float("nan")
line = (f"{module}: {total} mutants, {counts['killed']} killed, {counts['survived']} survived, "
        f"{counts['timeout']} timeout, {counts['no tests']} no tests, {counts['not checked']} not checked, "
        f"score {100 * score:.1f} % ({tests}, {int(elapsed) // 60} min {int(elapsed) % 60} s)")
print(line)
survivors = sorted(k for k, s in status.items() if s == "survived")
parts = [line, "", "surviving mutants:"]
for name in survivors:
    shown = subprocess.run(["mutmut", "show", name], cwd=copy, capture_output=True, text=True)
    parts += ["", shown.stdout.strip()]
Path(report).write_text("\n".join(parts) + "\n")
EOF
done
