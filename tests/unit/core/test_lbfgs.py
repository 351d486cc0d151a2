"""ProjectedLBFGS against problems whose answer is known in closed form."""

from __future__ import annotations

import pytest
import torch

from nst_cli.core import lbfgs
from nst_cli.core import pyramid as pyramid_module
from nst_cli.core.lbfgs import ProjectedLBFGS
from nst_cli.core.pyramid import pyramid


def _quadratic(curvature: torch.Tensor, centre: torch.Tensor):
    def loss(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (curvature * (x - centre) ** 2).sum()

    return loss


def _minimise(
    loss,
    x0: torch.Tensor,
    steps: int,
    lr: float = 1.0,
    accepted: list | None = None,
    state: dict | None = None,
    made: list | None = None,
    **settings,
) -> tuple[torch.Tensor, list]:
    """Run `steps` steps from x0 (from a state_dict, if given); `made` gets the optimiser."""
    x = x0.clone().requires_grad_(True)
    optimizer = ProjectedLBFGS([x], lr=lr, history_size=10, **settings)
    if state is not None:
        optimizer.load_state_dict(state)
    if made is not None:
        made.append(optimizer)
    values: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(x)
        value.backward()
        values.append(float(value.detach()))
        return value

    for _ in range(steps):
        optimizer.step(closure)
        if accepted is not None:
            accepted.append(optimizer.state[x]["loss"])
    return x.detach(), values


def _closure_for(loss, x: torch.Tensor, optimizer: ProjectedLBFGS):
    """The closure an optimiser step calls: loss and gradient at x."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(x)
        value.backward()
        return value

    return closure


def test_reaches_the_box_constrained_minimum_of_a_separable_quadratic() -> None:
    torch.manual_seed(0)
    # Asymmetric shape, curvatures over two decades, half the centres outside [0, 1].
    curvature = torch.logspace(-1, 1, 24).view(2, 3, 4)
    centre = torch.linspace(-0.8, 1.9, 24).view(2, 3, 4)
    x, _ = _minimise(_quadratic(curvature, centre), torch.full((2, 3, 4), 0.5), 60)
    # For a separable quadratic the constrained minimiser is the centre clipped to the box.
    assert torch.allclose(x, centre.clamp(0, 1), atol=1e-3)
    assert x.min() >= 0 and x.max() <= 1


def test_pixels_never_leave_the_box() -> None:
    curvature = torch.ones(50)
    centre = torch.linspace(-5, 5, 50)
    x = torch.full((50,), 0.5, requires_grad=True)
    optimizer = ProjectedLBFGS([x], lr=1.0)
    for _ in range(10):

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            value = 0.5 * (curvature * (x - centre) ** 2).sum()
            value.backward()
            return value

        optimizer.step(closure)
        assert x.min() >= 0 and x.max() <= 1


def test_an_overshooting_step_is_undone_and_the_best_point_kept() -> None:
    # lr 50 makes every full step overshoot; the guard must still make progress.
    curvature = torch.tensor([1.0, 30.0, 0.5])
    centre = torch.tensor([0.2, 0.7, 0.4])
    loss = _quadratic(curvature, centre)
    accepted: list[float] = []
    x, values = _minimise(loss, torch.tensor([0.9, 0.1, 0.95]), 40, lr=50.0, accepted=accepted)
    # Some evaluated point was worse than its predecessor (a step was rejected) ...
    assert any(b > a for a, b in zip(values, values[1:], strict=False))
    # ... yet the point the optimiser stands on never got worse, and it got far better.
    assert all(b <= a for a, b in zip(accepted, accepted[1:], strict=False))
    assert accepted[-1] < values[0] * 1e-3


@pytest.mark.parametrize(
    ("scale", "rise", "slope", "expected"),
    [
        # A full step went 2.5× past the minimum along its line (loss t²/0.8 - t per step):
        # the retry goes to the minimum, 0.4 of the way, where halving went to 0.5.
        (1.0, 0.25, -1.0, 0.4),
        # That retry landed on the minimum (its parabola's minimum is at its end): the length
        # is kept, where doubling went back to the full step that had just overshot.
        (0.4, -0.2, -0.4, 0.4),
        # A kept step along which the loss fell almost linearly: up to 2× as far ...
        (0.4, -0.95, -1.0, 0.8),
        # ... but never beyond the L-BFGS step itself (a run without overshoots stays at 1).
        (1.0, -0.5, -1.0, 1.0),
        (1.0, -0.99, -1.0, 1.0),
        # An overshoot along which the loss was not falling at the start: halve.
        (1.0, 0.3, 0.1, 0.5),
        # The retry never shrinks below a tenth at once.
        (1.0, 100.0, -1.0, 0.1),
    ],
)
def test_the_step_length_follows_the_parabola_through_the_last_step(
    scale: float, rise: float, slope: float, expected: float
) -> None:
    rejected = torch.tensor(rise > 0)
    t = torch.tensor
    assert float(lbfgs._next_scale(t(scale), t(rise), t(slope), rejected)) == pytest.approx(
        expected, rel=1e-5
    )


def test_an_overshooting_step_capped_by_the_trust_region_is_retried_shorter() -> None:
    # 1e-4 from a steep minimum, every step the trust region lets through (RMS 0.01, lr 1000)
    # goes 100× too far. A retry must be shorter than the capped step that overshot: scaling
    # the length before the cap tried that same step again until the history was reset.
    loss = _quadratic(torch.full((50,), 1e4), torch.full((50,), 0.5))
    _, values = _minimise(loss, torch.full((50,), 0.4999), 4, lr=1000.0, max_rms_step=0.01)
    assert values[1] > values[0]  # the first (capped) step overshot ...
    assert min(values[1:]) < values[0]  # ... and a shorter retry got below the start


def test_state_dict_round_trip_continues_identically() -> None:
    curvature = torch.logspace(-1, 1, 12)
    centre = torch.linspace(-0.5, 1.5, 12)
    loss = _quadratic(curvature, centre)
    x = torch.full((12,), 0.3, requires_grad=True)
    optimizer = ProjectedLBFGS([x], lr=1.0)
    for _ in range(4):
        optimizer.step(_closure_for(loss, x, optimizer))
    saved_x, saved_state = x.detach().clone(), optimizer.state_dict()
    for _ in range(3):
        optimizer.step(_closure_for(loss, x, optimizer))
    y = saved_x.clone().requires_grad_(True)
    other = ProjectedLBFGS([y], lr=1.0)
    other.load_state_dict(saved_state)
    for _ in range(3):
        other.step(_closure_for(loss, y, other))
    assert torch.equal(x.detach(), y.detach())


def test_packed_vectors_keep_float16_precision_at_any_scale() -> None:
    from nst_cli.core.lbfgs import pack, unpack

    torch.manual_seed(3)
    for magnitude in (1e-9, 1.0, 1e7):  # plain float16 would flush or overflow the ends
        vector = torch.randn(1000) * magnitude
        packed = pack(vector)
        assert packed["q"].dtype == torch.float16
        error = (unpack(packed) - vector).abs().max() / vector.abs().max()
        assert error < 1e-3
    assert torch.equal(unpack(pack(torch.zeros(5))), torch.zeros(5))


def test_a_compact_history_halves_its_memory_and_converges_as_the_full_one() -> None:
    torch.manual_seed(0)
    curvature = torch.logspace(-1, 1, 300).view(3, 10, 10)
    centre = torch.linspace(-0.5, 1.5, 300).view(3, 10, 10)
    loss = _quadratic(curvature, centre)
    finals = {}
    for compact in (False, True):
        x = torch.full((3, 10, 10), 0.5, requires_grad=True)
        optimizer = ProjectedLBFGS([x], history_size=10, compact_history=compact)
        for _ in range(12):  # part way: the histories steer the steps
            optimizer.step(_closure_for(loss, x, optimizer))
        pairs = optimizer.state[x]["s"]
        stored = pairs[0]["q"] if compact else pairs[0]
        assert stored.dtype == (torch.float16 if compact else torch.float32)
        finals[compact] = float(loss(x.detach()))
        # A resumed run keeps its pairs packed (torch's loader would cast them to float32).
        if compact:
            again = ProjectedLBFGS([x], history_size=10, compact_history=True)
            again.load_state_dict(optimizer.state_dict())
            assert again.state[x]["y"][-1]["q"].dtype == torch.float16
    gaps = {k: v - float(loss(centre.clamp(0, 1))) for k, v in finals.items()}
    assert gaps[False] > 1e-3  # not converged yet, or the comparison says nothing
    assert abs(gaps[True] - gaps[False]) <= 0.05 * gaps[False]


@pytest.mark.parametrize("precondition", ["none", "pyramid", "light-pyramid"])
def test_a_step_reads_nothing_back_from_the_device(precondition: str, as_on_a_gpu) -> None:
    from tests.conftest import HostReads

    # lr 50: steps overshoot, get undone, and the history is reset: every branch is taken.
    shape = (1, 3, 8, 10)
    curvature = torch.logspace(-1, 1, 240).view(shape)
    centre = torch.linspace(-0.5, 1.5, 240).view(shape)
    loss = _quadratic(curvature, centre)
    x = torch.full(shape, 0.5, requires_grad=True)
    optimizer = ProjectedLBFGS([x], lr=50.0, history_size=5, precondition=precondition)
    closure = _closure_for(loss, x, optimizer)
    with HostReads() as host:
        for _ in range(25):
            optimizer.step(closure)
    assert host.reads == []
    assert int(optimizer.state[x]["rejected"]) >= 0  # (reading it here, outside, is fine)
    assert float(loss(x.detach())) < float(loss(torch.full(shape, 0.5)))


@pytest.mark.parametrize("precondition", ["none", "pyramid"])
def test_on_the_cpu_a_step_reads_its_numbers_back_and_takes_the_same_steps(
    precondition: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lr 50: steps overshoot, get undone, and the history is reset: every branch is taken.
    shape = (1, 3, 8, 10)
    curvature = torch.logspace(-1, 1, 240).view(shape)
    centre = torch.linspace(-0.5, 1.5, 240).view(shape)
    loss = _quadratic(curvature, centre)
    runs = {}
    for on_host in (True, False):
        monkeypatch.setattr(lbfgs, "_on_host", lambda tensor, on_host=on_host: on_host)
        x, values = _minimise(loss, torch.full(shape, 0.5), 25, lr=50.0, precondition=precondition)
        runs[on_host] = (x, values)
    (x_host, values_host), (x_device, values_device) = runs[True], runs[False]
    # Its scalars are doubles there, the device's float32: the same path up to rounding.
    assert values_host == pytest.approx(values_device, rel=1e-4)
    assert torch.allclose(x_host, x_device, atol=1e-3)
    assert any(b > a for a, b in zip(values_host, values_host[1:], strict=False))  # undone
    assert values_host[-1] < values_host[0] / 5


@pytest.mark.parametrize("weights", [False, True], ids=["plain numbers", "pair weights"])
def test_a_state_saved_by_an_earlier_nst_still_loads_and_steps(weights: bool) -> None:
    # Checkpoints written before the device-side decisions hold plain numbers, no weights;
    # later ones a weight per pair (1 kept, 0 not) and no 1/sy.
    curvature = torch.logspace(-1, 1, 12)
    centre = torch.linspace(-0.5, 1.5, 12)
    loss = _quadratic(curvature, centre)
    x = torch.full((12,), 0.3, requires_grad=True)
    optimizer = ProjectedLBFGS([x])
    closure = _closure_for(loss, x, optimizer)
    for _ in range(3):
        optimizer.step(closure)
    state = optimizer.state_dict()
    inner = state["state"][0]
    old = {k: v for k, v in inner.items() if k not in ("rho", "gamma")}
    old.update(loss=float(inner["loss"]), scale=float(inner["scale"]), rejected=0)
    if weights:
        old["w"] = [(rho > 0).float() for rho in inner["rho"]]
    y = x.detach().clone().requires_grad_(True)
    again = ProjectedLBFGS([y])
    again.load_state_dict({**state, "state": {0: old}})
    for _ in range(3):
        again.step(_closure_for(loss, y, again))
        optimizer.step(closure)
    # 1/sy and gamma rebuilt from the pairs give the same steps as the live state.
    assert torch.allclose(x.detach(), y.detach(), atol=1e-6)


def test_the_pyramid_is_symmetric_positive_definite_and_boosts_only_coarse_structure() -> None:
    torch.manual_seed(0)
    shape = torch.Size((1, 3, 37, 50))  # sides that no grid divides
    apply = pyramid(shape)
    assert apply is not None
    u, v = torch.randn(2, shape.numel())
    assert torch.allclose(torch.dot(u, apply(v)), torch.dot(apply(u), v), rtol=1e-4)
    assert torch.dot(v, apply(v)) >= torch.dot(v, v)
    # The quadratic form that scales the starting matrix, from the gathers alone.
    assert torch.allclose(apply.quadratic(v), torch.dot(v, apply(v)), rtol=1e-5)
    # A flat image is boosted by 1 + the cell sides (2, 4, 8: up to a quarter of 37) ...
    flat = apply(torch.ones(shape.numel()))
    assert torch.allclose(flat, torch.full_like(flat, 15.0), rtol=0.02)
    # ... a pixel checkerboard, which no coarse grid sees, stays nearly as it is.
    rows, cols = torch.meshgrid(torch.arange(37), torch.arange(50), indexing="ij")
    checker = ((rows + cols) % 2 * 2 - 1).float().expand(shape).flatten()
    assert (apply(checker) - checker).norm() < 0.05 * checker.norm()
    assert pyramid(torch.Size((1, 3, 7, 7))) is None and pyramid(torch.Size((40,))) is None


def test_the_light_pyramid_boosts_coarse_structure_a_quarter_as_much() -> None:
    # What the later scales of a coarse-to-fine run start from (`auto`): M = I + B/4 where the
    # pyramid is I + B, so a flat image is boosted by 1 + 14/4 where it was 1 + 14.
    shape = torch.Size((1, 3, 37, 50))
    full, light = pyramid(shape), pyramid(shape, boost=lbfgs.BOOSTS["light-pyramid"])
    assert full is not None and light is not None
    v = torch.randn(shape.numel())
    assert torch.allclose(light(v) - v, (full(v) - v) * 0.25, atol=1e-5)
    assert torch.allclose(light.quadratic(v), torch.dot(v, light(v)), rtol=1e-5)
    flat = light(torch.ones(shape.numel()))
    assert torch.allclose(flat, torch.full_like(flat, 1 + 14 / 4), rtol=0.02)
    # The optimiser takes it by name, and its first curvature-led step differs from both.
    directions = {}
    for name in ("none", "light-pyramid", "pyramid"):
        x = torch.full(shape, 0.5, requires_grad=True)
        loss = _quadratic(torch.logspace(-1, 1, shape.numel()).view(shape), torch.rand(shape))
        optimizer = ProjectedLBFGS([x], history_size=5, precondition=name)
        closure = _closure_for(loss, x, optimizer)
        for _ in range(3):
            before = x.detach().clone()
            optimizer.step(closure)
        directions[name] = (x.detach() - before).flatten()
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(directions["light-pyramid"], directions["none"], dim=0) < 0.9999
    assert cosine(directions["light-pyramid"], directions["pyramid"], dim=0) < 0.9999
    with pytest.raises(ValueError, match="unknown precondition"):
        ProjectedLBFGS([torch.zeros(3, requires_grad=True)], precondition="heavy")


def test_the_pyramid_as_matrix_products_equals_the_upsampling_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Up to DENSE_SIDE, U and Uᵀ are products with 1-D interpolation matrices (in bands of BAND
    # pixels above BANDED_ABOVE); beyond it the kernels. All must be the same M (sides no grid
    # divides; a batch of two; bands of 8 pixels, so each axis has several, and overlapping).
    torch.manual_seed(0)
    shape = torch.Size((2, 3, 37, 50))
    sides = [2, 4, 8]
    dense = pyramid_module.Pyramid(shape, sides)
    monkeypatch.setattr(pyramid_module, "BANDED_ABOVE", 0)
    monkeypatch.setattr(pyramid_module, "BAND", 8)
    banded = pyramid_module.Pyramid(shape, sides)
    monkeypatch.setattr(pyramid_module, "DENSE_SIDE", 0)
    kernels = pyramid_module.Pyramid(shape, sides)
    assert (dense.mode, banded.mode, kernels.mode) == ("dense", "banded", "kernels")
    assert min(len(rows) for rows, _ in banded._bands) > 1
    v = torch.randn(shape.numel())
    for products in (dense, banded):
        assert torch.allclose(products(v), kernels(v), atol=1e-5)
        assert torch.allclose(products.quadratic(v), kernels.quadratic(v), rtol=1e-5)


def _smoothness_problem():
    """Match a smooth target's gradients: curvature ∝ frequency², so the coarse structure
    is nearly flat for the optimiser, as in style transfer's slow tail."""
    side = 48
    ramp = torch.linspace(0.2, 0.8, side)
    target = (ramp.view(-1, 1) + ramp.view(1, -1)).div(2).expand(1, 3, side, side)

    def loss(x: torch.Tensor) -> torch.Tensor:
        dx = (x - target).diff(dim=-1).pow(2).sum() + (x - target).diff(dim=-2).pow(2).sum()
        return dx + 1e-4 * (x - target).pow(2).sum()

    return loss, torch.full((1, 3, side, side), 0.5)


def test_the_pyramid_moves_coarse_structure_many_times_faster() -> None:
    loss, start = _smoothness_problem()
    reached = {}
    for precondition in ("none", "pyramid"):
        x = start.clone().requires_grad_(True)
        optimizer = ProjectedLBFGS([x], history_size=10, precondition=precondition)
        closure = _closure_for(loss, x, optimizer)
        for _ in range(30):
            optimizer.step(closure)
        reached[precondition] = float(loss(x.detach()))
    assert reached["pyramid"] < reached["none"] / 100, reached


def test_a_step_without_curvature_moves_the_pixels_by_a_set_rms() -> None:
    """The first step (of every scale, and after a reset) is a gradient step of RMS
    FIRST_STEP_RMS of the box: torch's L1-norm-1 step moved a 64×64 image by ~1e-5 per pixel
    and taught the curvature model nothing, so the next steps were spent too."""
    torch.manual_seed(0)
    target = torch.rand(1, 3, 64, 64)
    loss = _quadratic(torch.ones_like(target), target)
    x = torch.full_like(target, 0.5).requires_grad_(True)
    optimizer = ProjectedLBFGS([x])
    closure = _closure_for(loss, x, optimizer)
    start = loss(x.detach()).item()
    optimizer.step(closure)
    moved = (x.detach() - 0.5).pow(2).mean().sqrt().item()
    assert moved == pytest.approx(lbfgs.FIRST_STEP_RMS, rel=1e-4)
    # the step itself counts: 7% of this loss (0.07% with the L1 rule)
    assert loss(x.detach()).item() < 0.95 * start


def _smooth_problem(side: int):
    """A mean over pixels (as nst's losses are) of a smooth, anisotropic quadratic: the same
    problem at any size, so a coarse solve's curvature holds at a finer one."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    target = (0.5 + 0.3 * torch.sin(3 * xx) * torch.cos(2 * yy)).expand(1, 3, side, side)
    curvature = (1 + 30 * xx).expand(1, 3, side, side)
    return lambda x: 0.5 * (curvature * (x - target) ** 2).mean()


def test_curvature_carried_to_a_finer_scale_gives_a_better_first_step() -> None:
    made: list[ProjectedLBFGS] = []
    coarse, _ = _minimise(
        _smooth_problem(16), torch.full((1, 3, 16, 16), 0.5), 5, made=made, max_rms_step=None
    )
    coarse_opt = made[0]
    start = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
    carried = lbfgs.carry_history(coarse_opt.state_dict(), coarse.shape, start.shape, "pyramid")
    assert carried is not None
    assert carried["param_groups"][0]["precondition"] == "pyramid"  # the new scale's own
    pairs = carried["state"][0]
    assert all(v.numel() == start.numel() for v in pairs["s"] + pairs["y"])
    assert "x" not in pairs and "g" not in pairs  # the first step at the new size makes no pair
    # s·y survives the resize (y divided by the pixel ratio): every pair kept stays kept.
    assert all(float(r) > 0 for r in pairs["rho"])
    carried["param_groups"][0]["precondition"] = "none"
    _, fresh = _minimise(_smooth_problem(32), start, 3, max_rms_step=None)
    _, warm = _minimise(_smooth_problem(32), start, 3, state=carried, max_rms_step=None)
    assert fresh[0] == warm[0]  # the same start
    assert warm[1] < warm[0] < fresh[1]  # a fresh model's first step overshoots here
    assert warm[2] < fresh[2]


def test_nothing_to_carry_is_none() -> None:
    x = torch.zeros(1, 3, 8, 8, requires_grad=True)
    fresh = ProjectedLBFGS([x]).state_dict()
    assert lbfgs.carry_history(fresh, x.shape, torch.Size((1, 3, 16, 16)), "none") is None


def test_only_components_pushing_out_at_a_bound_are_dropped() -> None:
    torch.manual_seed(0)
    x = torch.rand(4000)
    x[::5], x[1::5] = 0.0, 1.0  # a fifth of the pixels at each bound
    x[2::50], x[3::50] = -0.1, 1.1  # and a few outside it (a box they must not leave further)
    direction = torch.randn(4000)
    direction[4::9] = 0.0
    expected = direction.clone()
    expected[((direction < 0) & (x <= 0)) | ((direction > 0) & (x >= 1))] = 0.0
    free = lbfgs.free_direction(direction.clone(), x, 0.0, 1.0)
    assert torch.equal(free, expected)
    # A component pushing into the box, or along it, is untouched, bit for bit.
    inside = (x > 0) & (x < 1)
    assert torch.equal(free[inside], direction[inside])
