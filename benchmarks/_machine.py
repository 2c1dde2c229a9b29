"""Benchmarks print the machine through the package's own description (``vggnets.machine``), as `vggnets benchmark` does."""

from vggnets.machine import describe_cpu, format_cpu, matmul_peaks  # noqa: F401
