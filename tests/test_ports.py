"""tests/ports.py: each xdist worker draws rendezvous ports from its own range, never the kernel's."""

from __future__ import annotations

import socket

from tests import ports


def test_each_worker_draws_from_its_own_range(monkeypatch):
    got = {}
    for w in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", w)
        got[w] = {ports.free_port() for _ in range(20)}
    assert all(20000 <= p < 21000 for p in got["gw0"]) and all(21000 <= p < 22000 for p in got["gw1"])


def test_pair_skips_a_port_whose_neighbour_is_taken(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setattr(ports, "SPAN", 3)  # gw3: 20009..20011; candidates 20009 and 20010
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 20010))
        busy.listen()
        # 20009's neighbour is taken and 20010 itself is: no pair in range
        try:
            ports.free_port(pair=True)
            raised = False
        except RuntimeError:
            raised = True
        assert raised
        assert ports.free_port() == 20009


def test_without_xdist_a_pair_is_two_free_ports(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    p = ports.free_port(pair=True)
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", p))
        b.bind(("127.0.0.1", p + 1))
