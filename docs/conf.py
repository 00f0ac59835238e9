"""Sphinx configuration of the sklearn_ntk documentation.

Build with ``docs/build.sh`` (warnings are errors, internal references are
checked nitpickily, gallery examples run in their reduced size).  The site
uses scikit-learn's theme (pydata-sphinx-theme) and carries its own copy of
MathJax, so that it renders its formulas without network access.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))  # gallery_config, benchmark_summary

import sklearn_ntk  # noqa: E402
from benchmark_summary import substitutions  # noqa: E402

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
    # The benchmark results files are Markdown (benchmarks/results/*.md).
    "myst_parser",
    # MathJax served from the built site itself (not a CDN), so that a site
    # built and opened without network access renders its formulas.
    "sphinx-mathjax-offline",
]

templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# The figures the benchmarks page quotes, computed from its results file.
rst_epilog = substitutions(ROOT / "benchmarks" / "results" / "uci.json")
exclude_patterns = ["_build", "generated/*.examples", "sg_execution_times.rst"]
root_doc = "index"
default_role = "literal"

html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["sklearn_ntk.css"]
html_title = f"sklearn_ntk {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    # The API pages have the list of objects on the left and a table of
    # methods at the top: no right-hand column, so that their signatures and
    # tables get the width.
    "secondary_sidebar_items": {
        "api": [],
        "generated/*": [],
        "index": ["page-toc"],
        "getting_started": ["page-toc"],
        "user_guide": ["page-toc"],
        "benchmarks": ["page-toc"],
        "architecture": ["page-toc"],
        "benchmark_results/*": ["page-toc"],
        "auto_examples/**": ["page-toc"],
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The pages of the API objects have a sidebar of their own (the list of
# objects); the other pages use the whole width for their figures, code and
# tables.
html_sidebars = {
    "index": [],
    "getting_started": [],
    "user_guide": [],
    "benchmarks": [],
    "architecture": [],
    "auto_examples/**": [],
    "benchmark_results/*": [],
    "api": [],
}
html_show_sourcelink = False

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"member-order": "groupwise"}
# A "Methods" table at the top of every class page, linking to the methods
# documented below it (autodoc's :members:).  The kernels also list what
# they inherit from scikit-learn's Kernel (theta, bounds, hyperparameters,
# clone_with_theta...), which their Notes refer to; the estimators list
# their own methods (fit, predict...), as scikit-learn's pages do.
numpydoc_show_class_members = True
numpydoc_show_inherited_class_members = {
    "sklearn_ntk.NTK": True,
    "sklearn_ntk.NNGP": True,
    "sklearn_ntk.NTKRegressor": False,
    "sklearn_ntk.NNGPRegressor": False,
    "sklearn_ntk.NTKClassifier": False,
    "sklearn_ntk.NTKSampler": False,
    "sklearn_ntk.NNGPSampler": False,
    "sklearn_ntk.SingularKernelWarning": False,
    "sklearn_ntk.finite.Network": False,
    "sklearn_ntk.finite.FiniteNetworkRegressor": False,
}
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
# The examples run in their reduced size (SKLEARN_NTK_EXAMPLES_FULL unset);
# sphinx-gallery's matplotlib scraper captures their figures.  Two sections:
# examples/ ("Using sklearn_ntk") and examples/jacot2018/ ("Reproducing
# Jacot et al. (2018)"), ordered by gallery_config.EXAMPLE_ORDER.
os.environ.pop("SKLEARN_NTK_EXAMPLES_FULL", None)

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
    # Every figure also at twice its resolution, for high-density screens.
    "image_srcset": ["2x"],
    "within_subsection_order": "gallery_config.ExampleOrder",
    "capture_repr": ("_repr_html_", "__repr__"),
    # API pages link to the examples that use each object ("Gallery
    # examples" at the end of the page, see _templates/autosummary).
    "doc_module": ("sklearn_ntk",),
    "backreferences_dir": "generated/backreferences",
    "show_memory": False,
    # No "computation times" pages: they are for the gallery's maintainers,
    # and their tables load scripts from CDNs (the site must work offline).
    "write_computation_times": False,
}

# -- Docstring hygiene -----------------------------------------------------------
# Fitted attributes such as ``n_features_in_`` written without backticks in a
# type ("ndarray of shape (n_features_in_,)") or in prose are reST reference
# syntax ("name_").  Render them as literals instead of failing the build;
# runs before numpydoc (priority 400 < 500).
import re  # noqa: E402

_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w*|])([A-Za-z]\w*_)(?=[\s,.;:)\]]|$)")
_FIELD = re.compile(r"^(\s*\*{0,2}\w+\s+:\s)(.*)$")


# Text already marked up (``literal``, `role`, :math:`...`) is left alone:
# wrapping the names inside it again would show raw markup.
_MARKED_UP = re.compile(r"(``.+?``|`[^`]+`)")


def _literal_outside_markup(text):
    parts = _MARKED_UP.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = _TRAILING_UNDERSCORE.sub(r"``\1``", parts[i])
    return "".join(parts)


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
            lines[i] = field.group(1) + _literal_outside_markup(field.group(2))
        else:
            lines[i] = _literal_outside_markup(line)


def setup(app):
    app.connect("autodoc-process-docstring", _literal_fitted_attributes, priority=400)
