"""L-BFGS for pixels that must stay in [0, 1]: one loss evaluation per step, never diverging.

torch.optim.LBFGS without a line search, followed by clamping the pixels, lets its curvature
model drift wherever pixels clip, and nothing stops a bad step. This variant

- projects: a step is clipped to the box, and the *actual* step goes into the history;
- guards: a step that raised the loss is undone (the previous point, its loss and gradient
  are still held, so undoing costs nothing) and retried shorter; the rejected point still
  teaches the curvature model. After repeated rejections the history is reset.

Each step is exactly one forward and backward pass, so steps cost the same and the progress
bar's it/s stays meaningful. `precondition` starts the recursion from the pyramid
(`nst_cli.core.pyramid`) instead of a multiple of the identity. With `compact_history` the
(s, y) pairs are kept as float16 relative to each vector's largest element (`pack`): half the
history's memory, for `memory: low`. Measurements: docs/performance.md."""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from nst_cli.core.pyramid import Pyramid, pyramid

#: Rejections in a row after which the curvature history is thrown away.
_RESET_AFTER = 3

#: The RMS of a step taken without curvature information (the first step, at every scale, and
#: after a reset), as a fraction of the box's width; None: torch.optim.LBFGS's rule, a step of
#: 1 in L1 norm, which over an image's ~10⁵–10⁶ pixels moves each by ~10⁻⁶ and teaches the
#: curvature model nothing (under bfloat16 its gradient change is below the gradient's own
#: rounding): 1–4 steps were spent at the start of every scale.
FIRST_STEP_RMS: float | None = 0.01

#: The pyramid's boost on the later scales of a coarse-to-fine run, as a fraction of the full
#: one. They start from an upsampled result whose large structure is in place: the full boost
#: slowed the fine detail they must add and left a grain, the identity gave up what the
#: pyramid does for the raw objective there (measured in the README, How the defaults were
#: chosen).
LIGHT_BOOST = 0.25

#: How strongly each named starting matrix boosts coarse structure (None: the identity).
BOOSTS: dict[str, float | None] = {"none": None, "pyramid": 1.0, "light-pyramid": LIGHT_BOOST}

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


def _current(state: dict[str, Any], pixels: torch.Tensor) -> dict[str, Any]:
    """The optimiser's state in this version's form, whatever wrote it: a checkpoint from
    before the device-side decisions holds plain numbers and no pair weights."""
    state = dict(state)
    device, dtype = pixels.device, pixels.dtype
    state.setdefault("s", [])
    state.setdefault("y", [])
    if "rho" not in state:
        # Before rho was kept: each pair's weight w (1 kept, 0 not), or none (all kept).
        weights = state.pop("w", None) or [torch.ones((), device=device, dtype=dtype)] * len(
            state["s"]
        )
        state["rho"] = []
        for s_stored, y_stored, weight in zip(state["s"], state["y"], weights, strict=True):
            sy = torch.dot(unpack(s_stored).to(device), unpack(y_stored).to(device))
            weight = torch.as_tensor(weight, device=device, dtype=dtype)
            state["rho"].append(torch.where(weight > 0, weight / sy, torch.zeros_like(sy)))
    if "gamma" not in state:
        gamma = torch.zeros((), device=device, dtype=dtype)
        if state["s"]:
            s, y = unpack(state["s"][-1]).to(device), unpack(state["y"][-1]).to(device)
            gamma = torch.dot(s, y) / torch.dot(y, y)
        state["gamma"] = gamma
    for key, default in (("scale", 1.0), ("rejected", 0)):
        state[key] = torch.as_tensor(state.get(key, default), device=device)
    if "loss" in state:
        state["loss"] = torch.as_tensor(state["loss"], device=device, dtype=dtype)
    return state


def carry_history(
    saved: Mapping[str, Any], old: torch.Size, new: torch.Size, precondition: str
) -> dict[str, Any] | None:
    """A state_dict for the next, finer scale of a coarse-to-fine run: the curvature pairs of
    this one resized to it, so its first steps follow a curvature model instead of building
    one from nothing. Each s (a step of the pixels) and y (the change of the gradient it
    made) is resized bilinearly; y is divided by the ratio of pixel counts, as the losses are
    means over positions (a pixel's gradient shrinks as their count grows), which keeps s·y.
    The point, its gradient and loss stay behind: the first step at the new size makes no
    pair. The new scale's own `precondition` replaces the old one's. None where there is
    nothing to carry."""
    group = saved["param_groups"][0]
    state = saved["state"].get(group["params"][0])
    if not state or not state.get("s") or "rho" not in state or len(old) != 4 or len(new) != 4:
        return None
    ratio = new[-1] * new[-2] / (old[-1] * old[-2])

    def resize(stored: Stored) -> torch.Tensor:
        image = unpack(stored).view(old)
        return F.interpolate(image, size=tuple(new[-2:]), mode="bilinear", align_corners=False)

    s_hist = [resize(v).flatten() for v in state["s"]]
    y_hist = [resize(v).div_(ratio).flatten() for v in state["y"]]
    rhos: list[torch.Tensor] = []
    gamma = torch.zeros((), device=s_hist[0].device, dtype=s_hist[0].dtype)
    for s, y, rho in zip(s_hist, y_hist, state["rho"], strict=True):
        sy = torch.dot(s, y)
        # A pair that was kept stays kept if resizing left it curving upwards (device-side).
        kept = (rho > 0) & (sy > 0)
        rhos.append(torch.where(kept, 1.0 / sy, torch.zeros_like(sy)))
        gamma = torch.where(kept, sy / torch.dot(y, y), gamma)
    carried = {"s": s_hist, "y": y_hist, "rho": rhos, "gamma": gamma}
    settings = {**group, "precondition": precondition, "params": [0]}
    return {"state": {0: carried}, "param_groups": [settings]}


