"""The Colab notebooks render outside the book: plain Markdown and LaTeX, no MyST left, every TeX
macro defined.

The notebooks are generated from the current chapters into a temporary folder with
``scripts/sync_notebooks.py`` (that the committed ``notebooks/`` match is test_packaging's job), and
the converter (``book/_ext/myst_notebook.py``) is checked on a small chapter whose every expected
output is written out by hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import BOOK, REPO

sys.path.insert(0, str(BOOK / "_ext"))
sys.path.insert(0, str(REPO / "scripts"))

import myst_notebook  # noqa: E402
import sync_notebooks  # noqa: E402
from colab import colab_url  # noqa: E402

#: Leftover MyST: roles, directive fences, targets, directive options, substitutions.
MYST_PATTERNS: dict[str, re.Pattern[str]] = {
    "role": re.compile(r"\{[\w:.-]+\}`"),
    "directive": re.compile(r"^\s*(?:>\s*)*(`{3,}|:{3,})\{[\w:.-]+\}", re.M),
    "target": re.compile(r"^\s*(?:>\s*)*\([\w:.-]+\)=\s*$", re.M),
    "directive option": re.compile(r"^\s*(?:>\s*)*:(label|name|alt|class|tags|nonumber|filter|figwidth|align):", re.M),
    "substitution": re.compile(r"\{\{[^}]*\}\}"),
    "unresolved number": re.compile(r"\\tag\{\?\}|\b(Theorem|Lemma|Figure|Definition|Proposition) \?"),
}

#: TeX and AMS macros MathJax knows (the ones a chapter may use without defining them).
STANDARD_MACROS = set("""
alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi
varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi
Pi Sigma Upsilon Phi Psi Omega
frac dfrac tfrac cfrac sqrt binom tbinom dbinom over choose
left right big Big bigg Bigg bigl bigr Bigl Bigr biggl biggr middle
sum prod int iint oint lim limsup liminf sup inf max min arg argmax argmin det exp log ln sin cos
tan sinh cosh tanh arcsin arccos arctan sec csc cot dim ker deg gcd Pr hom mod bmod pmod
cdot cdots ldots dots vdots ddots times div pm mp ast star circ bullet oplus otimes odot wedge vee
cap cup setminus sqcup bigcup bigcap bigoplus bigotimes
le leq ge geq ne neq lt gt ll gg approx sim simeq cong equiv propto prec preceq succ succeq
lesssim gtrsim subset subseteq supset supseteq in notin ni mid nmid parallel perp vdash models
to rightarrow leftarrow Rightarrow Leftarrow leftrightarrow Leftrightarrow mapsto implies iff
uparrow downarrow longrightarrow longmapsto hookrightarrow
infty partial nabla forall exists nexists emptyset varnothing neg lnot top bot angle ell hbar
prime backslash Box square triangle
langle rangle lvert rvert lVert rVert vert Vert lfloor rfloor lceil rceil lbrace rbrace
hat widehat tilde widetilde bar overline underline vec dot ddot check breve acute grave
overset underset stackrel overbrace underbrace boxed
mathbb mathcal mathbf mathrm mathit mathsf mathtt mathfrak mathscr boldsymbol bm rm bf it
text textbf textit textrm mbox operatorname displaystyle textstyle scriptstyle
quad qquad enspace thinspace negthinspace
begin end tag label nonumber notag newcommand renewcommand def color
phantom hphantom vphantom smash limits nolimits substack
""".split())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nbformat.NotebookNode]:
    out = tmp_path_factory.mktemp("notebooks")
    sync_notebooks.sync(check=False, notebooks=out)
    notebooks = {p.stem: nbformat.read(p, as_version=4) for p in sorted(out.glob("*.ipynb"))}
    assert set(notebooks) == {p.stem for p in sync_notebooks.chapters()}
    return notebooks


def _markdown(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    return [(i, c.source) for i, c in enumerate(notebook.cells) if c.cell_type == "markdown"]


def _without_code(text: str) -> str:
    text = re.sub(r"^(\s*(?:>\s*)*)(`{3,}|~{3,})[^\n]*\n.*?^\1\2\s*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "CODE", text)


def _math(text: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"\$\$.+?\$\$|\$[^$\n]+?\$", _without_code(text), re.S)]


def _book_macros() -> dict[str, object]:
    config = yaml.safe_load((BOOK / "_config.yml").read_text(encoding="utf-8"))
    return config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]


def test_no_myst_syntax_is_left(generated: dict[str, nbformat.NotebookNode]) -> None:
    found = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook):
            text = _without_code(source)
            for what, pattern in MYST_PATTERNS.items():
                for m in pattern.finditer(text):
                    found.append(f"{stem} cell {index}: {what}: {text[max(0, m.start() - 30):m.end() + 30]!r}")
    assert not found, "MyST syntax left in the Colab notebooks:\n" + "\n".join(found)


def test_the_first_cell_defines_every_macro_of_the_book(generated: dict[str, nbformat.NotebookNode]) -> None:
    macros = _book_macros()
    for stem, notebook in generated.items():
        first = notebook.cells[0]
        assert first.cell_type == "markdown", stem
        for name, value in macros.items():
            nargs = f"[{value[1]}]" if isinstance(value, list) else ""
            assert f"\\newcommand{{\\{name}}}{nargs}{{" in first.source, f"{stem}: \\{name} is not defined first"


def test_every_macro_in_the_math_is_defined(generated: dict[str, nbformat.NotebookNode]) -> None:
    known = STANDARD_MACROS | set(_book_macros())
    undefined = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook)[1:]:
            for formula in _math(source):
                for name in re.findall(r"\\([A-Za-z]+)", formula):
                    if name not in known:
                        undefined.append(f"{stem} cell {index}: \\{name} in {formula[:60]!r}")
    assert not undefined, "macros neither standard nor defined by the book:\n" + "\n".join(undefined)


def test_math_delimiters_are_balanced(generated: dict[str, nbformat.NotebookNode]) -> None:
    odd = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook):
            text = _without_code(source).replace("\\$", "")
            if text.count("$$") % 2 or (text.replace("$$", "").count("$") % 2):
                odd.append(f"{stem} cell {index}")
    assert not odd, f"unbalanced $ or $$ in {odd}"


def test_glued_figures_show_in_their_cells(generated: dict[str, nbformat.NotebookNode]) -> None:
    """A ``{glue:figure}`` is placed by the book; in Colab its cell must display it."""
    hidden = []
    for path in sync_notebooks.chapters():
        keys = re.findall(r"\{glue:figure\}\s*([\w.-]+)", path.read_text(encoding="utf-8"))
        code = "\n".join(c.source for c in generated[path.stem].cells if c.cell_type == "code")
        hidden += [f"{path.stem}: {key}" for key in keys
                   if re.search(rf'glue\(\s*["\']{re.escape(key)}["\'][^()]*display\s*=\s*False', code)]
    assert not hidden, f"figures glued with display=False would not show in Colab: {hidden}"


def test_the_colab_link_opens_the_generated_notebook() -> None:
    url = colab_url("https://github.com/clbook/clbook", "main", "chapters/02_projection_heads")
    assert url == ("https://colab.research.google.com/github/clbook/clbook/blob/main/"
                   "notebooks/02_projection_heads.ipynb")
    with pytest.raises(ValueError, match="github.com"):
        colab_url("https://gitlab.com/a/b", "main", "chapters/x")


# --------------------------------------------------------------------------------------------
# The converter on a chapter whose expected output is written out by hand
# --------------------------------------------------------------------------------------------
BIB = r"""
@article{chen2020simclr, author = {Chen, Ting and Kornblith, Simon and Hinton, Geoffrey},
  title = {A Simple Framework}, journal = {ICML}, year = {2020}}
