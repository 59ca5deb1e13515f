#!/usr/bin/env bash
# The whole book as one PDF, through LaTeX (XeLaTeX: the chapters hold Unicode that pdflatex cannot
# typeset). Executes every chapter at the scale CLKIT_SCALE (default: "default"), like the HTML.
#
#   bash scripts/build-pdf.sh              # -> book/_build/latex/clbook.pdf
#   bash scripts/build-pdf.sh --with-html  # execute each chapter once, then the PDF and the HTML
#                                          # (with the PDF in its download menu) from that execution
#
# Needs TeX and Python's venv module; on Debian/Ubuntu (as root, or with sudo; about 1 GB):
#   apt-get install -y --no-install-recommends python3-venv texlive-latex-recommended \
#     texlive-latex-extra texlive-fonts-recommended texlive-xetex texlive-plain-generic latexmk \
#     fonts-freefont-otf tex-gyre lmodern
# Both are checked first, before anything is installed. Not part of CI; the publishing workflow
# (.github/workflows/book.yml) runs it with --with-html and publishes the site with the PDF.
#
# --with-html: the chapters execute once, into the book's jupyter-cache (book/_build/.jupyter_cache,
# emptied first so nothing stale is reused); the PDF build fills the cache, the HTML build reads it.
# Failing cells and claims fail either build, as in build-book.sh; the claims are audited at the end.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
apt_line="sudo apt-get install -y --no-install-recommends python3-venv texlive-latex-recommended \\
    texlive-latex-extra texlive-fonts-recommended texlive-xetex texlive-plain-generic latexmk \\
    fonts-freefont-otf tex-gyre lmodern"

with_html=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--with-html" ]; then with_html=1; else args+=("$arg"); fi
done

# 1. what cannot be installed from here: TeX, and (for a new .venv) Python's venv module
missing=()
for tool in xelatex latexmk; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
venv="${CLBOOK_VENV:-$repo/.venv}"
if [ ! -x "$venv/bin/python" ] && ! "${CLBOOK_PYTHON:-python3}" -c "import ensurepip, venv" 2>/dev/null; then
  missing+=("python3-venv")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  {
    echo "build-pdf: missing ${missing[*]}. On Debian/Ubuntu install them with"
    echo "  $apt_line"
    echo "(other systems: a TeX distribution with XeLaTeX and latexmk, e.g. TeX Live or MiKTeX)."
  } >&2
  exit 2
fi

# 2. the Python environment (as build-book.sh), then the builds
source "$repo/scripts/setup-env.sh"
cd "$repo"
export CLKIT_SCALE="${CLKIT_SCALE:-default}"
# Every chapter executes: the jupyter-cache that book/_config.yml's `execute_notebooks: cache` reads
# is emptied first (book/_ext/parallel_execution.py fills it, the chapters in parallel).
mkdir -p book/_build
rm -rf book/_build/.jupyter_cache book/_build/claims
jupyter-book build book/ --all --builder pdflatex "${args[@]}"
pdf="book/_build/latex/clbook.pdf"
test -s "$pdf" || { echo "build-pdf: no $pdf was produced" >&2; exit 1; }
echo "PDF: $pdf ($(du -h "$pdf" | cut -f1))"

if [ "$with_html" = 1 ]; then
  jupyter-book build book/ --all -W -n --keep-going "${args[@]}"
  python scripts/audit_claims.py book/_build/claims
fi
