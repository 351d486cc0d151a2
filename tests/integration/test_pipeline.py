"""stylize() as a whole: coarse-to-fine runs, resume across scales, balanced default losses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_cli import stylize
from nst_cli.config.resolve import resolve_config
from nst_cli.core.features import caffe_state_dict
from nst_cli.errors import ConfigError
from nst_cli.io.losslog import read_loss_rows
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import images_at, initial_image, load_inputs
from nst_cli.run.losses import build_loss

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _two_scale_config(tiny_config: Path, output: Path, **overrides):
    return resolve_config(
        tiny_config,
        ["scales=[32, 64]", "steps=[3, 3]", "save_every=2"],
        {"output": str(output), **overrides},
    )


def test_two_scales_end_at_resolution_with_frames_from_both(tiny_config: Path, tmp_path: Path):
    config = _two_scale_config(tiny_config, tmp_path / "run")
    result = stylize(config)
    assert result.status == "completed" and result.steps == 6
    with Image.open(result.final_image) as final:
        assert max(final.size) == 64
    scales = {}
    for step in (0, 2, 4, 6):
        with Image.open(tmp_path / "run" / "frames" / f"step_{step:06d}.png") as frame:
            assert frame.size == (64, 48)  # every frame at the final size
            scales[step] = int(frame.info["nst:scale"])
    assert scales == {0: 32, 2: 32, 4: 64, 6: 64}
    rows = read_loss_rows(tmp_path / "run" / "losses.csv")
    assert [int(r["step"]) for r in rows] == list(range(7))
    assert [int(r["scale"]) for r in rows] == [32, 32, 32, 64, 64, 64, 64]


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [2, 3, 4])
def test_resume_across_the_scale_boundary_matches_a_straight_run(
    tiny_config: Path, tmp_path: Path, stop_at: int
):
    overrides = {"seed": 3, "checkpoint": "exact"}
    straight = stylize(_two_scale_config(tiny_config, tmp_path / "straight", **overrides))
    seen: list[int] = []
    config = _two_scale_config(tiny_config, tmp_path / "split", save_every=1, **overrides)

    def record(event) -> None:
        seen.append(event.step)

    first = stylize(
        config, callbacks=[record], should_stop=lambda: bool(seen) and seen[-1] >= stop_at - 1
    )
    assert first.status == "interrupted" and first.steps == stop_at
    second = stylize(config, resume=True)
    assert second.status == "completed" and second.steps == 6
    a, b = (np.asarray(Image.open(r.final_image), dtype=np.int16) for r in (straight, second))
    assert np.abs(a - b).max() <= 1  # exact up to 8-bit rounding
    rows = read_loss_rows(tmp_path / "split" / "losses.csv")
    assert [int(r["step"]) for r in rows] == list(range(7))


@pytest.mark.slow
def test_a_resumed_run_does_not_hold_the_saved_history_twice(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Once the optimiser has replaced the checkpoint's pairs, nothing else keeps them: at
    2048 px a history of 20 pairs is ~2 GB."""
    import gc
    import weakref

    from nst_cli.run import resume

    config = resolve_config(
        tiny_config, ["steps=14", "optimizer.history_size=2"], {"output": str(tmp_path / "r")}
    )
    seen: list[int] = []
    stylize(config, callbacks=[lambda e: seen.append(e.step)], should_stop=lambda: len(seen) > 3)
    saved: list[weakref.ref] = []
    load = resume.load_checkpoint

    def remember(path):
        checkpoint = load(path)
        pairs = checkpoint["optimizer"]["state"][0]
        saved.extend(weakref.ref(t) for key in ("s", "y") for t in pairs[key])
        return checkpoint

    monkeypatch.setattr(resume, "load_checkpoint", remember)
    alive: dict[int, int] = {}

    def count(event) -> None:
        gc.collect()
        alive[event.step] = sum(ref() is not None for ref in saved)

    assert stylize(config, callbacks=[count], resume=True).steps == 14
    assert saved and alive[min(alive)] == len(saved)  # the resumed optimiser starts from them
    assert alive[14] == 0  # and, replaced by newer pairs, they are gone


