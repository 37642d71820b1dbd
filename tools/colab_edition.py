"""Colab editions of the book's notebooks: the MyST markup of the markdown cells as plain Markdown.

Colab renders Markdown, not MyST: a citation, a cross-reference, an exercise or an admonition of
the book shows there as raw text, and a solution sits right under its question. An edition is
the notebook with its markdown cells converted, and nothing else changed: code cells, outputs
and metadata are copied as they are (the same JSON). A first markdown cell says that it is the
Colab edition of the book's page and links the page.

    python tools/colab_edition.py OUT_DIR   # every notebook of _toc.yml, same relative paths

`make book` writes them into _build/html/colab/, so they are published with the book on its
Pages branch, where Colab opens them (book/_ext/colab_badge.py links every notebook page to its
edition; `colab_url` gives the address). Conversions, each to Markdown that Colab renders:

- {cite}`a`, {cite:p}`a,b` -> ([Snell et al., 2017](references)); {cite:t}`a` -> [Snell et al.
  (2017)](references): author names and years from book/references.bib, linked to the
  bibliography page.
- {doc}`path` -> [title of the page](its URL); {doc}`text <path>` -> [text](URL).
- [text](path.ipynb) and [text](path.md#anchor), Markdown links to a page's source file (the
  book's form of {doc}, which JupyterLab renders too) -> [text](the page's URL#anchor).
- {term}`text` and {term}`text <term>` -> [text](glossary URL#term-...), Sphinx's anchor.
- {ref}`label`, {ref}`text <label>`, {numref}`label` -> a link to the page and anchor that
  define the label (a MyST target `(label)=`, an exercise's `:label:`, a `:name:` option); the
  text of a reference to an exercise is "Exercise N", numbered as the book numbers it.
- {eq}`label` -> [(label)](page#equation-label); {math}`x` -> $x$.
- {glue:text}`[notebook.ipynb::]key[:format]` -> the value the notebook recorded (its stored
  output), formatted as MyST-NB formats it: the number the book prints.
- ```{exercise} -> "#### Exercise N" (and its title) and its body; ```{solution} -> the body
  inside a collapsed <details> block; admonitions (note, tip, ..., admonition, dropdown) -> a
  block quote that starts with **Note.** (or the title); ```{math} -> $$ ... $$; ```{figure}
  and ```{image} -> ![caption](URL); a Markdown image ![alt](relative path) gets the same URL:
  the book's published copy of its static files (the diagrams), else the raw file on GitHub
  (the repository's branch of _config.yml), which Colab can load; ```{code-block} -> a code
  fence.
- `(label)=` targets and the `(label)` of a `$$` equation are dropped (the links point into the
  book).

Any other role or directive is an error naming the notebook and the markup, so new markup cannot
slip through unconverted. URLs come from _config.yml: the book's `html.baseurl`, the
repository's URL and branch, and `sphinx.config.colab_pages_branch` (the Pages branch).
"""

from __future__ import annotations

import ast
import codecs
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLAB = "https://colab.research.google.com/github"
EDITIONS_FOLDER = "colab"  # under the published book: _build/html/colab/

# Admonitions and the title each gets when it has none of its own.
ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "warning": "Warning",
    "caution": "Caution",
    "attention": "Attention",
    "danger": "Danger",
    "error": "Error",
    "seealso": "See also",
    "admonition": "Note",  # the title is the argument
    "dropdown": "Details",  # the title is the argument
}
TITLED = {"admonition", "dropdown"}
CODE_DIRECTIVES = {"code-block", "code", "sourcecode"}

