"""L-BFGS for pixels that must stay in [0, 1]: one loss evaluation per step, never diverging.

torch.optim.LBFGS without a line search, followed by clamping the pixels, has two faults on
this problem (measured in benchmarks/optimizers.py): the step it stores in its history is not
the step taken wherever pixels clip, so its curvature model drifts; and nothing stops a bad
step, so an unbalanced loss at a small size can blow up (×40 at step 2, ending in colour
noise). This variant

- projects: a step is clipped to the box, and the *actual* step goes into the history;
- guards: a step that raised the loss is undone (we still hold the previous point, its loss
  and gradient, so undoing costs nothing) and retried at half the length; the rejected
  point still teaches the curvature model. After repeated rejections the history is reset.

Each step is still exactly one forward and backward pass, so steps cost the same and the
progress bar's it/s stays meaningful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

#: Rejections in a row after which the curvature history is thrown away.
_RESET_AFTER = 3


class ProjectedLBFGS(torch.optim.Optimizer):
    """L-BFGS on one tensor kept inside [lower, upper], with a monotone safeguard."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1.0,
        history_size: int = 20,
        lower: float = 0.0,
        upper: float = 1.0,
        max_rms_step: float | None = 0.05,
    ) -> None:
        defaults = {
            "lr": lr,
            "history_size": history_size,
            "lower": lower,
            "upper": upper,
            "max_rms_step": max_rms_step,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise ValueError("ProjectedLBFGS optimises exactly one tensor")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Evaluate the loss at the current pixels (via closure) and take one step."""
        with torch.enable_grad():
            loss = closure()
        group = self.param_groups[0]
        pixels: torch.Tensor = group["params"][0]
        state = dict(self.state[pixels])  # replaced, not mutated: earlier state_dicts stay valid
        x = pixels.detach().flatten().clone()
        g = pixels.grad.detach().flatten().clone()  # type: ignore[union-attr]
        value = float(loss)

        # New lists each step, never mutated, for the same reason.
        s_hist: list[torch.Tensor] = list(state.get("s", []))
        y_hist: list[torch.Tensor] = list(state.get("y", []))
        scale = state.get("scale", 1.0)
        if "x" in state:
            s, y = x - state["x"], g - state["g"]
            sy = float(torch.dot(s, y))
            if sy > 1e-10 * float(torch.dot(y, y)):  # curvature condition: keeps H positive
                s_hist = [*s_hist, s][-group["history_size"] :]
                y_hist = [*y_hist, y][-group["history_size"] :]
            if value > state["loss"]:
                # The last step overshot: go back to the previous point and try half as far.
                x, g, value = state["x"], state["g"], state["loss"]
                scale *= 0.5
                state["rejected"] = state.get("rejected", 0) + 1
                if state["rejected"] >= _RESET_AFTER:
                    s_hist, y_hist = [], []
            else:
                scale = min(1.0, scale * 2.0)
                state["rejected"] = 0
        state["s"], state["y"] = s_hist, y_hist

        direction = self._direction(g, s_hist, y_hist)
        lower, upper = group["lower"], group["upper"]
        # Components pushing out of the box at an active bound cannot move: drop them, so the
        # step length is spent where the pixels are free.
        direction[((x <= lower) & (direction < 0)) | ((x >= upper) & (direction > 0))] = 0
        step = group["lr"] * scale * direction
        limit = group["max_rms_step"]
        if limit is not None:
            # A trust region in pixel space: early on, with little curvature history, L-BFGS
            # proposes steps that move every pixel by a third of its range and raise the loss
            # ×60 (measured); capping the step's RMS keeps such steps from being tried at all.
            rms = step.pow(2).mean().sqrt()
            step = step * (limit / rms).clamp(max=1.0)
        new_x = (x + step).clamp_(lower, upper)
        pixels.copy_(new_x.view_as(pixels))

        state["x"], state["g"], state["loss"], state["scale"] = x, g, value, scale
        state["n"] = state.get("n", 0) + 1
        self.state[pixels] = state
        return loss

    @staticmethod
    def _direction(
        g: torch.Tensor, s_hist: list[torch.Tensor], y_hist: list[torch.Tensor]
    ) -> torch.Tensor:
        """-H·g by the two-loop recursion; a gradient step scaled to unit L1 norm when empty."""
        if not s_hist:
            # As torch.optim.LBFGS's first iteration: a step no larger than 1 in L1 norm.
            return -g * min(1.0, 1.0 / max(float(g.abs().sum()), 1e-12))
        # 0-d tensors throughout, not floats: no host sync per history pair on a GPU.
        q = -g
        rhos = [1.0 / torch.dot(y, s) for s, y in zip(s_hist, y_hist, strict=True)]
        alphas = []
        for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rhos), strict=True):
            alpha = rho * torch.dot(s, q)
            q = q - alpha * y
            alphas.append(alpha)
        s, y = s_hist[-1], y_hist[-1]
        q = q * (torch.dot(s, y) / torch.dot(y, y))
        for s, y, rho, alpha in zip(s_hist, y_hist, rhos, reversed(alphas), strict=True):
            beta = rho * torch.dot(y, q)
            q = q + (alpha - beta) * s
        return q
