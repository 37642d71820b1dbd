"""The book's reference pages stay in step with the rest: glossary, notation, API and outlook.

Fast checks on the sources (no book build, no browser): every {term} the book uses is defined
in the glossary, the notation page lists the course's key symbols, the API reference documents
every public module of metalearn_course, every docstring survives the conversion the API pages
apply to it (book/_ext/plain_docstrings.py) without a reST warning, and the pages' citations
and {doc} links resolve. The last checks read the built book (`make book`) and are skipped
where it has not been built: notebook pages link their Colab editions.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pkgutil
import re
import sys
from pathlib import Path

import docutils.core
import docutils.utils
import pytest
from notebooks import ROOT, toc_files

import metalearn_course

BOOK = ROOT / "book"
REFERENCE_PAGES = ["notation", "glossary", "api", "outlook"]  # the pages this file guards


def markdown_sources() -> dict[Path, str]:
    """Every markdown page of book/ and the markdown cells of every notebook of book/."""
    sources = {p: p.read_text() for p in BOOK.glob("**/*.md") if "_build" not in p.parts}
    for path in BOOK.glob("**/*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        sources[path] = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
        )
    return sources


def glossary_terms() -> set[str]:
    """The terms defined by the ```{glossary} block of book/glossary.md (lower case: Sphinx
    matches terms case-insensitively). A term line is a non-indented line; the indented lines
    below it are its definition, and several term lines may share one definition."""
    text = (BOOK / "glossary.md").read_text()
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.S)
    assert block, "book/glossary.md has no ```{glossary} block"
    terms = {
        line.strip().lower()
        for line in block.group(1).splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith(":")
    }
    assert len(terms) >= 30, f"only {len(terms)} glossary terms"
    return terms


def term_references(text: str) -> set[str]:
    """Targets of {term}`text` and {term}`text <target>` roles."""
    refs = set()
    for body in re.findall(r"\{term\}`([^`]+)`", text):
        target = re.search(r"<([^<>]+)>\s*$", body)
        refs.add((target.group(1) if target else body).strip().lower())
    return refs


def test_glossary_defines_every_term_the_book_uses():
    defined = glossary_terms()
    used = {}
    for path, text in markdown_sources().items():
        for term in term_references(text):
            used.setdefault(term, []).append(path.relative_to(ROOT).as_posix())
    assert used, "no page links a glossary term"
    missing = {t: pages for t, pages in used.items() if t not in defined}
    assert not missing, f"{{term}} references without a glossary entry: {missing}"


def test_glossary_covers_the_core_vocabulary():
    defined = glossary_terms()
    core = {
        "episode", "task", "way", "shot", "support set", "query set", "meta-training classes",
        "meta-validation classes", "meta-test classes", "inner loop", "outer loop",
        "meta-gradient", "transductive batch norm", "first-order approximation", "prototype",
        "embedding", "feature reuse", "learned optimizer", "black-box meta-learner", "rl²",
        "regret", "gittins index", "confidence interval", "vinyals split",
    }  # fmt: skip
    assert core <= defined, f"glossary lacks {sorted(core - defined)}"


def test_chapter_pages_link_the_glossary():
    for page in ["01_foundations/what_is_meta_learning.md", "02_metric/metric_learning.md"]:
        refs = term_references((BOOK / page).read_text())
        assert len(refs) >= 8, f"{page} links only {sorted(refs)}"


def test_notation_page_lists_the_key_symbols():
    text = (BOOK / "notation.md").read_text()
    symbols = [
        r"\mathcal{T}_i", r"p(\mathcal{T})", r"\mathcal{S}_i", r"\mathcal{Q}_i", "$N$", "$K$",
        r"\omega", r"\theta", r"\phi_i", r"\alpha", r"\beta", r"f_\theta", r"f_\omega", "c_k",
        r"\mathcal{L}_{\mathcal{S}_i}", r"\mathcal{L}_{\mathcal{Q}_i}", "$B$", r"1.96\, s",
    ]  # fmt: skip
    missing = [s for s in symbols if s not in text]
    assert not missing, f"notation.md does not mention {missing}"
    rows = [r for r in text.splitlines() if r.startswith("| $")]
    assert len(rows) >= 50
    # the symbols of the published chapters say where they are introduced, with a link; the
    # tables of the parts still being written (memory, meta-RL) follow the library's docstrings
    chapters = text.split("## Memory-based")[0]
    unlinked = [r for r in chapters.splitlines() if r.startswith("| $") and "{doc}" not in r]
    assert not unlinked, f"symbols without the chapter that introduces them: {unlinked}"