def test_resume_with_fewer_steps_than_done_is_refused(tiny_config: Path, tmp_path: Path):
    config = _two_scale_config(tiny_config, tmp_path / "run")
    stylize(config)
    shorter = resolve_config(
        tiny_config, ["scales=[32, 64]", "steps=[2, 2]"], {"output": str(tmp_path / "run")}
    )
    with pytest.raises(Exception, match="already did 6 steps"):
        stylize(shorter, resume=True)


def _initial_style_shares(weights: str, pair: tuple[str, str]) -> dict[str, float]:
    config = resolve_config(
        None,
        [f"model.weights={weights}"],
        {"content": str(SAMPLES / pair[0]), "style": str(SAMPLES / pair[1]), "resolution": 64},
    )
    cache = ModelCache()
    inputs = load_inputs(config)
    extractor = cache.extractor(
        config, [*config.layers.content, *config.layers.style], "cpu", "fp32"
    )
    content, style = images_at(config, inputs, 64)
    loss = build_loss(config, extractor, content, style, cache, 64)
    image = initial_image(config, content, style)
    with torch.no_grad():
        terms = loss(extractor(image, loss.layers), image).as_floats()
    per_layer = {k: v for k, v in terms.items() if k.startswith("style.")}
    total = sum(per_layer.values())
    return {k: v / total for k, v in per_layer.items()}


@pytest.fixture(scope="module")
def torchvision_layout_weights(tmp_path_factory) -> Path:
    """The Caffe weights re-saved as a torchvision vgg19() state dict (run with torchvision's
    preprocessing: another feature scale, as a user's .pth would have)."""
    path = tmp_path_factory.mktemp("weights") / "vgg19_tv_layout.pth"
    torch.save({f"features.{k}": v for k, v in caffe_state_dict().items()}, path)
    return path


@pytest.mark.parametrize(
    "pair", [("car.png", "fluid.png"), ("chelsea.png", "swirls.png"), ("coffee.png", "strokes.png")]
)
@pytest.mark.parametrize("source", ["caffe", "pth"])
def test_no_style_layer_owns_the_default_style_loss(source, pair, torchvision_layout_weights):
    weights = "caffe" if source == "caffe" else str(torchvision_layout_weights)
    shares = _initial_style_shares(weights, pair)
    assert len(shares) == 5
    assert max(shares.values()) <= 0.5, shares


@pytest.mark.slow
def test_same_style_weight_means_the_same_on_both_weight_conventions(
    torchvision_layout_weights, tmp_path: Path
):
    # Caffe input (0-255, BGR) vs the same network fed torchvision-style input: features ~60×
    # apart. With normalised losses one β must give a similar balance after the same steps
    # (raw, the style term alone would differ by ~60⁴ and one run would ignore its content).
    finals = {}
    for name, weights in (("caffe", "caffe"), ("pth", str(torchvision_layout_weights))):
        config = resolve_config(
            None,
            [f"model.weights={weights}", "save_every=1000"],
            {
                "content": str(SAMPLES / "car.png"),
                "style": str(SAMPLES / "fluid.png"),
                "resolution": 64,
                "steps": 15,
                "output": str(tmp_path / name),
                "device": "cpu",
            },
        )
        finals[name] = stylize(config).losses
    for term in ("content", "style"):
        ratio = finals["caffe"][term] / finals["pth"][term]
        assert 0.5 < ratio < 2.0, (term, finals)