@article{wang2020, author = {Wang, Tongzhou and Isola, Phillip}, title = {Alignment}, journal = {ICML},
  year = {2020}}
@article{deny, author = {Deny, St{\'e}phane}, title = {Solo}, journal = {J}, year = {2021}}
"""

CHAPTER = """\
(ch-demo)=
# Demo chapter

```{colab-badge}
```

See {cite:p}`chen2020simclr,wang2020` and {cite:t}`deny`.

```{prf:definition} Views
:label: def-views

A pair of views.
```

$$
a = b
$$ (eq-first)

```{prf:theorem} Main
:label: thm-main

For all $x\\in\\R$, {eq}`eq-first` holds.
```

```{prf:proof}
Trivial.
```

:::{prf:remark}
:nonumber:
An unnumbered remark.
:::

```{glue:figure} fig-07-demo
:name: fig-07-demo
:alt: a demo

What the reader sees.
```

By {prf:ref}`thm-main` and {numref}`fig-07-demo`, the value is {glue:text}`val:.2f`;
see {ref}`the chapter <ch-demo>` and {prf:ref}`the definition <def-views>`.

```{bibliography}
:filter: docname in docnames
```
"""

EXPECTED = """\
# Demo chapter

BADGE

See (Chen et al., 2020; Wang and Isola, 2020) and Deny (2021).

> **Definition 7.1 (Views).**
>
> A pair of views.

$$
a = b \\tag{7.1}$$

> **Theorem 7.2 (Main).**
>
> For all $x\\in\\R$, (7.1) holds.

> *Proof.* Trivial. ∎
"""


def _converted(values: dict[str, str] | None) -> tuple[str, myst_notebook.Converter]:
    cell = nbformat.v4.new_markdown_cell(CHAPTER)
    code = nbformat.v4.new_code_cell('glue("fig-07-demo", fig, display=False)\nglue("val", x, display=False)')
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".bib", delete=False) as handle:
        handle.write(BIB)
    book = myst_notebook.collect_book({"07_demo": [CHAPTER]}, Path(handle.name))
    Path(handle.name).unlink()
    conv = myst_notebook.convert_cells([cell, code], "07_demo", book, values=values, badge=lambda: "BADGE")
    return cell.source + "\n\n" + code.source, conv


def test_the_converter_writes_what_the_book_prints() -> None:
    text, conv = _converted(values=None)
    assert conv.problems == []
    assert text.startswith(EXPECTED), text
    assert "> **Remark.**\n>\n> An unnumbered remark." in text
    assert "> **Figure 7.1.** What the reader sees." in text  # figures have their own counter
    assert "By Theorem 7.2 and Figure 7.1, the value is `val`;" in text
    assert "see the chapter and the definition." in text
    assert "- Chen, T., Kornblith, S., and Hinton, G. (2020). A Simple Framework. *ICML*." in text
    assert "- Deny, S. (2021). Solo. *J*." in text  # the LaTeX accent decoded: "Stéphane" -> "S."
    assert 'glue("fig-07-demo", fig, display=True)' in text  # the figure shows in Colab
    assert 'glue("val", x, display=False)' in text


def test_the_converter_fills_in_glued_values() -> None:
    text, _ = _converted(values={"val": "3.14159"})
    assert "the value is 3.14;" in text


def test_the_macro_cell_defines_macros_with_arguments() -> None:
    source = myst_notebook.macro_cell_source({"R": "\\mathbb{R}", "norm": ["\\lVert #1 \\rVert", 1]})
    assert "\\newcommand{\\R}{\\mathbb{R}}" in source
    assert "\\newcommand{\\norm}[1]{\\lVert #1 \\rVert}" in source
    assert json.dumps(source)  # a plain string, storable in a notebook