# A fence: backticks (code, or a directive when the info string is {name}) or colons (MyST's
# colon_fence, always a directive). Up to three spaces of indentation, as CommonMark allows.
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})(?P<info>.*)$")
DIRECTIVE_INFO = re.compile(r"^\s*\{(?P<name>[^}\s]+)\}\s*(?P<arg>.*?)\s*$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*?)\s*$")
TARGET = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
# A role, or a code span (left as it is: `{cite}` in backticks is code, not a citation).
INLINE = re.compile(
    r"\{(?P<role>[A-Za-z][\w:+.-]*)\}(?P<ticks>`+)(?P<body>.+?)(?P=ticks)"
    r"|(?P<code>(?P<cticks>`+).+?(?P=cticks))",
    re.S,
)
# What is left of MyST in converted Markdown (outside code): the editions' final check.
LEFTOVER_ROLE = re.compile(r"\{[A-Za-z][\w:+.-]*\}`")
LEFTOVER_DIRECTIVE = re.compile(r"^\s*(`{3,}|:{3,})\s*\{[^}]*\}", re.M)
# A Markdown image, ![alt](path): a relative path is the repository's file, not Colab's.
MD_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<path>[^)\s]+)\)")
# A Markdown link to a page of the book by its source file, [text](../x/page.ipynb#anchor): the
# book resolves it as a document reference, Colab would look for the file next to the edition.
MD_PAGE_LINK = re.compile(
    r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<path>(?![a-z][a-z0-9+.-]*:)[^)\s#]+\.(?:ipynb|md))"
    r"(?:#(?P<anchor>[^)\s]*))?\)"
)
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>\s*$", re.S)
DOLLAR_LABEL = re.compile(r"\$\$\s*\((?P<label>[^()\s]+)\)\s*$")


class MarkupError(ValueError):
    """Markup the converter does not know, or a reference it cannot resolve."""


@dataclass(frozen=True)
class Site:
    """Where the book is published, all read from _config.yml."""

    baseurl: str  # the book's published root, ending with "/"
    owner: str
    repo: str
    branch: str  # the repository's source branch (raw files: images)
    pages_branch: str  # the branch the published book (and the editions) live on

    @classmethod
    def from_config(cls, root: Path = ROOT) -> Site:
        config = yaml.safe_load((root / "_config.yml").read_text())
        url = config["repository"]["url"].rstrip("/")
        owner, repo = url.removesuffix(".git").split("/")[-2:]
        baseurl = config["html"]["baseurl"]
        return cls(
            baseurl=baseurl if baseurl.endswith("/") else baseurl + "/",
            owner=owner,
            repo=repo,
            branch=config["repository"].get("branch", "main"),
            pages_branch=config["sphinx"]["config"]["colab_pages_branch"],
        )

    def page_url(self, docname: str, anchor: str = "") -> str:
        """The published HTML page of a document (a path without suffix from the root)."""
        return f"{self.baseurl}{docname}.html" + (f"#{anchor}" if anchor else "")

    def raw_url(self, path: str) -> str:
        """A repository file (an image) as GitHub serves it raw."""
        return f"https://raw.githubusercontent.com/{self.owner}/{self.repo}/{self.branch}/{path}"

    def image_url(self, path: str) -> str:
        """Where a browser can load a repository image from. The book's static files (the
        diagrams) are published with it; GitHub serves raw SVG as text/plain, which no browser
        draws in an <img>, so they come from the book. Other images: GitHub's raw file."""
        static = "book/_static/"
        if path.startswith(static):
            return f"{self.baseurl}_static/{path.removeprefix(static)}"
        return self.raw_url(path)

    def colab_url(self, docname: str) -> str:
        """The address that opens the Colab edition of a notebook page in Colab."""
        return (
            f"{COLAB}/{self.owner}/{self.repo}/blob/{self.pages_branch}/"
            f"{EDITIONS_FOLDER}/{docname}.ipynb"
        )


@dataclass
class Label:
    """Where a {ref} label points, and the text a reference without its own text shows."""

    docname: str
    anchor: str
    text: str


@dataclass
class Directive:
    name: str
    argument: str
    options: dict[str, str]
    body: list[str]


def make_id(text: str) -> str:
    """Sphinx's HTML id of a text (the glossary's term-... anchors), case kept."""
    from sphinx.util.nodes import _make_id

    return _make_id(text)


def docutils_id(text: str) -> str:
    """The HTML id docutils gives a MyST target or a :name: option."""
    from docutils.nodes import make_id as docutils_make_id

    return docutils_make_id(text)


def closing_fence(lines: list[str], start: int, fence: str) -> int:
    """Index of the line that closes a fence opened at `start` (the last line if none does)."""
    close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
    for index in range(start + 1, len(lines)):
        if close.match(lines[index]):
            return index
    return len(lines)