@pytest.mark.slow
def test_resume_refuses_settings_it_would_not_honour(tiny_config: Path, tmp_path: Path):
    stylize(resolve_config(tiny_config, [], {"output": str(tmp_path / "run")}))
    saved = (tmp_path / "run" / "config.yaml").read_text()
    for sets, key in (
        (["optimizer.lr=0.001"], "optimizer.lr"),
        (["optimizer.name=adam"], "optimizer.name"),
        (["layers.style={relu1_1: 1}"], "layers.style"),
    ):
        changed = resolve_config(
            tmp_path / "run" / "config.yaml", sets, {"output": str(tmp_path / "run")}
        )
        with pytest.raises(Exception, match=f"{key} cannot change on resume"):
            stylize(changed, resume=True)
        assert (tmp_path / "run" / "config.yaml").read_text() == saved  # nothing rewritten
    longer = resolve_config(tmp_path / "run" / "config.yaml", ["steps=8", "save_every=4"])
    assert stylize(longer, resume=True).steps == 8  # steps and save_every may change


@pytest.mark.slow
def test_the_next_scale_starts_with_the_curvature_pairs_unless_told_not_to(
    tiny_config: Path, tmp_path: Path
):
    rows = {}
    for carry in (True, False):
        config = _two_scale_config(
            tiny_config, tmp_path / str(carry), optimizer={"carry_history": carry}
        )
        stylize(config)
        rows[carry] = [
            float(r["total"]) for r in read_loss_rows(tmp_path / str(carry) / "losses.csv")
        ]
    # Steps 0-3: the first scale, and the second's start (the same upsampled image) ...
    assert rows[True][:4] == rows[False][:4]
    # ... then the second scale's first step follows the carried model, not a gradient step.
    assert rows[True][4] != rows[False][4]
    assert all(math.isfinite(v) for v in rows[True])


def test_a_run_saved_before_carry_history_resumes_without_it(tiny_config: Path, tmp_path: Path):
    import yaml

    run = tmp_path / "run"
    stylize(_two_scale_config(tiny_config, run))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"].pop("carry_history") is True
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert resolve_config(run / "config.yaml").optimizer.carry_history is False
    assert resolve_config(tiny_config).optimizer.carry_history is True


def test_auto_preconditions_the_first_scale_fully_and_later_ones_lightly(
    tiny_config: Path, tmp_path: Path
):
    """The decision per scale (Config.preconditioner), and that it reaches the optimiser:
    the checkpoint of a run stopped in its first scale, and of the finished run (its last
    scale), record the preconditioner each scale's L-BFGS ran with."""
    from nst_cli.io.checkpoints import load_checkpoint

    cases = {
        "one": (["scales=[64]"], ["pyramid"]),
        "two": (["scales=[32, 64]", "steps=[3, 3]"], ["pyramid", "light-pyramid"]),
        "forced": (["scales=[32, 64]", "steps=[3, 3]", "optimizer.precondition=pyramid"],
                   ["pyramid", "pyramid"]),
        "off": (["scales=[64]", "optimizer.precondition=none"], ["none"]),
    }  # fmt: skip
    for name, (sets, expected) in cases.items():
        config = resolve_config(
            tiny_config, [*sets, "save_every=1"], {"output": str(tmp_path / name)}
        )
        assert [config.preconditioner(i) for i in range(len(expected))] == expected, name
        steps = iter(range(100))
        stylize(config, should_stop=lambda steps=steps: next(steps) >= 2)  # in the first scale
        checkpoint = tmp_path / name / "checkpoint.pt"
        first = load_checkpoint(checkpoint)["optimizer"]["param_groups"][0]["precondition"]
        stylize(config, resume=True)
        last = load_checkpoint(checkpoint)["optimizer"]["param_groups"][0]["precondition"]
        assert [first, last] == [expected[0], expected[-1]], name


