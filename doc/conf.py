"""Sphinx configuration of the sklearn-arb documentation."""

import re

import sklearn_arb

project = "sklearn-arb"
author = "sklearn-arb developers"
copyright = "2026, sklearn-arb developers"
release = sklearn_arb.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

# API pages are generated from the docstrings into doc/generated (gitignored).
autosummary_generate = True
autodoc_typehints = "none"
# autosummary lists the methods; numpydoc would list them a second time.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# The build runs offline: no intersphinx inventories are fetched.
intersphinx_mapping: dict = {}

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "alabaster"
html_theme_options = {
    "description": "Attention Regularization by the Bootstrap for ViTs",
    "page_width": "1100px",
}
html_static_path: list[str] = []

# Docstrings are written for the terminal first. Two habits there mean something else
# in reST: fitted attributes end in "_" (scikit-learn's convention), which reST reads
# as a link (``n_tokens_``), and |z| for an absolute value, which reST reads as a
# substitution. Escape both in prose once numpydoc has rendered the docstring, leaving
# code, bold names and literals alone.
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w*`\\])([A-Za-z]\w*?[A-Za-z0-9])_(?![\w`*])")

_ABSOLUTE_VALUE = re.compile(r"(?<![\\`])\|([^|`\s][^|`]*?)\|")


def _escape_terminal_habits(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...", "..")) or "``" in line:
            continue
        line = _TRAILING_UNDERSCORE.sub(r"\1\\_", line)
        lines[i] = _ABSOLUTE_VALUE.sub(r"\\|\1\\|", line)


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    # scikit-learn generates set_<method>_request on each subclass of a Pipeline;
    # their docstrings cite its glossary, which an offline build cannot resolve.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    # After numpydoc (priority 500) has turned sections into reST.
    app.connect("autodoc-process-docstring", _escape_terminal_habits, priority=900)
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
