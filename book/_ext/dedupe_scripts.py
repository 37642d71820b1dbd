"""Sphinx extension: drop repeated <script> entries from each page.

With Jupyter Book 1.0.4 (Sphinx 7.4, sphinx-thebe 0.3) the inline thebe configuration script is
added twice, and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in
the browser. Keeping the first copy of each identical script fixes that without touching
the packages.
"""

from __future__ import annotations


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # the copies differ only in priority: compare file name and attributes (inline body)
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", script) or "", tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    # A late priority: run after the extensions that add scripts for this page.
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
