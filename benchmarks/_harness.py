"""What every benchmark shares: timing, peak memory, the machine, results files.

Every script in ``benchmarks/`` imports this module (it sits next to them)
and uses it for:

Timing
    :func:`interleaved` runs several callables in turn (A B C A B C ...) for a
    number of rounds, so that load from other processes on a shared machine
    hits all of them alike, and returns a :class:`Timing` (wall and CPU seconds
    of every run, their medians) for each.  One callable is the special case of
    plain repeats.  Scripts quote medians, never means.
Peak memory
    :func:`peak_rss_bytes` (the process's peak resident set size, in bytes on
    every platform), :func:`rss_bytes`, :func:`available_memory_bytes`, and
    :func:`run_child` to measure in a fresh process.
The machine
    :func:`describe` (CPU, the SIMD level numpy dispatches to, the cost of
    numpy's float64 ``arccos``, BLAS, versions), :func:`header_lines`,
    :func:`print_header` and :func:`short`.  The figures depend on the CPU much
    more than on the code: numpy's float64 ``arccos`` (one per Gram entry per
    layer for ReLU) has a vectorised kernel only for AVX-512 (numpy's
    ``X86_V4`` / ``AVX512_SKX`` dispatch target) and otherwise falls back to a
    scalar loop that is more than ten times slower an element.
Results files
    Every script writes ``benchmarks/results/<name>.md`` and ``.json``
    (:func:`write_results`; ``--output STEM`` elsewhere,
    :func:`add_output_argument`): markdown tables (:func:`markdown_table`,
    :func:`rst_table` for the docs) under the machine's description and the
    exact command line (:func:`run_metadata`, :func:`environment_markdown`).
    Scripts with several sections store each with :func:`write_section`,
    which replaces that section and keeps the others.  :func:`write_markdown`
    keeps a file's sections from the heading ``## Recorded earlier`` on:
    figures measured before on another machine, with the command that
    produced them and that machine's SIMD level.

Importing this module also puts the repository root on ``sys.path`` (after
the script's own folder), so that a script run from a checkout measures that
checkout's ``sklearn_ntk`` whether or not a package is installed.

Only public or long-stable interfaces are used, each behind a fallback:

* the SIMD targets numpy was built for and found on this CPU come from
  ``numpy._core._multiarray_umath`` (``numpy.core`` before numpy 2), the same
  source ``numpy.show_runtime()`` prints; if that is unavailable, from the CPU
  flags in ``/proc/cpuinfo``;
* which target ``arccos`` actually dispatches to comes from
  ``numpy.lib.introspect.opt_func_info`` (public since numpy 2.0);
* BLAS from ``threadpoolctl`` (a scikit-learn dependency);
* memory from ``/proc/self/status`` (Linux), else ``resource.getrusage``,
  whose ``ru_maxrss`` is in KiB on Linux and in bytes on macOS.

Run ``python benchmarks/_harness.py`` to print the header alone.
"""

import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: Where every script writes its results by default.
RESULTS = HERE / "results"
#: The heading from which a results file's sections are kept as they are.
EARLIER = "## Recorded earlier"

if (REPO / "sklearn_ntk").is_dir() and str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

# numpy's dispatch targets that mean AVX-512, by numpy version: the x86-64
# microarchitecture level X86_V4 (numpy >= 2.4) or the older feature names.
_AVX512_TARGETS = ("X86_V4", "AVX512_SKX", "AVX512F", "AVX512_ICL", "AVX512_SPR",
                   "AVX512_CLX", "AVX512_CNL", "AVX512_KNL", "AVX512_KNM")