def _to_like(value: Any, pixels: torch.Tensor) -> Any:
    """A deep copy with every tensor on the pixels' device in their dtype (torch.optim's rule
    for a floating-point parameter), through dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return value.to(device=pixels.device, dtype=pixels.dtype)
    if isinstance(value, dict):
        return {k: _to_like(v, pixels) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_like(v, pixels) for v in value)
    return value


def free_direction(
    direction: torch.Tensor, x: torch.Tensor, lower: float, upper: float
) -> torch.Tensor:
    """`direction` (updated in place) with its components that push a pixel at a bound out of
    the box set to 0: a falling component where x <= lower, a rising one where x >= upper.

    In float arithmetic, not masks: on the CPU torch's kernels that make or read a bool
    tensor (a comparison, `where`, `masked_fill_`) are several times slower than these ten
    float passes, which give the same result."""
    room_up = (upper - x).clamp_(min=0).sign_()  # 1 where the pixel can still rise, else 0
    room_down = (x - lower).clamp_(min=0).sign_()
    rising = direction.clamp(min=0)
    return direction.clamp_(max=0).mul_(room_down).addcmul_(rising, room_up)


class ProjectedLBFGS:
    """L-BFGS on one tensor kept inside [lower, upper], with a monotone safeguard.

    Not a torch.optim.Optimizer subclass: that base class imports torch._dynamo on first use,
    2-4 s of every command on a 2-core CPU. It keeps the part of the interface nst uses
    (param_groups, state, zero_grad, state_dict, load_state_dict) and torch's state_dict
    format, so checkpoints read and write as before."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1.0,
        history_size: int = 20,
        lower: float = 0.0,
        upper: float = 1.0,
        max_rms_step: float | None = 0.05,
        compact_history: bool = False,
        precondition: str = "none",
    ) -> None:
        if precondition not in BOOSTS:
            raise ValueError(f"unknown precondition {precondition!r}")
        tensors = list(params)
        if len(tensors) != 1:
            raise ValueError("ProjectedLBFGS optimises exactly one tensor")
        self.defaults: dict[str, Any] = {
            "lr": lr,
            "history_size": history_size,
            "lower": lower,
            "upper": upper,
            "max_rms_step": max_rms_step,
            "compact_history": compact_history,
            "precondition": precondition,
        }
        self.param_groups: list[dict[str, Any]] = [{**self.defaults, "params": tensors}]
        self.state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        pixels = self.param_groups[0]["params"][0]
        if set_to_none:
            pixels.grad = None
        elif pixels.grad is not None:
            pixels.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Optimizer's layout: the state keyed by the parameter's index."""
        pixels = self.param_groups[0]["params"][0]
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        state = {0: self.state[pixels]} if pixels in self.state else {}
        return {"state": state, "param_groups": [{**group, "params": [0]}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's: the saved group's settings, and every stored tensor moved to the pixels'
        device and cast to their dtype. A compact history is packed again, so a resumed
        `memory: low` run keeps its float16 pairs."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != 1 or len(saved_groups[0]["params"]) != 1:
            raise ValueError("the saved optimiser state is not for one tensor")
        pixels = self.param_groups[0]["params"][0]
        self.param_groups = [{**copy.deepcopy(saved_groups[0]), "params": [pixels]}]
        self.state = defaultdict(dict)
        saved = state_dict["state"].get(saved_groups[0]["params"][0])
        if saved is None:
            return
        state = _current(_to_like(saved, pixels), pixels)  # an earlier nst's, in today's form
        if self.param_groups[0].get("compact_history"):
            for key in ("s", "y"):
                state[key] = [pack(unpack(v)) for v in state[key]]
        self.state[pixels] = state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Evaluate the loss at the current pixels (via closure) and take one step.

        On a GPU every decision (keep the pair? undo the step?) is made on the device with
        `torch.where`, never by reading a number back: a step queues its work and returns
        without waiting for it. On the CPU the same decisions read their numbers back
        (`_pick`), which costs nothing there and skips whole passes over the pixels."""
        with torch.enable_grad():
            loss = closure()
        group = self.param_groups[0]
        pixels: torch.Tensor = group["params"][0]
        # A new dict each step: earlier state_dicts stay valid.
        state = dict(self.state[pixels]) or _current({}, pixels)
        boost = BOOSTS[group.get("precondition", "none")]
        smooth = (
            None if boost is None else pyramid(pixels.shape, pixels.device, pixels.dtype, boost)
        )
        x = pixels.detach().flatten().clone()
        g = pixels.grad.detach().flatten().clone()  # type: ignore[union-attr]
        value = loss.detach().reshape(()).to(x.dtype)

        # New lists each step, never mutated, for the same reason.
        s_hist: list[Stored] = list(state["s"])
        y_hist: list[Stored] = list(state["y"])
        rhos: list[torch.Tensor] = list(state["rho"])
        scale, gamma = state["scale"], state["gamma"]
        if "x" in state:
            s, y = x - state["x"], g - state["g"]
            sy, yy = torch.dot(s, y), torch.dot(y, y)
            # The curvature condition keeps H positive: a pair failing it is kept with weight
            # 0 (it then does nothing), so whether it passed never has to be read back.
            fits = sy > 1e-10 * yy
            keep = pack if group.get("compact_history") else (lambda v: v)
            size = group["history_size"]
            s_hist, y_hist = [*s_hist, keep(s)][-size:], [*y_hist, keep(y)][-size:]
            # rho = 1/sy, kept with its pair rather than recomputed from it at every step.
            rhos = [*rhos, _pick(fits, 1.0 / sy, torch.zeros_like(sy))][-size:]
            # H0 = gamma·M, scaled as L-BFGS scales the identity: sy / (y·M·y).
            ymy = yy if smooth is None else smooth.quadratic(y)
            gamma = _pick(fits, sy / ymy, gamma)
            # The last step overshot: go back to the previous point and try a shorter one.
            rejected = value > state["loss"]
            scale = _next_scale(scale, value - state["loss"], torch.dot(state["g"], s), rejected)
            x = _pick(rejected, state["x"], x)
            g = _pick(rejected, state["g"], g)
            value = _pick(rejected, state["loss"], value)
            count = state["rejected"]
            state["rejected"] = _pick(rejected, count + 1, torch.zeros_like(count))
            # After repeated rejections the curvature history is thrown away.
            reset, zero = state["rejected"] >= _RESET_AFTER, torch.zeros_like(gamma)
            rhos = [_pick(reset, zero, rho) for rho in rhos]
            gamma = _pick(reset, zero, gamma)
        state["s"], state["y"], state["rho"], state["gamma"] = s_hist, y_hist, rhos, gamma

        lower, upper = group["lower"], group["upper"]
        first_rms = None if FIRST_STEP_RMS is None else FIRST_STEP_RMS * (upper - lower)
        direction = self._direction(g, s_hist, y_hist, rhos, gamma, smooth, first_rms)
        # Components pushing out of the box at an active bound cannot move: drop them, so the
        # step length is spent where the pixels are free.
        # (Each line here is one pass over the pixels, or as few as it can be: at 256 px a
        # pass costs ~0.02-0.1 ms, and the optimiser's whole update is a few % of a step.)
        direction = free_direction(direction, x, lower, upper)
        length = group["lr"]
        limit = group["max_rms_step"]
        if limit is not None:
            # A trust region in pixel space: early on, with little curvature history, L-BFGS
            # proposes steps that move every pixel by a third of its range and raise the loss
            # ×60 (measured); capping the step's RMS keeps such steps from being tried at all.
            rms = length * torch.linalg.vector_norm(direction) / math.sqrt(direction.numel())
            length = length * (limit / rms).clamp(max=1.0)
        # After an overshoot the scale shortens the step actually taken, capped or not (a
        # capped step scaled before the cap would be tried again at the same length).
        length = length * scale
        new_x = torch.addcmul(x, direction, length).clamp_(lower, upper)
        pixels.copy_(new_x.view_as(pixels))

        state["x"], state["g"], state["loss"], state["scale"] = x, g, value, scale
        state["n"] = state.get("n", 0) + 1
        self.state[pixels] = state
        return loss

    @staticmethod
    def _direction(
        g: torch.Tensor,
        s_hist: list[Stored],
        y_hist: list[Stored],
        rhos: list[torch.Tensor],
        gamma: torch.Tensor,
        smooth: Pyramid | None = None,
        first_rms: float | None = None,
    ) -> torch.Tensor:
        """-H·g by the two-loop recursion over the pairs with rho = 1/sy (pairs that failed the
        curvature test or were reset have rho 0 and do nothing), starting from gamma·I or
        gamma·M (`smooth`); while there are none (gamma, the last kept pair's sy/yMy, is then
        0), a gradient step of RMS `first_rms`, or of unit L1 norm where that is None.

        Packed pairs are expanded one at a time, so a compact history never exists in float32
        as a whole. On a GPU the scalars are 0-d tensors, not floats: no host sync per history
        pair. On the CPU, where reading a number back costs nothing and each operation on a
        0-d tensor ~10 µs (~100 of them a step, ~1 ms at 256 px), they are Python floats, and
        a pair of rho 0 is skipped rather than applied with weight 0."""
        host = _on_host(g)
        number: Callable[[torch.Tensor], Any] = float if host else (lambda t: t)
        scale, weights = number(gamma), [number(rho) for rho in rhos]
        if not s_hist or (host and scale <= 0):
            return g * -_first_step(g, first_rms)
        # q is this function's own tensor: updated in place, one pass per pair and loop.
        q = g.neg()
        alphas = []
        for s_stored, y_stored, rho in zip(
            reversed(s_hist), reversed(y_hist), reversed(weights), strict=True
        ):
            alpha = rho * number(torch.dot(unpack(s_stored), q)) if not host or rho else 0.0
            _add_scaled(q, unpack(y_stored), -alpha)
            alphas.append(alpha)
        q = (q if smooth is None else smooth(q)).mul_(scale)
        for s_stored, y_stored, rho, alpha in zip(
            s_hist, y_hist, weights, reversed(alphas), strict=True
        ):
            if host and not rho:
                continue
            beta = rho * number(torch.dot(unpack(y_stored), q))
            _add_scaled(q, unpack(s_stored), alpha - beta)
        return q if host else torch.where(gamma > 0, q, g * -_first_step(g, first_rms))


