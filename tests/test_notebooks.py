"""The Colab notebooks render and run outside the book: plain Markdown and LaTeX, no MyST left,
every quoted number and every glued table and figure visible, each cell's math standing alone.

The notebooks are generated from the current chapters into a temporary folder with
``scripts/sync_notebooks.py`` (the book's values from a build whose code is current, else from the
committed notebooks made from the same code; that the committed ``notebooks/`` match is
test_packaging's job); two of them (chapters 01 and 06) are executed standalone at smoke scale, in a
fresh kernel from a temporary folder, as Colab runs them after their set-up cell. The converter
(``book/_ext/myst_notebook.py``) is checked on a small chapter whose every expected output is
written out by hand, and ``clkit.notebook.glue`` in a fresh kernel.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from conftest import BOOK, MYST_FRONT_MATTER, REPO

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
cap cup setminus sqcup bigcup bigcap bigoplus bigotimes ominus oslash uplus sqcap amalg dagger ddagger
wr diamond triangleleft triangleright bigtriangleup bigtriangledown
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


#: Chapters executed standalone (cheap at smoke scale; 06 glues tables and figures).
EXECUTED = ("01_setting", "06_generalization")

GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")
GLUE_BLOCK = re.compile(r"^\s*(?:`{3,}|:{3,})\{glue(?::(?:md|any|figure))?\}\s*(\S+)", re.M)


#: The chapters' texts the generated notebooks were made from (chapters may change during a test).
SOURCES: dict[str, str] = {}


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("notebooks")
    report: list[str] = []
    sync_notebooks.sync(check=False, notebooks=out, report=report, used=SOURCES)
    return out, report


@pytest.fixture(scope="module")
def generated(generation: tuple[Path, list[str]]) -> dict[str, nbformat.NotebookNode]:
    out, _ = generation
    notebooks = {p.stem: nbformat.read(p, as_version=4) for p in sorted(out.glob("*.ipynb"))}
    assert set(notebooks) == {p.stem for p in sync_notebooks.chapters()}
    return notebooks


def _glued_keys(stem: str) -> tuple[set[str], set[str], set[str]]:
    """Keys the chapter's prose quotes ({glue:text} …), places as tables and as figures."""
    text = SOURCES[stem]
    inline = set(GLUE_ROLE.findall(text))
    figures = set(re.findall(r"\{glue:figure\}\s*(\S+)", text))
    tables = set(GLUE_BLOCK.findall(text)) - figures
    return inline, tables, figures


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


def test_notebooks_are_valid_nbformat(generated: dict[str, nbformat.NotebookNode]) -> None:
    for notebook in generated.values():
        nbformat.validate(notebook)  # attachments, Colab's cellView metadata and all


def test_no_myst_syntax_is_left(generated: dict[str, nbformat.NotebookNode]) -> None:
    found = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook):
            text = _without_code(source)
            for what, pattern in MYST_PATTERNS.items():
                for m in pattern.finditer(text):
                    found.append(f"{stem} cell {index}: {what}: {text[max(0, m.start() - 30):m.end() + 30]!r}")
    assert not found, "MyST syntax left in the Colab notebooks:\n" + "\n".join(found)


def test_each_cell_math_stands_alone_with_no_macro_cell(generated: dict[str, nbformat.NotebookNode]) -> None:
    """The book's macros are expanded per cell: no ``\\newcommand`` anywhere, and every macro in
    the math is one MathJax (and GitHub's, VS Code's renderers) knows without definitions."""
    undefined = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook):
            if "\\newcommand" in source or "\\renewcommand" in source:
                undefined.append(f"{stem} cell {index}: defines a macro")
            for formula in _math(source):
                for name in re.findall(r"\\([A-Za-z]+)", formula):
                    if name not in STANDARD_MACROS:
                        undefined.append(f"{stem} cell {index}: \\{name} in {formula[:60]!r}")
    assert not undefined, "macros a cell does not define itself:\n" + "\n".join(undefined)