def split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's options (`:key: value` lines, or a `---` YAML block) and its content."""
    options: dict[str, str] = {}
    rest = list(body)
    if rest and rest[0].strip() == "---":
        end = next((i for i in range(1, len(rest)) if rest[i].strip() == "---"), None)
        if end is not None:
            loaded = yaml.safe_load("\n".join(rest[1:end])) or {}
            options = {str(k): str(v) for k, v in loaded.items()}
            rest = rest[end + 1 :]
    else:
        while rest and (match := OPTION.match(rest[0].strip())):
            options[match["key"]] = match["value"]
            rest = rest[1:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    while rest and not rest[-1].strip():
        rest = rest[:-1]
    return options, rest


def dedent(lines: list[str], indent: str) -> list[str]:
    return [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines]


def directives(text: str) -> list[Directive]:
    """Every directive of a MyST text, nested ones included, in document order (code fences
    are opaque: a directive shown inside a code block is not one)."""
    found: list[Directive] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        end = closing_fence(lines, index, match["fence"])
        info = DIRECTIVE_INFO.match(match["info"])
        if info:
            options, body = split_options(dedent(lines[index + 1 : end], match["indent"]))
            found.append(Directive(info["name"], info["arg"], options, body))
            if info["name"] not in CODE_DIRECTIVES:
                found.extend(directives("\n".join(body)))
        index = end + 1
    return found


def markdown_of(path: Path) -> str:
    """A page's MyST text: a markdown page, or the markdown cells of a notebook."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


def first_heading(text: str) -> str:
    match = re.search(r"^# +(.+?)\s*$", text, re.M)
    return match.group(1) if match else ""


def latex_to_text(text: str) -> str:
    """A BibTeX name as text: accents decoded, grouping braces removed."""
    import latexcodec  # noqa: F401  (registers the codec; installed with pybtex)

    return codecs.decode(text, "ulatex").replace("{", "").replace("}", "")


@dataclass
class Book:
    """What the conversion needs to know about the whole book: its pages and their titles,
    the labels, the exercise numbers, the bibliography, the glossary and the glued values."""

    root: Path
    site: Site
    pages: dict[str, Path] = field(default_factory=dict)  # docname -> source file
    labels: dict[str, Label] = field(default_factory=dict)
    exercises: dict[str, list[int | None]] = field(default_factory=dict)  # docname -> numbers
    authors: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (names, year)
    terms: dict[str, str] = field(default_factory=dict)  # lower case -> the glossary's spelling
    _glue: dict[Path, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path = ROOT) -> Book:
        from metalearn_course.cli import toc_files

        book = cls(root=root, site=Site.from_config(root))
        for docname in toc_files(root):
            for suffix in (".ipynb", ".md"):
                if (root / f"{docname}{suffix}").exists():
                    book.pages[docname] = root / f"{docname}{suffix}"
                    break
        book._index()
        book._read_bibliography(root / "book" / "references.bib")
        book._read_glossary(root / "book" / "glossary.md")
        return book

    def notebooks(self) -> list[Path]:
        """The book's notebooks (_toc.yml), not the lessons."""
        from metalearn_course.cli import toc_notebooks

        book = self.root / "book"
        return [p for p in toc_notebooks(self.root) if p.is_relative_to(book)]

    def docname(self, path: Path) -> str:
        return path.relative_to(self.root).with_suffix("").as_posix()

    def title(self, docname: str) -> str:
        return first_heading(markdown_of(self.pages[docname])) or docname

    def _index(self) -> None:
        """Labels and exercise numbers, in the book's order. sphinx-exercise numbers the
        exercises of the whole book in one sequence (the book has no section numbers)."""
        number = 0
        for docname, path in self.pages.items():
            text = markdown_of(path)
            lines = text.splitlines()
            for index, line in enumerate(lines):
                if match := TARGET.match(line):
                    after = next((x for x in lines[index + 1 :] if x.strip()), "")
                    heading = re.match(r"^#+\s+(.*?)\s*$", after)
                    title = heading.group(1) if heading else match["label"]
                    label = match["label"]
                    self.labels[label] = Label(docname, docutils_id(label), title)
                if match := DOLLAR_LABEL.search(line):
                    label = match["label"]
                    self.labels[label] = Label(docname, f"equation-{label}", f"({label})")
            numbers: list[int | None] = []
            for directive in directives(text):
                options = directive.options
                if directive.name == "exercise":
                    if "nonumber" in options:
                        numbers.append(None)
                        text_ = f"Exercise: {directive.argument}" if directive.argument else ""
                    else:
                        number += 1
                        numbers.append(number)
                        text_ = f"Exercise {number}"
                    if "label" in options:
                        self.labels[options["label"]] = Label(
                            docname, options["label"], text_ or options["label"]
                        )
                elif directive.name == "math" and "label" in options:
                    label = options["label"]
                    self.labels[label] = Label(docname, f"equation-{label}", f"({label})")
                if "name" in options:
                    name = options["name"]
                    caption = next((x for x in directive.body if x.strip()), "")
                    text_ = caption.strip() if directive.name == "figure" else ""
                    self.labels[name] = Label(
                        docname, docutils_id(name), text_ or directive.argument or name
                    )
            self.exercises[docname] = numbers

    def _read_bibliography(self, path: Path) -> None:
        from pybtex.database import parse_file

        for key, entry in parse_file(str(path)).entries.items():
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            last = [latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in people]
            if last and last[-1] == "others":
                names = f"{last[0]} et al."
            elif len(last) == 1:
                names = last[0]
            elif len(last) == 2:
                names = f"{last[0]} and {last[1]}"
            else:
                names = f"{last[0]} et al."
            self.authors[key] = (names, entry.fields.get("year", "n.d."))

    def _read_glossary(self, path: Path) -> None:
        """The terms of the ```{glossary} block: a term line is a non-indented line."""
        for directive in directives(path.read_text()):
            if directive.name == "glossary":
                for line in directive.body:
                    if line.strip() and not line[0].isspace() and not line.startswith(":"):
                        self.terms[line.strip().lower()] = line.strip()

    def glued(self, notebook: Path) -> dict[str, str]:
        """The values a notebook recorded with `glue` (its stored outputs): name -> text."""
        if notebook not in self._glue:
            values: dict[str, str] = {}
            for cell in json.loads(notebook.read_text())["cells"]:
                for output in cell.get("outputs", []):
                    scrapbook = output.get("metadata", {}).get("scrapbook")
                    if not scrapbook:
                        continue
                    for mime, data in output.get("data", {}).items():
                        if mime.endswith("text/plain"):
                            text = data if isinstance(data, str) else "".join(data)
                            values[scrapbook["name"]] = text
            self._glue[notebook] = values
        return self._glue[notebook]


def format_glued(text: str, spec: str) -> str:
    """MyST-NB's formatting of a glued text/plain value (myst_nb.core.variables)."""
    try:
        value: object = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if spec == "":
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)  # type: ignore[call-overload]
    elif kind in "eEfFgGn%":
        value = float(value)  # type: ignore[arg-type]
    return format(value, spec)


