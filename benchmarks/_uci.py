"""Helpers of ``bench_uci.py`` (and ``bench_regression.py``): data loading, scores.

The data layout is the one of Fernández-Delgado et al. (JMLR 2014) as used by
Arora et al. (ICLR 2020): a folder per dataset holding its metadata file
``<name>.txt`` (``n_patrons1``, ``n_entradas``, ``fich1``, ...), the data file
(an index column, the features, the label) and the index files
``conxuntos.dat`` (selection split) and ``conxuntos_kfold.dat`` (four
train/test pairs).  The README's Benchmarks section says where the data
comes from.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

#: Arora et al. keep the datasets with at most this many samples.
MAX_SAMPLES = 5000


@dataclass
class Dataset:
    """One UCI dataset with its selection split and its four evaluation folds."""

    name: str
    X: np.ndarray
    y: np.ndarray
    train: np.ndarray  # conxuntos.dat, line 1: used to choose hyperparameters
    validation: np.ndarray  # conxuntos.dat, line 2
    folds: list = field(default_factory=list)  # conxuntos_kfold.dat: (train, test)

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def n_features(self):
        return self.X.shape[1]

    @property
    def n_classes(self):
        return np.unique(self.y).size


def _metadata(folder):
    meta = {}
    for line in (folder / f"{folder.name}.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].endswith("="):
            meta[parts[0][:-1]] = parts[1]
    return meta


def _index_lines(path):
    return [np.array(line.split(), dtype=np.intp)
            for line in path.read_text().splitlines() if line.strip()]


def list_datasets(root):
    """Names of the datasets of Arora et al.'s testbed found under ``root``.

    A dataset qualifies when it has its metadata file, at most
    :data:`MAX_SAMPLES` samples and no separate test file (``n_patrons2``).
    """
    root = Path(root)
    names = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (folder / f"{folder.name}.txt").is_file():
            continue
        meta = _metadata(folder)
        if "n_patrons2" in meta or int(meta["n_patrons1"]) > MAX_SAMPLES:
            continue
        names.append(folder.name)
    return names


def load_dataset(root, name):
    """Load ``root/name``: features, labels, selection split and k-fold pairs."""
    folder = Path(root) / name
    meta = _metadata(folder)
    data = np.loadtxt(folder / meta["fich1"], skiprows=1, ndmin=2)
    X = np.ascontiguousarray(data[:, 1:-1], dtype=np.float64)
    y = data[:, -1].astype(np.intp)
    train, validation = _index_lines(folder / "conxuntos.dat")[:2]
    pairs = _index_lines(folder / "conxuntos_kfold.dat")
    folds = [(pairs[2 * i], pairs[2 * i + 1]) for i in range(len(pairs) // 2)]
    if X.shape[1] != int(meta["n_entradas"]) or X.shape[0] != int(meta["n_patrons1"]):
        raise ValueError(f"{name}: data file does not match its metadata.")
    return Dataset(name, X, y, train, validation, folds)


# --------------------------------------------------------------------------- scores
def friedman_ranks(acc):
    """Mean rank of each method (columns) over datasets (rows); 1 is best.

    Ties share the average rank, as in Fernández-Delgado et al.
    """
    ranks = np.vstack([rankdata(-row, method="average") for row in acc])
    return ranks.mean(axis=0)


def summary_scores(acc):
    """Per-method scores of an accuracy matrix (datasets x methods).

    Returns a dict of arrays: mean and std accuracy, Friedman rank, P90 and P95
    (share of datasets where the method reaches 90 % / 95 % of the best
    accuracy of the compared methods on that dataset) and PMA (mean percentage
    of that maximum accuracy).
    """
    acc = np.asarray(acc, dtype=float)
    best = acc.max(axis=1, keepdims=True)
    ratio = np.divide(acc, best, out=np.ones_like(acc), where=best > 0)
    return {
        "mean": acc.mean(axis=0),
        "std": acc.std(axis=0),
        "rank": friedman_ranks(acc),
        "p90": (ratio >= 0.90).mean(axis=0),
        "p95": (ratio >= 0.95).mean(axis=0),
        "pma": ratio.mean(axis=0),
    }
