"""Sphinx configuration of the sklearn_ntk documentation.

Build with ``docs/build.sh`` (warnings are errors, internal references are
checked nitpickily, gallery examples run in their reduced size).
"""

import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import sklearn_ntk  # noqa: E402

project = "sklearn_ntk"
author = "the sklearn_ntk developers"
copyright = "2026, the sklearn_ntk developers"
release = version = sklearn_ntk.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.examples"]
root_doc = "index"
default_role = "literal"

html_theme = "alabaster"
html_static_path = []
html_title = f"sklearn_ntk {release}"
html_theme_options = {"description": "Infinitely wide neural networks for scikit-learn",
                      "fixed_sidebar": True}

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"member-order": "groupwise"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- Reference checking --------------------------------------------------------
# Nitpicky mode turns every unresolved cross-reference into a warning (an
# error with -W).  Without network access there are no intersphinx
# inventories, so references into other projects cannot resolve: they are
# ignored, and only references to sklearn_ntk's own objects, pages and labels
# are checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(sklearn|numpy|np|scipy|joblib|matplotlib|dask|distributed"
               r"|threadpoolctl)(\..*)?"),
    (r"py:.*", r"(array-like|ndarray|callable|optional|default|int|float|bool|str"
               r"|object|tuple|list|dict|None|pair|of|shape|floats|or|and)"),
    # Numpydoc parameter types such as "int, default=None" and shapes.
    (r"py:.*", r".*(default=|shape|\(|\)|\{|\}|'|\").*"),
    # Glossary terms of scikit-learn's documentation (we have no glossary).
    (r"std:term", r".*"),
]

# -- Gallery -------------------------------------------------------------------
# Examples run in their reduced size (SKLEARN_NTK_EXAMPLES_FULL unset) and
# save their PNG files to a scratch directory; the gallery scrapes the
# matplotlib figures themselves.
os.environ.pop("SKLEARN_NTK_EXAMPLES_FULL", None)
os.environ.setdefault("SKLEARN_NTK_EXAMPLES_OUTPUT",
                      tempfile.mkdtemp(prefix="sklearn_ntk_gallery_"))
os.environ.setdefault("MPLBACKEND", "Agg")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|/_",
    "plot_gallery": os.environ.get("SKLEARN_NTK_DOCS_PLOT", "True"),
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    "capture_repr": ("_repr_html_", "__repr__"),
}


# -- Docstring hygiene -----------------------------------------------------------
# Fitted attributes such as ``n_features_in_`` written without backticks in a
# type ("ndarray of shape (n_features_in_,)") or in prose are reST reference
# syntax ("name_").  Render them as literals instead of failing the build;
# runs before numpydoc (priority 400 < 500).
import re  # noqa: E402

_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w*|])([A-Za-z]\w*_)(?=[\s,.;:)\]]|$)")
_FIELD = re.compile(r"^(\s*\*{0,2}\w+\s+:\s)(.*)$")


def _literal_fitted_attributes(app, what, name, obj, options, lines):
    in_code = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith((">>>", "...")):
            continue
        if stripped.startswith(".. code") or stripped.endswith("::"):
            in_code = True
            continue
        if in_code and stripped and not line.startswith((" ", "\t")):
            in_code = False
        if in_code:
            continue
        field = _FIELD.match(line)
        if field:
            lines[i] = field.group(1) + _TRAILING_UNDERSCORE.sub(r"``\1``", field.group(2))
        else:
            lines[i] = _TRAILING_UNDERSCORE.sub(r"``\1``", line)


def setup(app):
    app.connect("autodoc-process-docstring", _literal_fitted_attributes, priority=400)
