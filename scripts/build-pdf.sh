#!/usr/bin/env bash
# The whole book as one PDF, through LaTeX (XeLaTeX: the chapters hold Unicode that pdflatex cannot
# typeset). Executes every chapter at the scale CLKIT_SCALE (default: "default"), like the HTML.
#
#   bash scripts/build-pdf.sh            # -> book/_build/latex/clbook.pdf
#
# Needs a TeX installation; on Debian/Ubuntu (as root, or with sudo):
#   apt-get install -y --no-install-recommends texlive-latex-recommended texlive-latex-extra \
#     texlive-fonts-recommended texlive-xetex texlive-plain-generic latexmk fonts-freefont-otf \
#     tex-gyre lmodern
# Not part of CI; the publishing workflow (.github/workflows/book.yml) builds it and links it
# from the site.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup-env.sh"
cd "$repo"
for tool in xelatex latexmk; do
  command -v "$tool" >/dev/null || { echo "build-pdf: $tool not found (see the apt-get line in $0)" >&2; exit 2; }
done
export CLKIT_SCALE="${CLKIT_SCALE:-default}"
jupyter-book build book/ --builder pdflatex "$@"
pdf="book/_build/latex/clbook.pdf"
test -s "$pdf" || { echo "build-pdf: no $pdf was produced" >&2; exit 1; }
echo "PDF: $pdf ($(du -h "$pdf" | cut -f1))"
