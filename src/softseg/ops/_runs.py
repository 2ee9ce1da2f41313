"""The first label pass summed along runs of equal labels, instead of pixel by pixel.

Private to :mod:`softseg.ops._fast`, which picks this or its per-pixel pass, whichever touches
fewer elements. Along an axis, output ``j`` reads used inputs from ``lo[j]`` on, and ``S_j(x)`` is
its weight on inputs ``>= x``. A run ``[a, b)`` of class ``c`` adds ``S_j(a) - S_j(b)`` to ``c``:
``total[j]`` if the run holds ``lo[j]``, plus ``Q_j(a) - Q_j(b)`` where ``Q_j(x) = S_j(x)`` for
``x > lo[j]``, else 0 (``Q_j`` is 0 at a row's ends). So each output adds its total to the class at
``lo[j]``, and each boundary between two runs at ``x`` adds ``Q_j(x)`` to the new run's class and
takes it from the old one's, for the few outputs it cuts. The pass reads the map once (neighbour
comparisons) and writes once per output and a few times per boundary, never per pixel; label
maps are piecewise constant, so boundaries are far fewer than pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._taps import codes_of


@dataclass(frozen=True)
class Runs:
    """One axis's weights as runs read them: ``lo``/``total`` ``(n_out,)``, each output's first
    used input and summed weight; ``cut_j``/``cut_q`` ``(n_used + 1, k)``, the outputs a boundary
    at ``x`` cuts and their ``Q_j(x)`` (padded with output 0 and weight 0). Weights in float32."""

    lo: torch.Tensor
    total: torch.Tensor
    cut_j: torch.Tensor
    cut_q: torch.Tensor

    def to(self, dev: torch.device) -> Runs:
        """The tables on ``dev``."""
        return Runs(self.lo.to(dev), self.total.to(dev), self.cut_j.to(dev), self.cut_q.to(dev))


def run_form(band_index: np.ndarray, band_weight: np.ndarray, n_used: int) -> Runs | None:
    """The run form of a band ``(n_out, taps)`` over ``n_used`` used inputs (dead taps pointing
    at a live tap of their row, or all at one input in rows without any), or ``None`` where
    the outputs' first inputs do not ascend. Built on each output's own span, never on a dense
    ``(n_out, n_used)`` band: per-sample crop boxes rarely hit the plan cache."""
    if n_used == 0:
        return None
    n_out = band_index.shape[0]
    lo = band_index.min(1)  # dead taps point at a live one of their row (or, in a dead row, at
    # the last live row's first), see softseg.ops._fast._plan
    if np.any(lo[1:] < lo[:-1]):  # the outputs a boundary cuts would not be one range
        return None
    offset = band_index - lo[:, None]
    span = int(offset.max()) + 1
    local = np.bincount(
        (np.arange(n_out)[:, None] * span + offset).ravel(), band_weight.ravel(), n_out * span
    ).reshape(n_out, span)
    suffix = np.cumsum(local[:, ::-1], axis=1)[:, ::-1]  # S_j(lo[j] + m)
    # a boundary at x cuts the outputs with x - span < lo[j] < x: one range, as lo ascends
    x = np.arange(n_used + 1)
    first = np.searchsorted(lo, x - span, side="right")
    count = np.searchsorted(lo, x, side="left") - first
    j = first[:, None] + np.arange(max(1, int(count.max())))
    inside = j < (first + count)[:, None]
    j = np.where(inside, j, 0)
    q = np.where(inside, suffix[j, np.clip(x[:, None] - lo[j], 0, span - 1)], 0.0)
    t, f32 = torch.from_numpy, np.float32  # the passes add in float32
    return Runs(t(lo), t(suffix[:, 0].astype(f32)), t(j), t(q.astype(f32)))


def boundaries(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column (``>= 1``) of every label change along the rows of ``part``, in order.
    On a GPU this waits for the device (``nonzero``); on the CPU numpy finds them, about ten
    times faster than torch."""
    n_rows, cols = part.shape
    if part.device.type != "cpu":
        row, col = torch.ne(part[:, 1:], part[:, :-1]).nonzero(as_tuple=True)
        return row, col + 1
    if cols < 2:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    labels = part.numpy()
    row, col = np.divmod(np.flatnonzero(labels[:, 1:] != labels[:, :-1]), cols - 1)
    return torch.from_numpy(row), torch.from_numpy(col + 1)


def runs_pass(part, row, col, runs: Runs, acc, k: int, w: int, ignore_index) -> None:
    """Add the weights of ``part`` (rows of checked labels, contiguous) with boundaries at
    ``row``/``col`` into ``acc``, a zeroed flat ``(k, rows, w)`` buffer whose channel ``k - 1``
    takes the ignored pixels."""
    n_rows, cols = part.shape
    # each output's total weight goes to the class at its first input: one write per output
    at_lo = part.t().index_select(0, runs.lo).t()  # far faster than along dim 1
    at_lo = codes_of(at_lo, k - 1, ignore_index).unsqueeze(0)
    acc.view(k, n_rows, w).scatter_add_(0, at_lo, runs.total.expand(1, n_rows, w))
    # a boundary adds Q to the new run's class and takes as much from the old one's
    x = row * cols + col
    flat = part.reshape(-1)
    code = torch.cat([flat.index_select(0, x), flat.index_select(0, x - 1)])
    code = codes_of(code, k - 1, ignore_index)
    base = (code.view(2, -1, 1) * n_rows + row.view(1, -1, 1)) * w
    j, q = runs.cut_j.index_select(0, col), runs.cut_q.index_select(0, col)
    acc.index_add_(0, (base + j).view(-1), torch.stack([q, -q]).view(-1))