_AVX2_TARGETS = ("X86_V3", "AVX2")
_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl",
              "scikit-ntk")


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall-clock and CPU seconds of every run of one callable."""

    wall: list = field(default_factory=list)  # seconds, one per run
    cpu: list = field(default_factory=list)  # CPU seconds of the process

    @property
    def median(self):
        """Median wall time: the headline figure."""
        return statistics.median(self.wall)

    @property
    def cpu_median(self):
        """Median CPU time (all the process's threads), less sensitive to load."""
        return statistics.median(self.cpu)


def time_call(function, *args):
    """Run ``function(*args)`` once: ``(wall seconds, CPU seconds, result)``.

    Wall time is ``time.perf_counter``; CPU time is ``time.process_time``,
    summed over the process's threads.  A pending garbage collection runs
    first, so that it does not land inside the timed call.
    """
    gc.collect()
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = function(*args)
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu_start, result


def interleaved(functions, repeats, *, budget=None, argument=None, keep=None,
                after_round=None):
    """Time every callable of ``functions`` ``repeats`` times, in turn.

    Parameters
    ----------
    functions : dict
        Key -> callable.  Round after round, each runs once in the dict's
        order (A B C A B C ...).
    repeats : int
        Number of rounds.
    budget : float, default=None
        Seconds: a callable stops repeating once one more run would likely
        take its total past this (total + median > budget).  It always runs
        at least once.
    argument : callable, default=None
        ``argument(key)`` makes, untimed, the argument of each run (e.g. a
        fresh copy for a routine that overwrites its input); None calls the
        functions without arguments.
    keep : collection, default=None
        Keys whose last result is returned (None: all).  A kept result is
        released before the next run of the same callable, others at once,
        so that large outputs do not pile up.
    after_round : callable, default=None
        Called with no argument after every round.

    Returns
    -------
    timings : dict
        Key -> :class:`Timing`.
    results : dict
        Key -> the last result, for the kept keys.
    """
    timings = {key: Timing() for key in functions}
    results = {}
    for _ in range(repeats):
        for key, function in functions.items():
            timing = timings[key]
            if budget is not None and timing.wall and \
                    sum(timing.wall) + timing.median > budget:
                continue
            results.pop(key, None)
            args = () if argument is None else (argument(key),)
            wall, cpu, result = time_call(function, *args)
            timing.wall.append(wall)
            timing.cpu.append(cpu)
            if keep is None or key in keep:
                results[key] = result
            del result
        if after_round is not None:
            after_round()
    return timings, results


def arccos_ns_per_element(n=1 << 20, repeats=7):
    """Median wall time of ``np.arccos`` on n float64 values in (-1, 1), ns each."""
    x = np.random.default_rng(0).uniform(-0.999, 0.999, n)
    out = np.empty_like(x)
    np.arccos(x, out=out)  # warm-up: page faults
    timings, _ = interleaved({"arccos": lambda: np.arccos(x, out=out)}, repeats,
                             keep=())
    return timings["arccos"].median / n * 1e9


# --------------------------------------------------------------------------- memory
def _proc_field(path, keys):
    """The text after the first ``key:`` of a ``/proc`` file, or None."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(keys) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _proc_bytes(path, key):
    value = _proc_field(path, key + ":")  # in KiB: "12345 kB"
    return None if value is None else int(value.split()[0]) * 1024


def peak_rss_bytes():
    """Peak resident set size of this process so far, in bytes.

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux), else
    ``ru_maxrss``, which is in KiB on Linux and in bytes on macOS.
    """
    peak = _proc_bytes("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def rss_bytes():
    """Current resident set size in bytes (``VmRSS``), or None without /proc."""
    return _proc_bytes("/proc/self/status", "VmRSS")


def available_memory_bytes():
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or None if unknown."""
    return _proc_bytes("/proc/meminfo", "MemAvailable")


def run_child(script, args):
    """Run ``python script *args`` in a fresh process; return its JSON report.

    The child prints one JSON object as the last line of its output.  The
    returned dict adds ``"wall"``, the seconds the child took, and holds an
    ``"error"`` instead of the report if the child failed.
    """
    command = [sys.executable, str(script)] + [str(a) for a in args]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    report = {"wall": time.perf_counter() - start}
    if completed.returncode != 0:
        report["error"] = (f"exit code {completed.returncode}: "
                           + completed.stderr.strip()[-300:])
    else:
        report.update(json.loads(completed.stdout.strip().splitlines()[-1]))
    return report


# --------------------------------------------------------------------------- machine
def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    return (_proc_field("/proc/cpuinfo", ("model name", "Model name", "cpu model"))
            or platform.processor() or platform.machine() or "unknown")


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
        flags = set((_proc_field("/proc/cpuinfo", "flags") or "").split())
        if not flags:
            return "unknown"
        available = ({"AVX512F"} if "avx512f" in flags else set()) | (
            {"AVX2"} if "avx2" in flags else set())
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
    """The machine's description, one fact a line (what is recorded of it)."""
    env = environment
    cpu = env["cpu"] + (f"; {env['cpus']} logical CPUs, {env['machine']}"
                        if "cpus" in env else "")
    simd = env.get("numpy_simd")
    lines = [f"CPU: {cpu}", f"SIMD: {env['simd_level']}" + (
        f" (numpy baseline {' '.join(simd['baseline'])}; dispatches to "
        f"{' '.join(simd['found']) or 'nothing more'}; not on this CPU: "
        f"{' '.join(simd['not_found']) or 'none'})" if simd else "")]
    if "arccos_target" in env:
        lines.append(f"float64 arccos dispatch: {env['arccos_target']}" + (
            f", {env['arccos_ns_per_element']:.1f} ns/element"
            if "arccos_ns_per_element" in env else ""))
    if "blas" in env:
        lines.append("BLAS: " + (", ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']}, "
            f"{b['num_threads']} threads)" for b in env["blas"]
            if b["user_api"] == "blas") or "unknown"))
    lines.append("Software: " + ", ".join(
        f"{name} {version}" for name, version in env.get("versions", {}).items()
        if version is not None))
    if "load_average" in env:
        lines.append("Load average (1, 5, 15 min): "
                     + ", ".join(f"{v:.2f}" for v in env["load_average"]))
    return lines


