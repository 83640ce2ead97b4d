"""Sphinx extension: keep the built pages free of network references.

Jupyter Book always loads sphinx-thebe, which writes the CDN address of the thebe
library (unpkg.com) into every page, even with thebe disabled. The course does not
use thebe (launch buttons open Binder, Colab or JupyterHub instead), so this
extension drops its scripts and its config block from the HTML.
"""

import re

_THEBE_CONFIG = re.compile(r'<script type="text/x-thebe-config">.*?</script>\s*', re.DOTALL)


def _is_thebe_script(script) -> bool:
    body = getattr(script, "attributes", {}).get("body", "") or ""
    filename = getattr(script, "filename", "") or str(script)
    return "THEBE_JS_URL" in body or "sphinx-thebe" in filename or "unpkg.com/thebe" in filename


def _drop_thebe(app, pagename, templatename, context, doctree):
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _is_thebe_script(s)]
    if "css_files" in context:
        context["css_files"] = [c for c in context["css_files"] if "sphinx-thebe" not in str(c)]
    if "body" in context:
        context["body"] = _THEBE_CONFIG.sub("", context["body"])


def setup(app):
    # Priority 900: run after sphinx-thebe and the book theme have filled the page context.
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