def public_modules() -> set[str]:
    """Every module of metalearn_course without a leading underscore in its dotted name."""
    names = {metalearn_course.__name__}
    for info in pkgutil.walk_packages(metalearn_course.__path__, "metalearn_course."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.add(info.name)
    return names


def api_pages() -> list[Path]:
    return [BOOK / "api.md", *sorted((BOOK / "api").glob("*.md"))]


def documented_modules() -> list[str]:
    return [
        m
        for page in api_pages()
        for m in re.findall(r"^\.\. automodule:: (\S+)", page.read_text(), re.M)
    ]


def test_api_reference_documents_every_public_module():
    documented = documented_modules()
    assert len(documented) == len(set(documented)), "a module is documented twice"
    # the top-level package only holds __version__: its subpackages are the API
    expected = public_modules() - {"metalearn_course"}
    missing, extra = expected - set(documented), set(documented) - expected
    assert not missing, f"modules missing from book/api/*.md: {sorted(missing)}"
    assert not extra, f"book/api/*.md documents modules that do not exist: {sorted(extra)}"


def test_api_subpages_are_published_with_the_api_page():
    toc = set(toc_files())
    if "book/api" not in toc:
        pytest.skip("book/api is not in _toc.yml yet")
    unlisted = [p for p in api_pages()[1:] if f"book/api/{p.stem}" not in toc]
    assert not unlisted, f"API pages missing from _toc.yml: {unlisted}"


def load_extension():
    path = BOOK / "_ext" / "plain_docstrings.py"
    spec = importlib.util.spec_from_file_location("plain_docstrings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def library_docstrings():
    """(qualified name, docstring) of every module, class, function and method of the library."""
    for name in sorted(public_modules()):
        module = importlib.import_module(name)
        yield name, inspect.getdoc(module)
        for attr, obj in vars(module).items():
            if getattr(obj, "__module__", None) != name or attr.startswith("_"):
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{name}.{attr}", inspect.getdoc(obj)
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if inspect.isfunction(value) and value.__doc__:
                        yield f"{name}.{attr}.{member}", inspect.getdoc(value)


def rest_problems(text: str) -> list[str]:
    """docutils' warnings and errors for a reST fragment, with the book's default role."""
    doctree = docutils.core.publish_doctree(
        ".. default-role:: literal\n\n" + text,
        settings_overrides={"report_level": 5, "halt_level": 5, "warning_stream": False},
    )
    return [
        m.astext()
        for m in doctree.findall(docutils.nodes.system_message)
        if m["level"] >= docutils.utils.Reporter.WARNING_LEVEL
    ]


def test_every_docstring_converts_to_clean_rest():
    extension = load_extension()
    problems = {}
    for name, doc in library_docstrings():
        if doc:
            found = rest_problems("\n".join(extension.plain_to_rest(doc.splitlines())))
            if found:
                problems[name] = found
    assert not problems, f"docstrings that would break the -W book build: {problems}"


def test_plain_docstrings_keeps_text_code_and_literal_blocks():
    convert = load_extension().plain_to_rest
    lines = convert(
        [
            "Norm |x - y| of *both*, `code` and ``more code``.",
            "key: a value",
            "    continued, indented",
            "A recipe::",
            "",
            "    find . | sort",
            "",
            "``a span that goes",
            "on``, then text_",
        ]
    )
    assert lines[0] == r"| Norm \|x - y\| of \*both\*, `code` and ``more code``."
    assert lines[2] == "|     continued, indented"
    assert lines[3:8] == ["| A recipe:", "", "::", "", "    find . | sort"]
    assert lines[-2:] == ["| ``a span that goes``", r"| ``on``, then text\_"]
    assert not rest_problems("\n".join(lines))


def cited_keys(text: str) -> set[str]:
    return {
        key.strip()
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
        for key in group.split(",")
    }


@pytest.mark.parametrize("page", REFERENCE_PAGES)
def test_reference_page_citations_resolve(page):
    bib = (BOOK / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,\s]+),", bib))
    cited = cited_keys((BOOK / f"{page}.md").read_text())
    assert cited <= keys, f"{page}.md cites keys missing from references.bib: {cited - keys}"


def test_outlook_is_cited_and_links_back_to_the_chapters():
    text = (BOOK / "outlook.md").read_text()
    assert len(cited_keys(text)) >= 20, "the outlook should rest on the literature"
    linked = set(re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text))
    for chapter in [
        "01_foundations/what_is_meta_learning",
        "02_metric/metric_learning",
        "03_gradient/optimization_based",
    ]:
        assert chapter in linked, f"outlook.md does not link {chapter}"
    for heading in ["## Where meta-learning is used", "## Known problems", "## FAQ"]:
        assert heading in text


