"""Sphinx extension: an "Open in Colab" link on every notebook page, to its Colab edition.

Colab shows MyST markup (citations, cross-references, exercises, admonitions) as raw text, so
the theme's own Colab button, which opens the notebook's source, is not configured
(_config.yml). `make book` writes a Colab edition of each notebook, its markdown converted to
plain Markdown (tools/colab_edition.py), into the published book's colab/ folder; this adds a
"Colab" entry that opens it to the launch (rocket) menu of each notebook page:

    https://colab.research.google.com/github/<owner>/<repo>/blob/<pages branch>/colab/<page>.ipynb

with owner and repository from `repository.url` and the Pages branch from the Sphinx setting
`colab_pages_branch` (_config.yml, sphinx.config). tools/colab_edition.py's `Site.colab_url`
builds the same address, and tests/test_book_pages.py checks that the two agree.
"""

from __future__ import annotations

from pathlib import Path

COLAB = "https://colab.research.google.com/github"
EDITIONS_FOLDER = "colab"


def colab_url(app, pagename: str) -> str | None:
    """The Colab address of a page's edition, or None when the repository is not on GitHub."""
    repository = app.config.html_theme_options.get("repository_url", "").rstrip("/")
    if not repository.startswith("https://github.com/"):
        return None
    owner, repo = repository.removesuffix(".git").split("/")[-2:]
    branch = app.config.colab_pages_branch
    return f"{COLAB}/{owner}/{repo}/blob/{branch}/{EDITIONS_FOLDER}/{pagename}.ipynb"


def _add_colab_link(app, pagename, templatename, context, doctree):
    if doctree is None or Path(app.env.doc2path(pagename)).suffix != ".ipynb":
        return
    url = colab_url(app, pagename)
    buttons = context.get("header_buttons")
    if url is None or buttons is None:
        return
    link = {
        "type": "link",
        "text": "Colab",
        "tooltip": "Open in Colab (this page's Colab edition)",
        "icon": "_static/images/logo_colab.png",
        "url": url,
        "label": "colab-edition",
    }
    launch = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if launch is None:  # no other launch button configured: a menu of its own
        buttons.append(
            {
                "type": "group",
                "tooltip": "Launch interactive content",
                "icon": "fas fa-rocket",
                "buttons": [link],
                "label": "launch-buttons",
            }
        )
    else:
        launch["buttons"].append(link)


def setup(app):
    app.add_config_value("colab_pages_branch", "gh-pages", "html")
    # After sphinx-book-theme's header and launch buttons (priority 501).
    app.connect("html-page-context", _add_colab_link, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
