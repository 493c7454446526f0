"""Ports for the tests' rendezvous (torchrun, accelerate launch, distill launch).

Under pytest-xdist (`make test` runs two workers) two test files run at once, each maybe starting
a multi-process job. Asking the kernel for a free port (bind to 0) can hand both workers the same
port once the probe socket is closed, and a launcher then joins the other job's rendezvous and
waits there until the test times out (seen once: the two-node test hung for its whole 300 s).
So each worker draws from its own range below the kernel's ephemeral range (32768+), where
neither the kernel nor another worker hands ports out; without xdist, the kernel picks.
"""

from __future__ import annotations

import os
import random
import socket

BASE, SPAN = 20000, 1000  # worker gwN: [BASE + N * SPAN, BASE + (N + 1) * SPAN)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(pair: bool = False) -> int:
    """A port free now; ``pair``: PORT+1 free too (distill launch's embed phase uses PORT+1)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        lo = BASE + int(worker[2:]) * SPAN
        candidates = list(range(lo, lo + SPAN - 1))  # the last one only ever as a pair's PORT+1
        random.shuffle(candidates)
        for port in candidates:
            if _bindable(port) and (not pair or _bindable(port + 1)):
                return port
        raise RuntimeError(f"no free port in {lo}-{lo + SPAN - 1} for xdist worker {worker}")
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65534 and (not pair or _bindable(port + 1)):
            return port
    raise RuntimeError("no free port" + (" pair" if pair else ""))
