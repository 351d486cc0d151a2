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

With `compact_history` the (s, y) pairs are kept as float16 relative to each vector's largest
element (`pack`): half the history's memory (240 instead of 480 bytes per pixel with 20
pairs), for `memory: low`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

#: Rejections in a row after which the curvature history is thrown away.
_RESET_AFTER = 3

#: A history vector: a float32 tensor, or {"scale", "q"} with v ≈ scale · q (see pack).
Stored = torch.Tensor | dict[str, Any]


def pack(vector: torch.Tensor) -> dict[str, Any]:
    """float16 relative to the vector's largest element, so that float16's 11-bit mantissa
    holds it to ~0.05% of that element whatever the loss's scale (raw Caffe-scale gradients
    overflow plain float16). The scale stays a 0-d tensor: no host sync."""
    scale = vector.abs().amax()
    q = vector / torch.where(scale > 0, scale, torch.ones_like(scale))
    return {"scale": scale, "q": q.to(torch.float16)}


def unpack(stored: Stored) -> torch.Tensor:
    """A history vector as float32, however it was stored."""
    if isinstance(stored, torch.Tensor):
        return stored
    return stored["q"].to(torch.float32) * torch.as_tensor(stored["scale"], dtype=torch.float32)


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
        compact_history: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "history_size": history_size,
            "lower": lower,
            "upper": upper,
            "max_rms_step": max_rms_step,
            "compact_history": compact_history,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise ValueError("ProjectedLBFGS optimises exactly one tensor")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, which casts every stored tensor to the pixels' dtype: a compact history
        is packed again, so a resumed `memory: low` run keeps its float16 pairs."""
        super().load_state_dict(state_dict)
        if self.param_groups[0].get("compact_history"):
            for state in self.state.values():
                for key in ("s", "y"):
                    state[key] = [pack(unpack(v)) for v in state.get(key, [])]

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
        s_hist: list[Stored] = list(state.get("s", []))
        y_hist: list[Stored] = list(state.get("y", []))
        scale = state.get("scale", 1.0)
        if "x" in state:
            s, y = x - state["x"], g - state["g"]
            sy = float(torch.dot(s, y))
            if sy > 1e-10 * float(torch.dot(y, y)):  # curvature condition: keeps H positive
                keep = pack if group.get("compact_history") else (lambda v: v)
                s_hist = [*s_hist, keep(s)][-group["history_size"] :]
                y_hist = [*y_hist, keep(y)][-group["history_size"] :]
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
    def _direction(g: torch.Tensor, s_hist: list[Stored], y_hist: list[Stored]) -> torch.Tensor:
        """-H·g by the two-loop recursion; a gradient step scaled to unit L1 norm when empty.

        Packed pairs are expanded one at a time, so a compact history never exists in float32
        as a whole."""
        if not s_hist:
            # As torch.optim.LBFGS's first iteration: a step no larger than 1 in L1 norm.
            return -g * min(1.0, 1.0 / max(float(g.abs().sum()), 1e-12))
        # 0-d tensors throughout, not floats: no host sync per history pair on a GPU.
        q = -g
        rhos = []
        for s_stored, y_stored in zip(s_hist, y_hist, strict=True):
            rhos.append(1.0 / torch.dot(unpack(y_stored), unpack(s_stored)))
        alphas = []
        for s_stored, y_stored, rho in zip(
            reversed(s_hist), reversed(y_hist), reversed(rhos), strict=True
        ):
            alpha = rho * torch.dot(unpack(s_stored), q)
            q = q - alpha * unpack(y_stored)
            alphas.append(alpha)
        s, y = unpack(s_hist[-1]), unpack(y_hist[-1])
        q = q * (torch.dot(s, y) / torch.dot(y, y))
        for s_stored, y_stored, rho, alpha in zip(
            s_hist, y_hist, rhos, reversed(alphas), strict=True
        ):
            beta = rho * torch.dot(unpack(y_stored), q)
            q = q + (alpha - beta) * unpack(s_stored)
        return q
