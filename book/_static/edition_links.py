"""Sphinx extension: the book's links and launch buttons open the student edition.

The student edition (``python -m autograder release``) is the public repository that students
clone and that Binder and Colab open; its URL is ONE setting, ``repository.url`` in _config.yml.

* Launch buttons: the theme links a chapter's source, ``book/NN_name.md``. Colab cannot open
  Markdown, so the buttons open ``book/NN_name.ipynb``, the notebook the edition holds.
* Chapter links: the Exercises sections link the edition as ``npdl-course/npdl-course`` (the
  default); a different ``repository.url`` replaces it in every chapter at build time.
* A note under each chapter's title says from which release on the chapter's notebook runs in
  the edition (once every npdl module it imports is released, `autograder.release.runs_from`).
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_SLUG = "npdl-course/npdl-course"  # the slug the chapter sources are written with
_CHAPTER = re.compile(r"^book/\d\d_[\w-]+$")
_LINK_HOSTS = (
    "github.com/",
    "mybinder.org/v2/gh/",
    "colab.research.google.com/github/",
    "raw.githubusercontent.com/",
)
_TITLE = re.compile(r"^# .+$", re.MULTILINE)


def edition_note(md: Path) -> str:
    """The admonition saying when the edition runs this chapter's notebook."""
    from autograder.notebooks import assignments
    from autograder.release import npdl_imports, runs_from

    start, modules = runs_from(md), ", ".join(f"`npdl.{m}`" for m in npdl_imports(md))
    uses = f" It imports {modules}." if modules else ""
    if start > len(assignments()):
        when = (
            "The student edition does not include it while the modules it imports are "
            "still to be written in an assignment: read it here."
        )
    else:
        when = (
            f"In the student edition it runs from the release of assignment {start} on, once "
            f"every npdl module it imports is released; until then, read it here."
        )
    return (
        f":::{{note}}\nThe launch buttons open this chapter as a notebook in the course's "
        f"student edition.{uses} {when}\n:::\n"
    )


def with_note(text: str, note: str) -> str:
    """``text`` with ``note`` after its title line (the first ``# `` line outside code)."""
    fence, lines = False, text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        elif not fence and _TITLE.match(line):
            return "\n".join([*lines[: index + 1], "", note, *lines[index + 1 :]])
    return text


def with_slug(text: str, slug: str) -> str:
    """The chapter's links to the edition, on ``slug`` instead of DEFAULT_SLUG."""
    for host in _LINK_HOSTS:
        text = text.replace(host + DEFAULT_SLUG, host + slug)
    return text


def ipynb_url(url: str) -> str:
    """A launch URL on a chapter's Markdown source -> the same on its notebook."""
    return re.sub(r"(book/\d\d_[\w-]+)\.md\b", r"\1.ipynb", url)


def _slug(app) -> str:
    url = app.config.html_theme_options.get("repository_url", "")
    return url.removeprefix("https://github.com/").strip("/") or DEFAULT_SLUG


def _source_read(app, docname, source):
    if _CHAPTER.match(docname):
        text = with_slug(source[0], _slug(app))
        source[0] = with_note(text, edition_note(Path(app.srcdir) / f"{docname}.md"))


def _rewrite(buttons):
    for button in buttons:
        if isinstance(button, dict):
            if isinstance(button.get("url"), str):
                button["url"] = ipynb_url(button["url"])
            _rewrite(button.get("buttons", []))  # a group (the rocket's dropdown)


def _launch_ipynb(app, pagename, templatename, context, doctree):
    if _CHAPTER.match(pagename):
        _rewrite(context.get("header_buttons", []))


def setup(app):
    app.connect("source-read", _source_read)
    # After sphinx-book-theme (priority 501) has put the launch buttons in the page context.
    app.connect("html-page-context", _launch_ipynb, priority=800)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
