"""Finding the worker processes a test started (importable as `worker_processes`: tests/ is on sys.path).

A test sets ``Y2R_TEST_TAG`` in the environment of the y2r it runs; every worker process inherits it,
so the test can find exactly its own workers (and check that none survive) among everything else
running on the machine, other tests' workers included.
"""

from __future__ import annotations

import psutil


def tagged_workers(tag: str) -> list[psutil.Process]:
    """Live y2r worker processes (``y2r.execution.worker_host``) whose environment carries ``tag``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "y2r.execution.worker_host" in " ".join(p.info["cmdline"] or []) and p.environ().get("Y2R_TEST_TAG") == tag:
                found.append(p)
        except psutil.Error:  # gone meanwhile, or not ours to inspect
            continue
    return found
