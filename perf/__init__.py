"""Benchmark harness: fused oneDNN RNN primitives against unfused versions, with proof of what ran.

Modules, one job each:

* :mod:`perf.flops`    FLOP formulas (full and DeepBench's recurrent-only count)
* :mod:`perf.runner`   warm-up, repeats, median and spread, pinned threads
* :mod:`perf.peak`     the GEMM peak measured in the same run
* :mod:`perf.impls`    the named implementations, all built the same way
* :mod:`perf.premul`   the premul/compiled forwards (input projection hoisted)
* :mod:`perf.openvino_impl` the OpenVINO implementation (f32, bf16, NNCF int8)
* :mod:`perf.verbose`  ONEDNN_VERBOSE parsing and the subprocess rerun
  (:mod:`perf.verbose_probe` is the subprocess)
* :mod:`perf.suites`   the shape suites (quick, deepbench, a user YAML file)
* :mod:`perf.harness`  runs a suite over implementations, modes, dtypes and threads
* :mod:`perf.instances` K pinned processes for throughput runs
* :mod:`perf.report`   results.json, report.md and the PNG charts
* :mod:`perf.compare`  compares two results.json files and flags regressions

Importing this package imports no torch; the modules do so where they need it.
"""

__all__ = [
    "compare",
    "flops",
    "harness",
    "impls",
    "instances",
    "openvino_impl",
    "peak",
    "premul",
    "report",
    "runner",
    "suites",
    "verbose",
    "verbose_probe",
]