def print_header(environment=None):
    """Print :func:`header_lines` and return the environment dict."""
    environment = describe() if environment is None else environment
    for line in header_lines(environment):
        print(line)
    print(flush=True)
    return environment


# --------------------------------------------------------------------------- results
def command_line(argv=None):
    """The command that ran this script, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", str(script)] + args)


def run_metadata(environment, argv=None, **extra):
    """The date, the exact command and the machine of a run, as one dict."""
    return {"date": datetime.date.today().isoformat(), "command": command_line(argv),
            "environment": environment, **extra}


def environment_markdown(meta):
    """Markdown lines: when and by which command a result was made, and where.

    ``meta`` is a :func:`run_metadata` dict.  An environment with
    ``"recorded_earlier": True`` (results kept from a run on another machine,
    of which less was recorded) is labelled so.
    """
    environment = meta["environment"]
    when = "Recorded earlier" if environment.get("recorded_earlier") else "Run"
    lines = [f"{when} on {environment['cpu']}, {meta['date']}, by "
             f"`{meta['command']}`:", ""]
    lines += [f"- {line}" for line in header_lines(environment)]
    return lines + [""]


def markdown_table(header, rows, align=None):
    """A GitHub-flavoured markdown table."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = [markdown_row(header), "|" + "|".join(marks[a] for a in align) + "|"]
    lines += [markdown_row(row) for row in rows]
    return "\n".join(lines)


def markdown_row(cells):
    """One row of a markdown table, e.g. to print a table row by row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def rst_table(header, rows, widths=None):
    """A reStructuredText ``list-table`` directive."""
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    for row in [header] + list(rows):
        cells = [str(cell) if str(cell) else "\\ " for cell in row]
        lines.append("   * - " + cells[0])
        lines += ["     - " + cell for cell in cells[1:]]
    return "\n".join(lines)


def write_markdown(path, text):
    """Write ``text`` to ``path``, keeping the file's "Recorded earlier" sections.

    Everything from the existing file's first line that starts with
    :data:`EARLIER` on is appended to ``text`` unchanged.
    """
    path = Path(path)
    kept = ""
    if path.is_file():
        old = path.read_text()
        at = old.find("\n" + EARLIER)
        kept = old[at + 1:] if at >= 0 else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n" + ("\n" + kept if kept else ""))


def add_output_argument(parser, name):
    """The ``--output STEM`` option: where the results go (default results/NAME)."""
    parser.add_argument("--output", default=str(RESULTS / name),
                        help=f"results stem: STEM.md and STEM.json (default "
                             f"benchmarks/results/{name})")


def write_results(stem, markdown, record, rst=None):
    """Write ``stem.md`` (:func:`write_markdown`), ``stem.json`` and ``stem.rst``."""
    stem = Path(stem)
    write_markdown(stem.with_suffix(".md"), markdown)
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    if rst is not None:
        stem.with_suffix(".rst").write_text(rst)
    print(f"Wrote {stem.with_suffix('.md')} (.json{', .rst' if rst else ''})")


def write_section(stem, title, section, heading, markdown, data, meta, order=()):
    """Store one section of a results file and re-render the file.

    ``stem.json`` keeps every section's heading, markdown, data and
    :func:`run_metadata`; this section replaces its previous run and the
    others stay.  ``stem.md`` is rendered from them in ``order`` (then the
    rest), under ``title``, before the kept "Recorded earlier" sections.
    """
    stem = Path(stem)
    json_path = stem.with_suffix(".json")
    stored = json.loads(json_path.read_text()) if json_path.is_file() else {}
    sections = stored.get("sections", {})
    sections[section] = {"heading": heading, "meta": meta, "markdown": markdown,
                         "data": data}
    ranked = sorted(sections, key=lambda s: (list(order).index(s) if s in order
                                             else len(order)))
    script = shlex.split(meta["command"])[1]
    lines = [f"# {title}", "", SECTIONS_INTRO.format(script=script), ""]
    for name in ranked:
        entry = sections[name]
        lines += [f"## {entry['heading']}", ""] + environment_markdown(entry["meta"])
        lines += [entry["markdown"], ""]
    write_results(stem, "\n".join(lines), {"sections": {n: sections[n] for n in ranked}})


#: The opening paragraph of a results file made of sections.
SECTIONS_INTRO = (
    "Written by `python {script}` (its docstring says what it measures): each "
    "section below comes from the run named under its heading, with the "
    "machine it ran on; a run replaces the sections it measures and keeps the "
    "others. The sections from \"Recorded earlier\" on are kept as they are: "
    "figures measured before on other machines.")


if __name__ == "__main__":
    print_header()