#: MathJax 3 in Node: every formula through the TeX input with the packages a notebook renderer has
#: (base, AMS, newcommand, boldsymbol, color; no "noundefined", no autoload), errors thrown.
MATHJAX_NODE = """
let input = "";
process.stdin.on("data", d => input += d);
process.stdin.on("end", () => {
  const formulas = JSON.parse(input);
  require(process.argv[2]).init({
    loader: {load: ["input/tex-base", "[tex]/ams", "[tex]/newcommand", "[tex]/boldsymbol", "[tex]/color"]},
    tex: {packages: ["base", "ams", "newcommand", "boldsymbol", "color"],
          formatError: (jax, err) => { throw err; }},
    startup: {typeset: false},
  }).then(MathJax => {
    const errors = [];
    for (const [where, display, tex] of formulas) {
      try { MathJax.tex2mml(tex, {display}); } catch (err) { errors.push([where, err.message, tex.slice(0, 90)]); }
    }
    console.log(JSON.stringify(errors));
  }).catch(err => { console.error(err.message); process.exit(2); });
});
"""


def _mathjax_node() -> tuple[str, Path] | None:
    """Node and MathJax 3's ``es5/node-main.js`` (``$CLBOOK_MATHJAX``, as book/_ext/clbook.py, else
    ``node_modules/mathjax/es5`` in the repository: ``npm install mathjax@3``, as .ci/run does)."""
    import shutil

    node = shutil.which("node")
    folders = [Path(os.environ["CLBOOK_MATHJAX"])] if os.environ.get("CLBOOK_MATHJAX") else []
    folders.append(REPO / "node_modules" / "mathjax" / "es5")
    main = next((f / "node-main.js" for f in folders if (f / "node-main.js").is_file()), None)
    return (node, main) if node and main else None


def test_mathjax_renders_every_formula_of_every_notebook(generated: dict[str, nbformat.NotebookNode],
                                                          tmp_path: Path) -> None:
    """Item 3 rendered, not only scanned: MathJax typesets each cell's math on its own (no macro
    cell, no definition from another cell), with no undefined control sequence and no TeX error."""
    import subprocess

    found = _mathjax_node()
    if found is None:
        message = "needs node and MathJax 3 (npm install mathjax@3 at the repository's root)"
        if os.environ.get("CLBOOK_REQUIRE_BROWSER") == "1":  # .ci/run: MathJax is installed there
            pytest.fail(message)
        pytest.skip(message)
    node, main = found
    formulas = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook):
            for formula in _math(source):
                display = formula.startswith("$$")
                formulas.append([f"{stem} cell {index}", display, formula.strip("$")])
    script = tmp_path / "render.js"
    script.write_text(MATHJAX_NODE)
    result = subprocess.run([node, str(script), str(main)], input=json.dumps(formulas), text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout)
    assert len(formulas) > 1000
    assert not errors, f"{len(errors)} of {len(formulas)} formulas fail in MathJax:\n" + "\n".join(
        f"{where}: {message}: {tex!r}" for where, message, tex in errors[:40])


def test_math_delimiters_are_balanced(generated: dict[str, nbformat.NotebookNode]) -> None:
    odd = []
    for stem, notebook in generated.items():
        for index, source in _markdown(notebook):
            text = _without_code(source).replace("\\$", "")
            if text.count("$$") % 2 or (text.replace("$$", "").count("$") % 2):
                odd.append(f"{stem} cell {index}")
    assert not odd, f"unbalanced $ or $$ in {odd}"


def test_no_glue_key_is_left_bare(generation: tuple[Path, list[str]],
                                  generated: dict[str, nbformat.NotebookNode]) -> None:
    """(a) Every number the prose quotes is the book's value, marked; no key in code font."""
    _, report = generation
    assert not report, "\n".join(report)
    bare = []
    for stem, notebook in generated.items():
        inline, tables, _ = _glued_keys(stem)
        prose = "\n".join(source for _, source in _markdown(notebook))
        bare += [f"{stem}: `{key}`" for key in sorted(inline | tables) if f"`{key}`" in prose]
        assert sync_notebooks.MARKER in prose or not inline, stem
    assert not bare, f"glue keys shown instead of their values: {bare}"


