"""Benchmarks print the machine through the package's own description (``vggnets.inference.machine``), as `vggnets benchmark` does."""

from vggnets.inference.machine import describe_cpu, format_cpu, matmul_peaks  # noqa: F401