@pytest.mark.parametrize("page", [*REFERENCE_PAGES, *(f"api/{p.stem}" for p in api_pages()[1:])])
def test_reference_page_doc_links_exist(page):
    source = BOOK / f"{page}.md"
    for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", source.read_text()):
        base = BOOK if target.startswith("/") else source.parent
        resolved = (base / target.lstrip("/")).resolve()
        assert resolved.with_suffix(".md").exists() or resolved.with_suffix(".ipynb").exists(), (
            f"{page}.md links {target!r}, which does not exist"
        )


EXERCISE_BLOCK = re.compile(
    r"^(`{3,}|:{3,})\{(exercise|solution)\}([^\n]*)\n(.*?)^\1[ \t]*$", re.M | re.S
)
# The first line of an exercise's body: its level and the time it takes, e.g.
# "**★★ · about 20 minutes** (retrains the model: about 2.5 minutes on a laptop CPU)".
EXERCISE_MARK = re.compile(r"^\*\*(★{1,3}) · [^*\n]*\b(?:second|minute|hour)s?\b[^*\n]*\*\*")


def test_every_exercise_has_a_level_a_time_and_a_solution():
    """Every {exercise} of the book (md pages and notebook markdown cells) starts with its level
    (★, ★★ or ★★★) and the time it takes, and has a {solution} with its label."""
    exercises, solutions, unmarked = {}, set(), []
    for path, text in markdown_sources().items():
        for m in EXERCISE_BLOCK.finditer(text):
            kind, arg, body = m.group(2), m.group(3).strip(), m.group(4)
            if kind == "solution":
                solutions.add(arg)
                continue
            label = re.search(r"^:label:\s*(\S+)", body, re.M)
            assert label, f"{path.relative_to(ROOT)}: an exercise without a :label:"
            exercises[label.group(1)] = path
            first = next(
                (line for line in body.splitlines() if line.strip() and not line.startswith(":")),
                "",
            )
            mark = EXERCISE_MARK.match(first)
            if not mark:
                unmarked.append(f"{label.group(1)} ({path.relative_to(ROOT)}): {first[:60]!r}")
    assert len(exercises) >= 80, f"only {len(exercises)} exercises found"
    assert not unmarked, "exercises without a level (★/★★/★★★) and time:\n" + "\n".join(unmarked)
    missing = sorted(
        f"{lab} ({p.relative_to(ROOT)})" for lab, p in exercises.items() if lab not in solutions
    )
    assert not missing, "exercises without a solution:\n" + "\n".join(missing)


# The built book (`make book`): skipped where it has not been built.
SITE = ROOT / "_build" / "html"


def built(page: str) -> str:
    path = SITE / page
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is absent: `make book` builds it")
    return path.read_text()


def colab_edition_tool():
    """tools/colab_edition.py (tools/ is not a package)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module("colab_edition")
    finally:
        sys.path.remove(str(ROOT / "tools"))


def test_notebook_pages_open_their_colab_edition():
    """The launch menu of a notebook page opens its Colab edition (book/_ext/colab_badge.py),
    published beside the book, and no longer the raw source (the theme's own Colab button)."""
    html = built("book/02_metric/protonet.html")
    tool = colab_edition_tool()
    url = tool.Site.from_config(ROOT).colab_url("book/02_metric/protonet")
    assert f'href="{url}"' in html, f"no link to {url} on the protonet page"
    assert "/blob/main/book/02_metric/protonet.ipynb" not in html  # the raw source
    assert (SITE / "colab" / "book" / "02_metric" / "protonet.ipynb").exists()


def test_glossary_anchors_of_the_colab_editions_exist():
    """The editions link {term}s to the anchors Sphinx gives the glossary's terms."""
    html = built("book/glossary.html")
    tool = colab_edition_tool()
    ids = set(re.findall(r'id="(term-[^"]+)"', html))
    anchors = {tool.make_id(f"term-{term}") for term in tool.Book.load(ROOT).terms.values()}
    assert anchors and anchors <= ids, f"anchors missing from glossary.html: {anchors - ids}"