def test_every_glued_table_and_figure_is_in_the_notebook(generated: dict[str, nbformat.NotebookNode]) -> None:
    """(b) A glued table is in the prose as the book computed it, a glued figure as an attachment
    (the book's image); the code glues both through clkit.notebook, which displays them when run."""
    problems = []
    for stem, notebook in generated.items():
        _, tables, figures = _glued_keys(stem)
        prose = "\n".join(source for _, source in _markdown(notebook))
        attached = {name for c in notebook.cells for name in (c.get("attachments") or {})}
        code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        problems += [f"{stem}: figure {key} not attached" for key in sorted(figures)
                     if f"{key}.png" not in attached or f"attachment:{key}.png" not in prose]
        for key in sorted(tables):
            value = notebook.metadata["clbook"]["book_values"].get(key, {}).get("text/markdown", "")
            if not value or value.strip() not in prose:
                problems.append(f"{stem}: table {key} not in the prose")
        if "myst_nb" in code or (tables | figures) and "from clkit.notebook import glue" not in code:
            problems.append(f"{stem}: glue does not come from clkit.notebook")
    assert not problems, "\n".join(problems)


def test_install_cell_pins_the_books_clkit_and_hidden_cells_fold(
        generated: dict[str, nbformat.NotebookNode]) -> None:
    version = sync_notebooks.clkit_version()
    url = sync_notebooks.repository_url()
    for stem, notebook in generated.items():
        setup = next(c for c in notebook.cells if c.cell_type == "code")
        assert f"clkit @ git+{url}@v{version}" in setup.source, stem
        assert "myst" not in setup.source and "torch" not in setup.source.split("CLKIT =")[1], stem
        assert setup.metadata.get("cellView") == "form", stem
        for cell in notebook.cells:
            if cell.cell_type == "code" and {"hide-input", "remove-cell"} & set(cell.metadata.get("tags", [])):
                assert cell.metadata.get("cellView") == "form", (stem, cell.source[:60])
        assert "CLKIT_DEVICE=cpu" in notebook.cells[0].source, stem
        labels = [m for c in notebook.cells if c.cell_type == "code" for m in re.findall(r"\beq-[\w-]+", c.source)]
        assert not labels, f"{stem}: equation labels left in code: {labels}"


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


def _converted(values: dict | None, marker: str = "") -> tuple[str, myst_notebook.Converter]:
    cell = nbformat.v4.new_markdown_cell(CHAPTER)
    code = nbformat.v4.new_code_cell('glue("fig-07-demo", fig, display=False)\nglue("val", x, display=False)')
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".bib", delete=False) as handle:
        handle.write(BIB)
    book = myst_notebook.collect_book({"07_demo": [CHAPTER]}, Path(handle.name))
    Path(handle.name).unlink()
    conv = myst_notebook.convert_cells([cell, code], "07_demo", book, values=values, badge=lambda: "BADGE",
                                       marker=marker)
    return cell.source + "\n\n" + code.source, conv


def test_the_converter_writes_what_the_book_prints() -> None:
    text, conv = _converted(values=None)
    assert conv.problems == []
    assert text.startswith(EXPECTED), text
    assert "> **Remark.**\n>\n> An unnumbered remark." in text
    assert "> **Figure 7.1.** What the reader sees." in text  # figures have their own counter
    assert "By Theorem 7.2 and Figure 7.1, the value is `val`;" in text
    assert conv.missing == ["val"] and conv.glue_keys == {"val": ".2f"}
    assert "see the chapter and the definition." in text
    assert "- Chen, T., Kornblith, S., and Hinton, G. (2020). A Simple Framework. *ICML*." in text
    assert "- Deny, S. (2021). Solo. *J*." in text  # the LaTeX accent decoded: "Stéphane" -> "S."
    assert 'glue("fig-07-demo", fig, display=False)' in text  # clkit.notebook.glue shows it