class Converter:
    """Converts the markdown cells of one notebook."""

    def __init__(self, book: Book, notebook: Path) -> None:
        self.book = book
        self.site = book.site
        self.notebook = notebook
        self.docname = book.docname(notebook)
        self.folder = PurePosixPath(self.docname).parent
        self.exercise_numbers = iter(book.exercises.get(self.docname, []))

    def fail(self, message: str) -> MarkupError:
        return MarkupError(f"{self.notebook.relative_to(self.book.root)}: {message}")

    # -- block level --------------------------------------------------------------------------

    def convert(self, text: str) -> str:
        """A markdown cell's source, converted."""
        converted = "\n".join(self.blocks(text.splitlines()))
        return converted + ("\n" if text.endswith("\n") else "")

    def blocks(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                out.extend(self.inline("\n".join(paragraph)).split("\n"))
                paragraph.clear()

        index = 0
        while index < len(lines):
            line = lines[index]
            fence = FENCE.match(line)
            if fence:
                flush()
                end = closing_fence(lines, index, fence["fence"])
                info = DIRECTIVE_INFO.match(fence["info"])
                if info:
                    indent = fence["indent"]  # a directive in a list item stays in it
                    body = dedent(lines[index + 1 : end], indent)
                    converted = self.directive(info["name"], info["arg"], body, line)
                    out.extend(indent + x if x else x for x in converted)
                elif fence["fence"].startswith(":"):
                    raise self.fail(f"a colon fence that is not a directive: {line.strip()!r}")
                else:  # a code block: as it is
                    out.extend(lines[index : end + 1])
                index = end + 1
            elif line.strip().startswith("$$") and line.strip().count("$$") == 1:
                flush()  # display maths: as it is, up to the closing $$
                end = next(
                    (i for i in range(index + 1, len(lines)) if "$$" in lines[i]), len(lines)
                )
                maths = lines[index : end + 1]
                if maths and DOLLAR_LABEL.search(maths[-1]):  # `$$ (label)`: the book's number
                    maths[-1] = DOLLAR_LABEL.sub("$$", maths[-1])
                out.extend(maths)
                index = end + 1
            elif TARGET.match(line):
                flush()  # a MyST target: the book's anchor, nothing to show
                index += 1
            else:
                paragraph.append(line)
                index += 1
        flush()
        return out

    def directive(self, name: str, argument: str, body: list[str], line: str) -> list[str]:
        options, content = split_options(body)
        if name == "exercise":
            number = next(self.exercise_numbers, None)
            heading = "#### Exercise" + (f" {number}" if number else "")
            if argument:
                heading += f": {self.inline(argument)}"
            return [heading, "", *self.blocks(content)]
        if name == "solution":
            return [
                "<details>",
                "<summary>Solution</summary>",
                "",
                *self.blocks(content),
                "",
                "</details>",
            ]
        if name in ADMONITIONS:
            title = argument if name in TITLED and argument else ADMONITIONS[name]
            if name not in TITLED and argument:  # a note's argument is its first line
                content = [argument, *content]
            quoted = [f"> {x}" if x.strip() else ">" for x in self.blocks(content)]
            return [f"> **{self.inline(title).rstrip('.')}.**", ">", *quoted]
        if name == "math":
            return ["$$", *content, "$$"]
        if name in ("figure", "image"):
            url = self.image_url(argument)
            # a figure's caption is its first paragraph, the rest is its legend
            blank = next((i for i, x in enumerate(content) if not x.strip()), len(content))
            caption, legend = content[:blank], content[blank:]
            alt = options.get("alt", "")
            if name == "figure" and caption:
                text = self.inline(" ".join(x.strip() for x in caption))
                image = f"![{text}]({url})"
                return [image, *self.blocks(legend)] if legend else [image]
            return [f"![{alt}]({url})"]
        if name in CODE_DIRECTIVES:
            return [f"```{argument}", *content, "```"]
        raise self.fail(f"unknown directive {{{name}}}: {line.strip()!r}")

    def image_url(self, path: str) -> str:
        if re.match(r"^[a-z]+://", path):
            return path
        target = path.lstrip("/") if path.startswith("/") else str(self.folder / path)
        return self.site.image_url(normalise(target))

    # -- inline -------------------------------------------------------------------------------

    def inline(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match["code"]:
                return match["code"]
            return self.role(match["role"], match["body"], match.group(0))

        def image(match: re.Match[str]) -> str:
            return f"![{match['alt']}]({self.image_url(match['path'])})"

        def page_link(match: re.Match[str]) -> str:
            docname = self.resolve_doc(match["path"], match.group(0))
            url = self.site.page_url(docname, match["anchor"] or "")
            return f"[{match['text']}]({url})"

        def links(piece: str) -> str:
            return MD_PAGE_LINK.sub(page_link, MD_IMAGE.sub(image, piece))

        # images and links outside code spans: the text between two code spans is all they see
        pieces = re.split(r"(`+[^`]*?`+)", INLINE.sub(replace, text))
        return "".join(p if p.startswith("`") else links(p) for p in pieces)

    def role(self, name: str, body: str, markup: str) -> str:
        if name in ("cite", "cite:p", "cite:t"):
            return self.cite(body, textual=name == "cite:t", markup=markup)
        if name == "doc":
            text, target = explicit(body)
            docname = self.resolve_doc(target, markup)
            return f"[{text or self.book.title(docname)}]({self.site.page_url(docname)})"
        if name == "term":
            text, target = explicit(body)
            term = self.book.terms.get((target or text).strip().lower())
            if term is None:
                raise self.fail(f"no glossary term {target or text!r} for {markup!r}")
            url = self.site.page_url("book/glossary", make_id(f"term-{term}"))
            return f"[{text or target}]({url})"
        if name in ("ref", "numref"):
            text, label = explicit(body)
            found = self.book.labels.get(label)
            if found is None:
                raise self.fail(f"no label {label!r} for {markup!r}")
            url = self.site.page_url(found.docname, found.anchor)
            if text and name == "numref":
                text = text.replace("{number}", found.text.split()[-1]).replace("%s", found.text)
            return f"[{text or found.text}]({url})"
        if name == "eq":
            found = self.book.labels.get(body.strip())
            if found is None:
                return f"({body.strip()})"
            return f"[({body.strip()})]({self.site.page_url(found.docname, found.anchor)})"
        if name == "math":
            return f"${body}$"
        if name in ("glue:text", "glue"):
            return self.glue(body, markup)
        raise self.fail(f"unknown role {{{name}}}: {markup!r}")

    def cite(self, body: str, *, textual: bool, markup: str) -> str:
        url = self.site.page_url("book/references")
        parts = []
        for key in (k.strip() for k in body.split(",")):
            if key not in self.book.authors:
                raise self.fail(f"unknown citation key {key!r} in {markup!r}")
            names, year = self.book.authors[key]
            parts.append(f"[{names} ({year})]({url})" if textual else f"[{names}, {year}]({url})")
        return "; ".join(parts) if textual else f"({'; '.join(parts)})"

    def resolve_doc(self, target: str, markup: str) -> str:
        target = re.sub(r"\.(md|ipynb)$", "", target.strip())
        path = target.lstrip("/") if target.startswith("/") else str(self.folder / target)
        docname = normalise(path)
        if docname not in self.book.pages:
            raise self.fail(f"{markup!r} names no page of the book ({docname})")
        return docname

    def glue(self, body: str, markup: str) -> str:
        # MyST-NB's parsing (myst_nb.ext.glue.roles): [notebook::]key[:format]
        key, spec = body.rsplit(":", 1) if ":" in body else (body, "s")
        notebook = self.notebook
        if "::" in key:
            path, key = key.split("::", 1)
            notebook = self.book.root / normalise(str(self.folder / path))
        values = self.book.glued(notebook) if notebook.exists() else {}
        if key not in values:
            raise self.fail(f"no glued value {key!r} in {notebook.name} for {markup!r}")
        return format_glued(values[key], spec)

    # -- the notebook -------------------------------------------------------------------------

    def header(self) -> str:
        title = self.book.title(self.docname)
        return (
            f"*Colab edition of the book's page [{title}]({self.site.page_url(self.docname)}), "
            "generated by `make book`: the book's markup as plain Markdown, solutions folded. "
            "The book is the reference.*\n"
        )


def explicit(body: str) -> tuple[str, str]:
    """`text <target>` -> (text, target); `target` -> ("", target)."""
    match = EXPLICIT.match(body)
    if match and match["text"]:
        return " ".join(match["text"].split()), match["target"].strip()
    return "", body.strip()


def normalise(path: str) -> str:
    """A relative POSIX path with its `..` and `.` resolved."""
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def leftover_markup(text: str) -> list[str]:
    """MyST roles and directives left in Markdown, outside code blocks and code spans."""
    lines = text.splitlines()
    kept: list[str] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence and fence["fence"].startswith("`") and not DIRECTIVE_INFO.match(fence["info"]):
            index = closing_fence(lines, index, fence["fence"]) + 1
            continue
        kept.append(lines[index])
        index += 1
    prose = INLINE.sub(lambda m: "" if m["code"] else m.group(0), "\n".join(kept))
    return LEFTOVER_ROLE.findall(prose) + [m.group(0) for m in LEFTOVER_DIRECTIVE.finditer(prose)]


def source_lines(text: str) -> list[str]:
    """A cell source as nbformat stores it: a list of lines, each with its newline."""
    return text.splitlines(keepends=True)


def edition(book: Book, notebook: Path) -> dict:
    """The Colab edition of a notebook, as its JSON object."""
    nb = json.loads(notebook.read_text())
    converter = Converter(book, notebook)
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"]
        text = source if isinstance(source, str) else "".join(source)
        converted = converter.convert(text)
        left = leftover_markup(converted)
        if left:
            raise converter.fail(f"MyST markup left after the conversion: {left}")
        cell["source"] = converted if isinstance(source, str) else source_lines(converted)
    header = {"cell_type": "markdown", "metadata": {}, "source": source_lines(converter.header())}
    if any("id" in cell for cell in nb["cells"]):
        header = {"cell_type": "markdown", "id": "colab-edition", **header}
    nb["cells"].insert(0, header)
    return nb


def write_editions(out_dir: Path, root: Path = ROOT) -> list[Path]:
    """Every notebook's edition under `out_dir`, at its path relative to the root."""
    book = Book.load(root)
    written = []
    for notebook in book.notebooks():
        target = out_dir / notebook.relative_to(root)
        nb = edition(book, notebook)
        target.parent.mkdir(parents=True, exist_ok=True)
        # as nbformat writes a notebook (indent 1, sorted keys, unicode kept)
        target.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__)
        return 2
    try:
        written = write_editions(Path(argv[0]))
    except MarkupError as error:
        print(f"colab_edition: {error}", file=sys.stderr)
        return 1
    print(f"{len(written)} Colab editions written under {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
