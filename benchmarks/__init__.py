"""The benchmarks behind docs/: run each from the repository root as
``python -m benchmarks.NAME`` (see :mod:`benchmarks.harness`)."""