def test_the_converter_fills_in_glued_values_with_a_marker() -> None:
    text, conv = _converted(values={"val": "3.14159"})
    assert "the value is 3.14;" in text and conv.missing == []
    text, _ = _converted(values={"val": {"text/plain": "3.14159"}}, marker="†")
    assert "the value is 3.14†;" in text


def test_the_converter_links_other_chapters_and_expands_macros() -> None:
    first = "(sec-a)=\n## Section A\n\n$$\n\\norm{x}\\in\\R\n$$ (eq-a)\n"
    second = "See {eq}`eq-a`, {ref}`sec-a` and {ref}`the first <sec-a>`; $x\\T\\E$."
    book = myst_notebook.collect_book({"01_a": [first], "02_b": [second]}, None)
    cells = [nbformat.v4.new_markdown_cell(second)]
    myst_notebook.convert_cells(cells, "02_b", book, macros={"R": "\\mathbb{R}", "T": "^{\\top}",
                                "E": "\\mathbb{E}"}, link_base="https://x.io/chapters/")
    assert cells[0].source == ("See [(1.1)](https://x.io/chapters/01_a.html#equation-eq-a), "
                               "[Section A](https://x.io/chapters/01_a.html#sec-a) and "
                               "[the first](https://x.io/chapters/01_a.html#sec-a); $x^{\\top}\\mathbb{E}$.")
    cells = [nbformat.v4.new_markdown_cell(first)]
    myst_notebook.convert_cells(cells, "01_a", book, macros={"R": "\\mathbb{R}",
                                "norm": ["\\lVert #1 \\rVert", 1]}, link_base="https://x.io/chapters/")
    assert "\\lVert x \\rVert\\in{\\mathbb{R}} \\tag{1.1}" in cells[0].source  # braced after \in


def test_macro_expansion_takes_arguments_nesting_and_cell_definitions() -> None:
    macros = {"R": "\\mathbb{R}", "L": "\\mathcal{L}", "norm": ["\\lVert #1 \\rVert", 1],
              "inner": ["\\langle #1, #2 \\rangle", 2], "T": "^{\\top}", "P": "\\mathbb{P}"}
    text, _ = myst_notebook.expand_macros(
        "$\\inner{\\norm{a}}{b}$, $\\widetilde\\L$, $W\\T$, $\\Pr\\P$, `\\R` and $\\norm x$", macros)
    assert text == ("$\\langle {\\lVert a \\rVert}, b \\rangle$, $\\widetilde{\\mathcal{L}}$, $W^{\\top}$, "
                    "$\\Pr{\\mathbb{P}}$, `\\R` and $\\lVert x \\rVert$")
    text, defined = myst_notebook.expand_macros("$\n\\newcommand{\\f}[1]{f(#1)}\n$\n\n$\\f{x}$", {})
    assert text.strip() == "$f(x)$" and "f" in defined


def test_setup_cell_and_code_cells_for_colab() -> None:
    source = sync_notebooks.setup_cell("https://github.com/o/r", "1.2.3", {"loss": ".4f"})
    assert "'clkit @ git+https://github.com/o/r@v1.2.3'" in source and "< (1, 2, 3)" in source
    assert "myst" not in source and "'loss': '.4f'" in source
    compile(source, "setup", "exec")
    book = myst_notebook.Book(labels={"eq-ntxent": "(1.1)"}, equations={"eq-ntxent"})
    code = sync_notebooks.notebook_code(
        'from myst_nb import glue\n"""Equation (eq-ntxent), one anchor at a time; see `eq-ntxent`."""', book)
    assert code.splitlines()[0].startswith("from clkit.notebook import glue")
    assert '"""Equation (1.1), one anchor at a time; see (1.1)."""' in code


