"""Cell rules: the one small network every cell runs on its perception to get its state update.

A rule maps the (normalised) state ``(B, D, H, W, C)`` to a residual update ``ds`` of the same
shape; the lattice applies ``state + mask * ds`` to all cells at once. The rule's first layer sees
the perception through ``project(state, linear)`` (which computes ``linear(perceive(state))`` by
the fastest path); every later layer is an ``nn.Linear`` on the channels-last tensor, i.e. one
GEMM over all cells. No rule ever loops over cells.

The layers listed by ``last_layers()`` are zero-initialised when ``zero_init`` is set, which makes
``ds == 0`` for every input: the untrained lattice is the identity on its state (the stabiliser
used across NCA work, like zero-init residual branches in ResNets).

How to add a rule: subclass :class:`CellRule` (``__init__(features, channels, hidden)``,
``forward(state, project)``, ``last_layers()``, ``flops()``) and add one line to ``RULES``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Project = Callable[[torch.Tensor, nn.Linear], torch.Tensor]


def _linear_flops(layer: nn.Linear) -> int:
    # One multiply-add per weight entry and cell, counted as 2 FLOPs; bias adds are not counted
    # (the usual convention for MFU, e.g. nanoGPT's estimate_mfu / PaLM appendix B).
    return 2 * layer.in_features * layer.out_features


class CellRule(nn.Module):
    """Base class. ``features`` = P of the perception, ``channels`` = C, ``hidden`` = width."""

    def __init__(self, features: int, channels: int, hidden: int):
        super().__init__()
        self.features, self.channels, self.hidden = features, channels, hidden

    def forward(self, state: torch.Tensor, project: Project) -> torch.Tensor:
        """state: (B, D, H, W, C) -> ds: (B, D, H, W, C)."""
        raise NotImplementedError

    def last_layers(self) -> list[nn.Linear]:
        raise NotImplementedError

    def flops(self) -> int:
        """Forward FLOPs of the rule for one cell (linear layers only)."""
        return sum(_linear_flops(m) for m in self.modules() if isinstance(m, nn.Linear))


class MLPRule(CellRule):
    """ds = W2 relu(W1 p + b1) + b2."""

    def __init__(self, features: int, channels: int, hidden: int):
        super().__init__(features, channels, hidden)
        self.fc_in = nn.Linear(features, hidden)
        self.fc_out = nn.Linear(hidden, channels)

    def forward(self, state: torch.Tensor, project: Project) -> torch.Tensor:
        return self.fc_out(F.relu(project(state, self.fc_in)))

    def last_layers(self) -> list[nn.Linear]:
        return [self.fc_out]


class GatedMLPRule(CellRule):
    """SwiGLU: [g, v] = W1 p + b1 (one GEMM), ds = W2 (silu(g) * v) + b2."""

    def __init__(self, features: int, channels: int, hidden: int):
        super().__init__(features, channels, hidden)
        self.fc_in = nn.Linear(features, 2 * hidden)
        self.fc_out = nn.Linear(hidden, channels)

    def forward(self, state: torch.Tensor, project: Project) -> torch.Tensor:
        g, v = project(state, self.fc_in).chunk(2, dim=-1)
        return self.fc_out(F.silu(g) * v)

    def last_layers(self) -> list[nn.Linear]:
        return [self.fc_out]


class GRURule(CellRule):
    """GRU-style gated update.

    [u, r'] = W_in p + b_in            (hidden + C; one GEMM over the perception)
    r       = sigmoid(r')              reset gate on the cell's own state
    h       = tanh(u + U (r * s))      candidate features
    [z', c] = W_out h + b_out          (2C)
    ds      = sigmoid(z') * tanh(c)    update gate times candidate step

    As in a GRU, z interpolates between keeping the state and moving it; the candidate is written
    as a step from the current state rather than a new state, so that a zero ``W_out`` gives
    ``ds = 0`` (a GRU's ``z * (c - s)`` would decay the state by half per step at init).
    """

    def __init__(self, features: int, channels: int, hidden: int):
        super().__init__(features, channels, hidden)
        self.fc_in = nn.Linear(features, hidden + channels)
        self.fc_reset = nn.Linear(channels, hidden, bias=False)
        self.fc_out = nn.Linear(hidden, 2 * channels)

    def forward(self, state: torch.Tensor, project: Project) -> torch.Tensor:
        u, r = project(state, self.fc_in).split([self.hidden, self.channels], dim=-1)
        h = torch.tanh(u + self.fc_reset(torch.sigmoid(r) * state))
        z, c = self.fc_out(h).chunk(2, dim=-1)
        return torch.sigmoid(z) * torch.tanh(c)

    def last_layers(self) -> list[nn.Linear]:
        return [self.fc_out]


RULES: dict[str, type[CellRule]] = {
    "mlp": MLPRule,
    "gated_mlp": GatedMLPRule,
    "gru": GRURule,
}
