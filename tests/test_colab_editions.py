"""The Colab editions of the notebooks (tools/colab_edition.py): MyST as plain Markdown.

Fast, no kernel: every edition is built into a temporary folder and compared with its source.
Its markdown has no MyST role or directive left, its code cells are the source's (same sources,
byte for byte, same outputs and metadata), a solution is folded inside <details>, a citation of
the protonet chapter comes out as the expected text and link, and unknown markup is an error
that names the notebook and the markup (shown failing on purpose).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from notebooks import ROOT, book_notebooks

sys.path.insert(0, str(ROOT / "tools"))
from colab_edition import (  # tools/ is not a package
    Book,
    Converter,
    MarkupError,
    Site,
    edition,
    leftover_markup,
    main,
)

PROTONET = ROOT / "book" / "02_metric" / "protonet.ipynb"
NOTEBOOKS = book_notebooks()


@pytest.fixture(scope="module")
def book() -> Book:
    return Book.load(ROOT)


def written_edition(book: Book, notebook: Path, where: Path) -> dict:
    """The edition as a file would hold it: built, written as the tool writes it, read back."""
    path = where / notebook.name
    path.write_text(json.dumps(edition(book, notebook), sort_keys=True, indent=1) + "\n")
    return json.loads(path.read_text())


def markdown(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def test_the_tool_writes_every_notebook_of_the_book(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0, capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.ipynb"))
    assert written == sorted(p.relative_to(ROOT) for p in NOTEBOOKS)
    assert not any(p.parts[0] == "lessons" for p in written)  # the book's notebooks only


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_edition_is_plain_markdown_around_the_same_code(book, notebook, tmp_path):
    source = json.loads(notebook.read_text())
    converted = written_edition(book, notebook, tmp_path)
    nbformat.validate(nbformat.from_dict(converted))  # a valid notebook for Colab
    for text in markdown(converted):
        assert not leftover_markup(text), f"{notebook.name}: MyST left: {leftover_markup(text)}"
    # a first cell says what this is and links the book's page
    first = "".join(converted["cells"][0]["source"])
    assert "Colab edition" in first and book.site.page_url(book.docname(notebook)) in first
    # everything else but the markdown, unchanged: code cells, outputs, metadata
    code = [c for c in source["cells"] if c["cell_type"] != "markdown"]
    code_edition = [c for c in converted["cells"] if c["cell_type"] != "markdown"]
    assert len(code_edition) == len(code)
    for before, after in zip(code, code_edition, strict=True):
        assert "".join(after["source"]).encode() == "".join(before["source"]).encode()
        assert after == before  # outputs, metadata, execution counts, ids
    assert converted["metadata"] == source["metadata"]
    assert len(converted["cells"]) == len(source["cells"]) + 1


def test_solutions_are_folded_under_their_exercise(book, tmp_path):
    cells = markdown(written_edition(book, PROTONET, tmp_path))
    text = "\n".join(cells)
    assert "#### Exercise" in text
    assert text.count("<details>") == text.count("</details>") >= 3
    # the first exercise's solution (about the cosine scale) is inside its <details> block
    start = text.index("<details>\n<summary>Solution</summary>\n\n")
    assert "Cosine similarities lie in" in text[start : text.index("</details>", start)]
    assert ":class: dropdown" not in text and ":label:" not in text


def test_protonet_citation_is_text_and_a_link_to_the_bibliography(book, tmp_path):
    text = "\n".join(markdown(written_edition(book, PROTONET, tmp_path)))
    references = "https://metalearn-course.github.io/metalearn-course/book/references.html"
    assert book.site.page_url("book/references") == references  # html.baseurl of _config.yml
    assert f"How a Prototypical Network ([Snell et al., 2017]({references})) classifies" in text
    assert f"[Snell et al. (2017)]({references}) (Table 1) report" in text  # {cite:t}
    episodes = (
        "https://metalearn-course.github.io/metalearn-course/book/01_foundations/episodes.html"
    )
    assert f"([Omniglot, splits and episodes]({episodes}))" in text  # {doc}: the page's title


def test_author_lists_follow_the_books_style(book):
    converter = Converter(book, PROTONET)
    assert "[Schmidhuber, 1987]" in converter.inline("{cite}`schmidhuber1987`")  # one author
    assert "[Ravi and Larochelle (2017)]" in converter.inline("{cite:t}`ravi2017`")  # two
    two = converter.inline("{cite:p}`snell2017,finn2017`")  # three or more: et al.
    assert two.startswith("([Snell et al., 2017](") and "; [Finn et al., 2017](" in two


def test_cross_references_become_links_into_the_book(book):
    converter = Converter(book, PROTONET)
    base = book.site.baseurl
    term = converter.inline("{term}`episodes <episode>` and {term}`RL²`")
    assert f"[episodes]({base}book/glossary.html#term-episode)" in term
    assert f"[RL²]({base}book/glossary.html#term-RL2)" in term  # Sphinx's id of the term
    ref = converter.inline("{ref}`ex-first-order-k1`")  # numbered as the book numbers it
    assert ref.startswith("[Exercise ") and "reptile_omniglot.html#ex-first-order-k1)" in ref
    assert converter.inline("{math}`x^2`") == "$x^2$"
    image = converter.inline("![An episode.](../_static/diagrams/episode.svg) `![a](b.svg)`")
    assert image == (  # the book's published copy (not GitHub's raw text/plain); code left alone
        f"![An episode.]({base}_static/diagrams/episode.svg) `![a](b.svg)`"
    )
    assert book.site.image_url("book/02_metric/x.png") == book.site.raw_url("book/02_metric/x.png")
    # a Markdown link to a page's source file (the form of {doc} JupyterLab renders too)
    link = converter.inline(
        "[the episodes](../01_foundations/episodes.ipynb), [overview](metric_learning.md#top) "
        "`[code](x.md)` ![img](../_static/diagrams/episode.svg) [web](https://example.org/a.md)"
    )
    assert link == (
        f"[the episodes]({base}book/01_foundations/episodes.html), "
        f"[overview]({base}book/02_metric/metric_learning.html#top) `[code](x.md)` "
        f"![img]({base}_static/diagrams/episode.svg) [web](https://example.org/a.md)"
    )
    note = converter.convert(":::{note}\nRead {cite}`snell2017`.\n\nAnd this.\n:::\n")
    assert note.startswith("> **Note.**\n>\n> Read ([Snell et al., 2017](")
    assert note.endswith(">\n> And this.\n")


@pytest.mark.parametrize(
    ("markup", "named"),
    [
        ("See {unknownrole}`x`.", "{unknownrole}"),
        ("```{glossary}\nterm\n  definition\n```", "{glossary}"),
        (":::{unknown-directive}\nbody\n:::", "{unknown-directive}"),
        ("{cite}`no_such_key_2099`", "no_such_key_2099"),
        ("[a page](no_such_page.ipynb)", "no_such_page"),
    ],
)
def test_unknown_markup_fails_naming_the_notebook_and_the_markup(book, markup, named, tmp_path):
    notebook = tmp_path / "book" / "02_metric" / "protonet.ipynb"
    notebook.parent.mkdir(parents=True)
    nb = json.loads(PROTONET.read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": [markup]})
    notebook.write_text(json.dumps(nb))
    book = Book.load(ROOT)
    book.root = tmp_path  # the altered copy, at the same place in the book
    with pytest.raises(MarkupError) as error:
        edition(book, notebook)
    assert "book/02_metric/protonet.ipynb" in str(error.value) and named in str(error.value)


def test_code_spans_and_code_blocks_are_left_alone(book):
    converter = Converter(book, PROTONET)
    text = "Write `{cite}` or ``{cite}`key` ``.\n\n```markdown\n{cite}`key`\n```{note}\n```\n"
    assert converter.convert(text) == text
    assert leftover_markup(text) == []


def test_the_colab_address_is_built_from_the_configuration():
    site = Site.from_config(ROOT)
    assert site.colab_url("book/02_metric/protonet") == (
        "https://colab.research.google.com/github/metalearn-course/metalearn-course/blob/"
        f"{site.pages_branch}/colab/book/02_metric/protonet.ipynb"
    )
