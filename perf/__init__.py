"""Benchmark harness: fused oneDNN RNN primitives against unfused versions, with proof of what ran.

Installed as ``nervana_lstm.perf`` (the repository keeps it in ``perf/``).
Modules, one job each:

* :mod:`~nervana_lstm.perf.flops`    FLOP formulas (full and DeepBench's recurrent-only count)
* :mod:`~nervana_lstm.perf.runner`   warm-up, repeats, median and spread, pinned threads
* :mod:`~nervana_lstm.perf.peak`     the GEMM peak measured in the same run
* :mod:`~nervana_lstm.perf.spec`     what implementations share: Spec, Variant, Unavailable,
  WrongResult, the seeded inputs and module, the measured call
* :mod:`~nervana_lstm.perf.impls`    the table of named builders and ``build``
* :mod:`~nervana_lstm.perf.torch_impls` the torch implementations (onednn ... ipex)
* :mod:`~nervana_lstm.perf.premul`   the premul/compiled forwards (input projection hoisted)
* :mod:`~nervana_lstm.perf.openvino_impl` the OpenVINO implementation (f32, bf16, NNCF int8)
* :mod:`~nervana_lstm.perf.verbose`  ONEDNN_VERBOSE parsing and the subprocess rerun
  (:mod:`~nervana_lstm.perf.verbose_probe` is the subprocess)
* :mod:`~nervana_lstm.perf.suites`   the shape suites (quick, deepbench, a user YAML file)
* :mod:`~nervana_lstm.perf.harness`  runs a suite over implementations, modes, dtypes and threads
* :mod:`~nervana_lstm.perf.instances` K pinned processes for throughput runs
* :mod:`~nervana_lstm.perf.results`  the typed row of results.json
* :mod:`~nervana_lstm.perf.report`   results.json, report.md and the PNG charts
* :mod:`~nervana_lstm.perf.compare`  compares two results.json files and flags regressions
* :mod:`~nervana_lstm.perf.model_bench` ``bench --model``: one trained model, torch against its IR
* :mod:`~nervana_lstm.perf.model_variants` that model's torch, IPEX and IR variants
* :mod:`~nervana_lstm.perf.model_report` the ratios against their targets, the report section
* :mod:`~nervana_lstm.perf.ir_timing` how an IR is compiled and called for timing
* :mod:`~nervana_lstm.perf.train_overhead` training-loop overhead and the ``accel: auto`` choice
* :mod:`~nervana_lstm.perf.train_vs_plain` ``train`` against a plain PyTorch loop
* :mod:`~nervana_lstm.perf.train_profile` where one training step spends its time, per backend
* :mod:`~nervana_lstm.perf.run_config` the shipped config these three start from
* :mod:`~nervana_lstm.perf.quiet`    how busy the machine was around each group of rows,
  noisy GEMM peaks, ``--quiet-wait``
* :mod:`~nervana_lstm.perf.contention` training and an LSTM call quiet and beside busy
  processes, under each thread and OpenMP wait setting

Imports go one way: ``spec`` imports no module of this package; the
implementation modules import ``spec``; ``impls`` imports them; the harness,
the probe and the instances import ``impls``. Importing this package imports
no torch; the modules do so where they need it.
"""

__all__ = [
    "compare",
    "contention",
    "flops",
    "harness",
    "impls",
    "instances",
    "ir_timing",
    "model_bench",
    "model_report",
    "model_variants",
    "openvino_impl",
    "peak",
    "premul",
    "quiet",
    "report",
    "results",
    "run_config",
    "runner",
    "spec",
    "suites",
    "torch_impls",
    "train_overhead",
    "train_profile",
    "train_vs_plain",
    "verbose",
    "verbose_probe",
]