@pytest.mark.slow
def test_a_run_saved_before_a_key_existed_resumes_and_reruns_with_its_earlier_value(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import yaml

    from nst_cli.config import choices as config_module

    run = tmp_path / "run"
    stylize(resolve_config(tiny_config, [], {"output": str(run)}))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    default = saved["optimizer"].pop("precondition")  # as an nst before the key saved it
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    earlier = "pyramid" if default == "none" else "none"  # whichever today's default is not
    monkeypatch.setitem(config_module.INTRODUCED, "optimizer.precondition", earlier)

    resumed = resolve_config(run / "config.yaml", ["steps=8"])
    assert resumed.optimizer.precondition == earlier
    assert stylize(resumed, resume=True).steps == 8  # not "cannot change on resume"
    # A user's own config without the key gets today's default.
    assert resolve_config(tiny_config).optimizer.precondition == default


def test_resume_without_checkpoint_is_refused_not_restarted(tiny_config: Path, tmp_path: Path):
    stylize(resolve_config(tiny_config, [], {"output": str(tmp_path / "run")}))
    (tmp_path / "run" / "checkpoint.pt").unlink()
    before = (tmp_path / "run" / "final.png").read_bytes()
    with pytest.raises(Exception, match="no checkpoint.pt"):
        stylize(resolve_config(tmp_path / "run" / "config.yaml"), resume=True)
    assert (tmp_path / "run" / "final.png").read_bytes() == before


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_second_process_cannot_write_into_a_running_folder(tiny_config: Path, tmp_path: Path):
    import subprocess
    import sys

    from nst_cli.io.rundir import RunDir

    run_dir = RunDir(tmp_path / "busy")
    with run_dir.lock():
        # Another process (flock locks are per open file, so a thread would not do).
        code = subprocess.run(
            [sys.executable, "-m", "nst_cli", "stylize", "-c", str(tiny_config), "-o",
             str(run_dir.root), "-q"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert code.returncode == 1
    assert "in use by another nst process" in code.stderr
    assert not run_dir.final.exists()
    # Released with the holder: now the run goes through.
    assert (
        stylize(resolve_config(tiny_config, [], {"output": str(run_dir.root)})).status
        == "completed"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "pair", [("chelsea.png", "fluid.png"), ("rocket.jpg", "swirls.png"), ("car.png", "strokes.png")]
)
def test_defaults_never_blow_up_at_small_sizes(pair, tmp_path: Path):
    # chelsea × fluid at 96 px used to rise ×40 at step 2 and end in colour noise.
    config = resolve_config(
        None,
        ["save_every=1000"],
        {
            "content": str(SAMPLES / pair[0]),
            "style": str(SAMPLES / pair[1]),
            "resolution": 64,
            "steps": 40,
            "output": str(tmp_path / "run"),
            "device": "cpu",
        },
    )
    stylize(config)
    totals = [row["total"] for row in read_loss_rows(tmp_path / "run" / "losses.csv")]
    worst_rise = max(b / a for a, b in zip(totals, totals[1:], strict=False))
    assert worst_rise < 1.5, worst_rise
    assert totals[-1] < 0.5 * totals[0]


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize(
    "sets", [["resolution=20000", "steps=40"], ["resolution=64", "style_scale=300"], ["steps=2"]]
)
def test_oversized_runs_are_refused_before_any_allocation(sets, tiny_config: Path, tmp_path: Path):
    import subprocess
    import sys

    # Under a 4 GB address-space limit: a refusal that came after allocating would crash
    # with MemoryError instead of printing the estimate. The last case is the control: a
    # normal run does fit under the limit.
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from nst_cli.cli import main\n"
        "sys.argv = ['nst', 'stylize', '-c', sys.argv[1], '-o', sys.argv[2], '-q', "
        + ", ".join(f"'--set', '{s}'" for s in sets)
        + "]\nmain()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_config), str(tmp_path / "big")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},  # its thread buffers reserve GBs
    )  # fmt: skip
    if sets == ["steps=2"]:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stderr
    assert "GiB" in done.stderr and "--allow-large" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "big").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("step", -3, "step is -3"),
        ("step", "12", "step is '12'"),
        ("stage", True, "stage is True"),
        ("image", torch.zeros(3, 8, 8), r"no \[1, 3, H, W\] image"),
        ("image", torch.full((1, 3, 8, 8), float("nan")), "not finite"),
        ("version", 99, "version 99"),
        ("optimizer", [1, 2], "optimiser state is not a mapping"),
    ],
)
def test_tampered_checkpoint_is_one_clear_error(
    tiny_config: Path, tmp_path: Path, field: str, value, message: str
):
    from nst_cli.errors import CheckpointError

    config = resolve_config(tiny_config, [], {"output": str(tmp_path / "run")})
    stylize(config)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state[field] = value
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message):
        stylize(config, resume=True)