def _first_step(g: torch.Tensor, first_rms: float | None) -> torch.Tensor:
    """The length, as a multiple of -g, of a step taken without curvature information."""
    if first_rms is None:
        # As torch.optim.LBFGS's first iteration: a step no larger than 1 in L1 norm.
        return (1.0 / torch.linalg.vector_norm(g, 1).clamp(min=1e-12)).clamp(max=1.0)
    # A gradient step of RMS first_rms (the trust region may cap it further).
    return first_rms * math.sqrt(g.numel()) / torch.linalg.vector_norm(g).clamp(min=1e-30)


def _add_scaled(q: torch.Tensor, v: torch.Tensor, a: float | torch.Tensor) -> None:
    """q += a·v in place, for a Python float (skipped when 0) or a 0-d tensor."""
    if isinstance(a, torch.Tensor):
        q.addcmul_(v, a)
    elif a:
        q.add_(v, alpha=a)


def _next_scale(
    scale: torch.Tensor, rise: torch.Tensor, slope: torch.Tensor, rejected: torch.Tensor
) -> torch.Tensor:
    """The next step's length as a multiple of the projected L-BFGS step, from the last
    step's rise in loss and the loss's slope along it at its start (both per whole step).

    The parabola through the loss at both ends with that slope has its minimum at
    t = -slope / (2·(rise - slope)) of the step. After an overshoot the retry goes t of the
    way (0.1–0.5; 0.5 where the parabola has no minimum); after a kept step the next may go
    up to 2× as far, as far as t says the loss was still falling, and never beyond the
    L-BFGS step itself, so a step that always overshoots does not alternate between
    halving and doubling (every other evaluation thrown away). A run without overshoots
    stays at 1 throughout."""
    curve = rise - slope
    has_minimum = (slope < 0) & (curve > 0)
    t = -slope / (2 * curve.abs().clamp(min=1e-30))
    shorter = _pick(has_minimum, t.clamp(0.1, 0.5), torch.full_like(t, 0.5))
    longer = _pick(has_minimum, t.clamp(1.0, 2.0), torch.full_like(t, 2.0))
    return _pick(rejected, scale * shorter, (scale * longer).clamp(max=1.0))


def _on_host(tensor: torch.Tensor) -> bool:
    """Whether the optimiser reads its numbers back as it goes: on the CPU that costs nothing
    and saves work; on a GPU it would make every step wait for the device."""
    return tensor.device.type == "cpu"


def _pick(condition: torch.Tensor, if_true: torch.Tensor, if_false: torch.Tensor) -> torch.Tensor:
    """torch.where(condition, if_true, if_false) for a 0-d condition. On the CPU the condition
    is read back (free there) and one operand returned as it is: no pass over the pixels and
    no bool kernel (slow on the CPU) for what is a choice between two whole tensors."""
    if _on_host(condition):
        return if_true if bool(condition) else if_false
    return torch.where(condition, if_true, if_false)