# --------------------------------------------------------------------------------------------
# Executed outside the book, as Colab runs them
# --------------------------------------------------------------------------------------------
def _execute(notebook: nbformat.NotebookNode, folder: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    """Run ``notebook`` in a fresh kernel in ``folder``, without the book's environment (no
    ``CLBOOK_SPHINX_BUILD``, the kernel's own matplotlib backend), with ``env`` added."""
    from nbclient import NotebookClient

    from run_chapter import temporary_environment

    drop = ("CLBOOK_SPHINX_BUILD", "MPLBACKEND", "CLKIT_DEVICE")
    saved = {k: os.environ.pop(k) for k in drop if k in os.environ}
    try:
        with temporary_environment(env):
            NotebookClient(notebook, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        os.environ.update(saved)
    return notebook


def _outputs(cell: nbformat.NotebookNode) -> tuple[str, list[dict]]:
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
    return text, [o for o in cell.get("outputs", []) if o.output_type in ("display_data", "execute_result")]


def test_glue_prints_or_shows_outside_the_book_and_is_myst_nb_inside(tmp_path: Path) -> None:
    cells = [
        "from IPython.display import Markdown\nimport matplotlib.pyplot as plt\nimport clkit\n"
        "from clkit.notebook import glue, set_formats\nset_formats({'x': '.3f'})",
        "glue('x', 3.14159, display=False)\nglue('n', 7, display=False)",
        "glue('m', Markdown('$\\\\frac{1}{2}$'), display=False)",
        "glue('tab', Markdown('| a |\\n|---|\\n| 1 |'), display=False)",
        "fig, ax = plt.subplots(figsize=(2, 2))\nglue('fig', fig, display=False)\nplt.close(fig)",
        "c = clkit.Claims('t', directory=None)\nc.check('$|x|$ small', 1.0, 1.0, 0.1, kind='result')\nc.table()",
        "import os\nos.environ['CLBOOK_SPHINX_BUILD'] = '1'\nglue('y', 2.5, display=False)\nc.table()",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    out = _execute(notebook, tmp_path, {}).cells
    assert _outputs(out[1])[0] == "x = 3.142\nn = 7\n"
    shown = _outputs(out[2])[1][0]["data"]
    assert shown["text/plain"] == "m = $\\frac{1}{2}$" and shown["text/markdown"] == "`m` = $\\frac{1}{2}$"
    assert "| 1 |" in _outputs(out[3])[1][0]["data"]["text/markdown"]
    assert "image/png" in _outputs(out[4])[1][0]["data"]
    claims = _outputs(out[5])[1][0]["data"]
    assert "text/html" not in claims and "$\\vert x\\vert $ small" in claims["text/markdown"]
    text, displays = _outputs(out[6])
    assert text == "" and displays[0]["metadata"]["scrapbook"]["name"] == "y"  # myst-nb's record
    assert "text/html" in displays[1]["data"]  # the book's collapsible table


@pytest.mark.parametrize("stem", EXECUTED)
def test_a_notebook_runs_standalone_and_prints_its_values(stem: str, generation: tuple[Path, list[str]],
                                                          tmp_path: Path) -> None:
    """(c) The generated notebook, copied alone to a temporary folder, runs at smoke scale in a fresh
    kernel; every value the prose quotes is printed as ``name = value`` in the prose's format, every
    glued table and figure is displayed, and the claims table is Markdown."""
    out, _ = generation
    notebook = nbformat.read(out / f"{stem}.ipynb", as_version=4)
    nbformat.write(notebook, tmp_path / f"{stem}.ipynb")
    executed = _execute(notebook, tmp_path, {"CLKIT_SCALE": "smoke", "CLKIT_CLAIMS_DIR": str(tmp_path / "claims")})
    inline, tables, figures = _glued_keys(stem)
    formats = {k: v for k, v in re.findall(r"'([^']+)': '([^']+)',", executed.cells[1].source)}
    printed: dict[str, str] = {}
    shown: dict[str, list[str]] = {}
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        text, displays = _outputs(cell)
        for line in text.splitlines() + [d["data"].get("text/plain", "") for d in displays]:
            key, sep, value = line.partition(" = ")
            if sep:
                printed[key.strip()] = value
        for key in re.findall(r"glue\(\s*['\"]([^'\"]+)['\"]", cell.source):
            shown[key] = [m for d in displays for m in d["data"]]
    missing = sorted(inline - tables - figures - set(printed))
    assert not missing, f"{stem}: values not printed: {missing}"
    for key, spec in formats.items():
        if key in printed and spec[-1] in "fe":
            decimals = int(re.search(r"\.(\d+)", spec).group(1)) if "." in spec else 6
            assert re.fullmatch(rf"[-+]?[\d,]*\.\d{{{decimals}}}(e[+-]\d+)?%?", printed[key]), (key, printed[key])
    assert all("image/png" in shown.get(k, []) for k in figures), (figures, shown)
    assert all("text/markdown" in shown.get(k, []) for k in tables), (tables, shown)
    claims_cell = next(c for c in executed.cells if c.cell_type == "code" and "claims.table()" in c.source)
    data = _outputs(claims_cell)[1][-1]["data"]
    assert "text/markdown" in data and "text/html" not in data


def test_values_come_only_from_a_run_of_the_current_code(tmp_path: Path) -> None:
    """A build's values are used when its code is the chapter's code; the committed notebook's when
    its digest matches; a chapter whose code changed gets none (and the test above fails)."""
    source = MYST_FRONT_MATTER + "\n# T\n\n```{code-cell} ipython3\nglue('v', 2.5, display=False)\n```\n"
    chapter = jupytext.reads(source, fmt="md:myst")
    executed = tmp_path / "_build" / "jupyter_execute" / "chapters"
    executed.mkdir(parents=True)
    nbformat.write(chapter, executed / "09_t.ipynb")
    (executed / "09_t.glue.json").write_text(json.dumps(
        {"v": {"output_type": "display_data", "data": {"text/plain": "2.5"}, "metadata": {}}}))
    assert sync_notebooks.values_from_build("09_t", chapter, tmp_path / "_build") == {"v": {"text/plain": "2.5"}}
    changed = jupytext.reads(source.replace("2.5", "3.5"), fmt="md:myst")
    assert sync_notebooks.values_from_build("09_t", changed, tmp_path / "_build") is None
    committed = nbformat.v4.new_notebook(metadata={"clbook": {
        "code_sha256": sync_notebooks.code_digest(chapter), "book_values": {"v": {"text/plain": "2.5"}}}})
    nbformat.write(committed, tmp_path / "09_t.ipynb")
    digest = sync_notebooks.code_digest
    assert sync_notebooks.values_from_committed(tmp_path / "09_t.ipynb", digest(chapter)) == {"v": {"text/plain": "2.5"}}
    assert sync_notebooks.values_from_committed(tmp_path / "09_t.ipynb", digest(changed)) is None


def test_glued_lines_use_the_prose_format() -> None:
    import importlib.util

    # the module alone (no relative imports), without importing torch through clkit/__init__
    spec = importlib.util.spec_from_file_location("clkit_notebook", REPO / "clkit" / "notebook.py")
    notebook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(notebook)

    notebook.set_formats({"loss": ".4f", "n": ",d"})
    assert notebook.glued_line("loss", {"text/plain": "3.274912"}) == "loss = 3.2749"
    assert notebook.glued_line("n", {"text/plain": "400000"}) == "n = 400,000"
    assert notebook.glued_line("s", {"text/plain": "'4.47 ± 0.01'"}) == "s = 4.47 ± 0.01"  # quotes gone
    assert notebook.glued_line("m", {"text/plain": "<Markdown>", "text/markdown": "$\\frac12$"}) == "m = $\\frac12$"
    with pytest.raises(ValueError, match="name"):
        notebook.glue("", 1.0)
    with pytest.raises(ValueError, match="formats"):
        notebook.set_formats({"x": 4})
