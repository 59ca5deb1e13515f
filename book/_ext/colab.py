"""Sphinx extension: ``{colab-badge}`` renders an "Open in Colab" badge for the current chapter.

The link points at the chapter's generated notebook ``notebooks/<stem>.ipynb`` (made by
``scripts/sync_notebooks.py`` with jupytext), never at the MyST ``.md`` that Colab cannot open. The
repository and branch come from ``repository:`` in ``_config.yml``, the one place that names them.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def colab_url(repository_url: str, branch: str, docname: str) -> str:
    """The Colab URL of the notebook generated for ``docname`` (e.g. ``chapters/01_setting``)."""
    parsed = urlparse(repository_url)
    if parsed.netloc != "github.com":
        raise ValueError(f"repository url must be a github.com URL, got {repository_url!r}")
    owner_repo = parsed.path.strip("/").removesuffix(".git")
    stem = PurePosixPath(docname).name
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{stem}.ipynb"


class ColabBadge(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        options = self.config.html_theme_options
        url = options.get("repository_url")
        if not url:
            raise self.error("colab-badge needs `repository: url:` in _config.yml")
        target = colab_url(url, options.get("repository_branch", "main"), self.env.docname)
        badge = f'<p class="colab-badge"><a href="{target}"><img src="{BADGE}" alt="Open in Colab"></a></p>'
        return [nodes.raw("", badge, format="html")]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("colab-badge", ColabBadge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
