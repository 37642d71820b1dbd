"""Sphinx extension: show the course library's docstrings as the plain text they are written in.

The docstrings of ``metalearn_course`` are written for ``help()`` and the editor, not for reST:
``name: description`` lines with hanging indents, equations laid out in indented blocks,
``|x - y|`` for norms, ``*emphasis*``. Parsed as reST they give "Unexpected indentation" and
"Undefined substitution" errors, which fail the ``-W`` build of the API reference
(book/api.md). Rather than bend every docstring to reST, this hook turns each one into reST
*line blocks*: every line and its indentation are kept as written, `code` and ``code`` still
render as code, and every other character that reST would read as markup (``* | _ \\``) is
escaped. A line ending in ``::`` followed by an indented block (a shell recipe, an example) is
kept as a reST literal block.

Only docstrings of ``metalearn_course`` are touched; the book's markdown pages are not.
"""

from __future__ import annotations

import re

# Inline code spans, which stay as they are: ``literal`` or `default role` (a literal in this
# book, see default_role in _config.yml).
_CODE = re.compile(r"``.+?``|`[^`]+`")
_MARKUP = re.compile(r"([\\*|_])")


def _escape(text: str) -> str:
    return _MARKUP.sub(r"\\\1", text)


def _line(text: str, open_tick: str) -> tuple[str, str]:
    """One docstring line as reST inline text; returns it and the code span left open, if any.

    A code span that continues on the next line is closed at the end of this line and reopened
    at the start of the next one: each line of a line block is parsed on its own.
    """
    if open_tick:
        end = text.find(open_tick)
        if end < 0:  # the span goes on for another line
            return (open_tick + text + open_tick if text.strip() else text), open_tick
        head, text = open_tick + text[: end + len(open_tick)], text[end + len(open_tick) :]
    else:
        head = ""
    out, pos = [head], 0
    for match in _CODE.finditer(text):
        out += [_escape(text[pos : match.start()]), match.group(0)]
        pos = match.end()
    rest = text[pos:]
    opened = ""
    for tick in ("``", "`"):
        start = rest.find(tick)
        if start >= 0:
            out += [_escape(rest[:start]), rest[start:] + tick]
            opened = tick
            break
    else:
        out.append(_escape(rest))
    return "".join(out), opened


def plain_to_rest(lines: list[str]) -> list[str]:
    """Docstring lines (already dedented by autodoc) -> reST line blocks and literal blocks."""
    out: list[str] = []
    open_tick = ""
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            out.append("")
            i += 1
            continue
        literal_follows = line.endswith("::") and not open_tick
        text, open_tick = _line(line[:-1] if literal_follows else line, open_tick)
        out.append("| " + text)
        i += 1
        if literal_follows:
            # "...::" then a blank line and an indented block: a literal block, copied verbatim.
            indent = len(line) - len(line.lstrip())
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            block_end = j
            while block_end < len(lines) and (
                not lines[block_end].strip()
                or len(lines[block_end]) - len(lines[block_end].lstrip()) > indent
            ):
                block_end += 1
            if j > i and block_end > j:
                out += ["", "::", "", *(ln.rstrip() for ln in lines[j:block_end]), ""]
                i = block_end
    while out and not out[-1]:
        out.pop()
    return out


def _process(app, what, name, obj, options, lines):
    if name.startswith("metalearn_course") and lines:
        lines[:] = plain_to_rest(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
