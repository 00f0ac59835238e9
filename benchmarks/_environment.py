"""The machine a benchmark ran on: CPU, SIMD level, BLAS and library versions.

Every script in ``benchmarks/`` prints :func:`header_lines` before its figures
and stores :func:`describe` in any results file it writes, because the figures
depend on the CPU much more than on the code: numpy's float64 ``arccos`` (one
per Gram entry per layer for ReLU) has a vectorised kernel only for AVX-512
(numpy's ``X86_V4`` / ``AVX512_SKX`` dispatch target) and otherwise falls back
to a scalar loop that is more than ten times slower an element.

Only public or long-stable interfaces are used, each behind a fallback:

* the SIMD targets numpy was built for and found on this CPU come from
  ``numpy._core._multiarray_umath`` (``numpy.core`` before numpy 2), the same
  source ``numpy.show_runtime()`` prints; if that is unavailable, from the CPU
  flags in ``/proc/cpuinfo``;
* which target ``arccos`` actually dispatches to comes from
  ``numpy.lib.introspect.opt_func_info`` (public since numpy 2.0);
* BLAS from ``threadpoolctl`` (a scikit-learn dependency).

Run ``python benchmarks/_environment.py`` to print the header alone.
"""

import os
import platform
import statistics
import time
from importlib import metadata

import numpy as np

# numpy's dispatch targets that mean AVX-512, by numpy version: the x86-64
# microarchitecture level X86_V4 (numpy >= 2.4) or the older feature names.
_AVX512_TARGETS = ("X86_V4", "AVX512_SKX", "AVX512F", "AVX512_ICL", "AVX512_SPR",
                   "AVX512_CLX", "AVX512_CNL", "AVX512_KNL", "AVX512_KNM")
_AVX2_TARGETS = ("X86_V3", "AVX2")
_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl",
              "scikit-ntk")


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("model name", "Model name", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def numpy_simd():
    """numpy's SIMD dispatch: ``{"baseline", "found", "not_found"}`` target lists.

    ``found`` are the targets numpy was compiled for that this CPU supports,
    as in the ``simd_extensions`` entry of ``numpy.show_runtime()``.  Empty
    dict if numpy does not expose them.
    """
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            umath = __import__(module, fromlist=["__cpu_features__"])
            features = umath.__cpu_features__
            baseline = list(umath.__cpu_baseline__)
            dispatch = list(umath.__cpu_dispatch__)
        except (ImportError, AttributeError):
            continue
        return {"baseline": baseline,
                "found": [t for t in dispatch if features.get(t)],
                "not_found": [t for t in dispatch if not features.get(t)]}
    return {}


def arccos_target():
    """The SIMD target of numpy's float64 ``arccos`` here, e.g. ``baseline(X86_V2)``."""
    try:
        from numpy.lib.introspect import opt_func_info

        info = opt_func_info(func_name="^arccos$", signature="^float64")
        return info["arccos"]["dd"]["current"]
    except Exception:  # numpy < 2.0, or a layout this code does not know
        return "unknown"


def simd_level(simd=None):
    """``"AVX-512"``, ``"AVX2"`` or ``"below AVX2"`` for numpy on this CPU."""
    simd = numpy_simd() if simd is None else simd
    if simd:
        available = set(simd["baseline"]) | set(simd["found"])
    else:  # fall back on the kernel's CPU flags
        flags = _cpu_flags()
        available = ({"AVX512F"} if "avx512f" in flags else set()) | (
            {"AVX2"} if "avx2" in flags else set())
        if not flags:
            return "unknown"
    if available & set(_AVX512_TARGETS):
        return "AVX-512"
    if available & set(_AVX2_TARGETS):
        return "AVX2"
    return "below AVX2"


def blas():
    """BLAS and OpenMP libraries loaded in this process (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{key: info.get(key) for key in
             ("internal_api", "version", "architecture", "num_threads", "user_api")}
            for info in threadpool_info()]


def versions():
    """Python and the installed versions of the libraries the benchmarks use."""
    result = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            result[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            result[name] = None
    try:  # the package may be imported from a checkout rather than installed
        import sklearn_ntk

        result["sklearn_ntk"] = sklearn_ntk.__version__
    except ImportError:
        result["sklearn_ntk"] = None
    return result


def arccos_ns_per_element(n=1 << 20, repeats=7):
    """Median wall time of ``np.arccos`` on n float64 values in (-1, 1), ns each."""
    x = np.random.default_rng(0).uniform(-0.999, 0.999, n)
    out = np.empty_like(x)
    np.arccos(x, out=out)  # warm-up: page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.arccos(x, out=out)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / n * 1e9


def describe(measure_arccos=True):
    """Everything above as one JSON-serialisable dict."""
    simd = numpy_simd()
    result = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()}",
        "simd_level": simd_level(simd),
        "numpy_simd": simd,
        "arccos_target": arccos_target(),
        "blas": blas(),
        "versions": versions(),
    }
    if measure_arccos:
        result["arccos_ns_per_element"] = round(arccos_ns_per_element(), 2)
    try:
        result["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return result


def short(environment):
    """One line, to print next to a figure: CPU, SIMD level, arccos cost."""
    text = f"{environment['cpu']}, {environment['simd_level']}"
    if "arccos_ns_per_element" in environment:
        text += (f", arccos {environment['arccos_ns_per_element']:.1f} ns/element "
                 f"({environment['arccos_target']})")
    return text


def header_lines(environment):
    """The header every benchmark prints before its figures."""
    simd = environment["numpy_simd"]
    blas_text = ", ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']}, "
        f"{b['num_threads']} threads)" for b in environment["blas"]
        if b["user_api"] == "blas") or "unknown"
    installed = ", ".join(f"{name} {version}" for name, version in
                          environment["versions"].items() if version is not None)
    lines = [
        f"CPU: {environment['cpu']} ({environment['cpus']} logical CPUs, "
        f"{environment['machine']})",
        f"SIMD: {environment['simd_level']}"
        + (f" (numpy baseline {' '.join(simd['baseline'])}; dispatches to "
           f"{' '.join(simd['found']) or 'nothing more'}; not on this CPU: "
           f"{' '.join(simd['not_found']) or 'none'})" if simd else ""),
        f"float64 arccos dispatch: {environment['arccos_target']}"
        + (f", {environment['arccos_ns_per_element']:.1f} ns/element"
           if "arccos_ns_per_element" in environment else ""),
        f"BLAS: {blas_text}",
        f"Software: {installed}",
    ]
    if "load_average" in environment:
        lines.append("Load average (1, 5, 15 min): "
                     + ", ".join(f"{v:.2f}" for v in environment["load_average"]))
    return lines


def print_header(environment=None):
    """Print :func:`header_lines` and return the environment dict."""
    environment = describe() if environment is None else environment
    for line in header_lines(environment):
        print(line)
    print(flush=True)
    return environment


if __name__ == "__main__":
    print_header()
