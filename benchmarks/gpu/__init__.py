"""Sections of ``benchmarks.gpu_suite``: each ``run(budget_s, smoke) -> dict``, Ray-free, in-process."""
