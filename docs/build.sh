#!/usr/bin/env bash
# Build the HTML documentation the way CI does, from the repository root:
#
#     bash docs/build.sh
#
# * warnings are errors (-W --keep-going: every warning is reported, then the
#   build fails);
# * nitpicky mode (-n) checks every internal cross-reference (objects of
#   sklearn_ntk, pages, labels); references into other projects cannot be
#   resolved without network access (no intersphinx inventories) and are
#   ignored, see nitpick_ignore_regex in conf.py;
# * `-b linkcheck` (external URLs) needs network access and is not run;
# * the gallery examples run in their reduced size (SKLEARN_NTK_EXAMPLES_FULL
#   unset); SKLEARN_NTK_DOCS_PLOT=False skips running them (fast rebuilds);
# * every public object must have an Examples section (docs/check_docstrings.py).
#
# Output: docs/_build/html/index.html, which renders its formulas without
# network access (MathJax is copied into the site).  Needs the `docs` extra:
#     pip install -e ".[docs]"
set -euo pipefail
DOCS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
# Document the checkout this script is in, installed or not.
export PYTHONPATH="$(dirname "$DOCS")${PYTHONPATH:+:$PYTHONPATH}"
unset SKLEARN_NTK_EXAMPLES_FULL
status=0
"$PYTHON" "$DOCS/check_docstrings.py" || status=1
rm -rf "$DOCS/generated" "$DOCS/auto_examples"
"$PYTHON" -m sphinx -b html -W --keep-going -n -q "$DOCS" "$DOCS/_build/html" "$@" || status=1
if [ "$status" -eq 0 ]; then
    echo "Built $DOCS/_build/html/index.html"
else
    echo "Documentation build FAILED (see the messages above)" >&2
fi
exit "$status"
