"""Check that every public object has a runnable Examples section.

The public objects are those of ``sklearn_ntk.__all__`` and
``sklearn_ntk.finite.__all__``; an Examples section counts when it holds at
least one ``>>>`` line (pytest runs them as doctests, see setup.cfg).
Exits with status 1 and lists the objects without one.
"""

import inspect
import sys

from numpydoc.docscrape import NumpyDocString

import sklearn_ntk
import sklearn_ntk.finite


def public_objects():
    for module in (sklearn_ntk, sklearn_ntk.finite):
        for name in module.__all__:
            yield f"{module.__name__}.{name}", getattr(module, name)


def main():
    missing = []
    for name, obj in public_objects():
        examples = NumpyDocString(inspect.getdoc(obj) or "")["Examples"]
        if not any(line.lstrip().startswith(">>>") for line in examples):
            missing.append(name)
    for name in missing:
        print(f"{name}: no Examples section with a runnable >>> line", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