def test_a_tiny_style_is_upscaled_with_a_warning(tiny_config: Path, tmp_path: Path, caplog):
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(one)
    config = resolve_config(tiny_config, [f"style={one}"], {"output": str(tmp_path / "r")})
    with caplog.at_level("WARNING", logger="nst_cli"):
        load_inputs(config)
    assert any("style image" in r.getMessage() and "1×1" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_resume_is_one_library_call_on_the_run_folder(tiny_config: Path, tmp_path: Path):
    seen: list[int] = []
    config = resolve_config(tiny_config, [], {"output": str(tmp_path / "run")})
    first = stylize(
        config, callbacks=[lambda e: seen.append(e.step)], should_stop=lambda: 2 in seen
    )
    assert first.status == "interrupted"
    second = stylize(tmp_path / "run", resume=True)  # what `nst stylize --resume DIR` does
    assert second.status == "completed" and second.steps == 6 and second.steps_run < 6
    with pytest.raises(Exception, match="no config.yaml there"):
        stylize(tmp_path, resume=True)


def test_memory_low_is_offered_where_it_fits_and_then_accepted(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nst_cli.config.resolve import resolve_config
    from nst_cli.run import inputs as pipeline
    from nst_cli.run import memory

    # 64×48 content at 960 px: 691,200 px to optimise, the 40×40 style at 921,600 px; in
    # float32, normal: 1 GiB + 691,200 × 5000 B + 921,600 × 1000 B = 5.08 GiB; low: 4.37 GiB.
    monkeypatch.setattr(
        memory, "memory_limit", lambda device, max_memory=None: (int(4.8 * 2**30), "the test")
    )
    sets = ["resolution=960", "tile=off", "precision=fp32"]
    normal = resolve_config(tiny_config, sets, {"output": "x"})
    with pytest.raises(ConfigError) as refused:
        pipeline.load_inputs(normal)
    message = str(refused.value)
    assert "needs about 5.1 GiB, more than the 4.8 GiB of the test" in message
    assert "set memory: low (about 4.4 GiB, slower), set tile: auto" in message
    low = resolve_config(tiny_config, [*sets, "memory=low"], {"output": "x"})
    pipeline.load_inputs(low)  # fits: no error
    # bfloat16 activations take less: the same run fits there as it is.
    bf16 = resolve_config(tiny_config, ["resolution=960", "tile=off", "precision=bf16"], {})
    pipeline.load_inputs(bf16)

    monkeypatch.setattr(
        memory, "memory_limit", lambda device, max_memory=None: (int(3.0 * 2**30), "the test")
    )
    with pytest.raises(ConfigError) as neither:
        pipeline.load_inputs(normal)
    assert "memory: low" not in str(neither.value)  # it would not fit either
    # 1 GiB + 5000·r·0.75r + 1000·r² ≤ 3 GiB: r ≤ 672.3, so 672 in steps of 16.
    assert "at most about 672 px fits" in str(neither.value)


@pytest.mark.slow
def test_the_python_api_prints_progress_when_asked(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nst_cli import resolve_config, stylize

    config = resolve_config(tiny_config, ["steps=12"], {"output": str(tmp_path / "quiet")})
    stylize(config)
    assert "stylize step" not in capsys.readouterr().err  # silent unless asked
    config = resolve_config(tiny_config, ["steps=12"], {"output": str(tmp_path / "shown")})
    stylize(config, progress=True)
    lines = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("stylize step")
    ]
    assert [line.split()[2] for line in lines] == ["0/12", "10/12", "12/12"]
    assert "total" in lines[-1] and "it/s" in lines[-1]
