"""Coarse-to-fine schedule and presets: which sizes, how many steps each, what a preset sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from nst_cli.config.choices import PRESETS
from nst_cli.config.models import Config
from nst_cli.config.resolve import resolve_config
from nst_cli.core.schedule import FINAL_SCALE_TIME, auto_scales, split_steps
from nst_cli.errors import ConfigError


def test_auto_scales_single_up_to_384_then_root_two_steps() -> None:
    assert auto_scales(64) == [64]
    assert auto_scales(384) == [384]
    assert auto_scales(512) == [256, 362, 512]
    sizes = auto_scales(1024)
    assert sizes[0] == 256 and sizes[-1] == 1024
    ratios = [b / a for a, b in zip(sizes, sizes[1:], strict=False)]
    assert all(1.3 < r < 1.6 for r in ratios), ratios


def test_split_steps_gives_the_last_scale_most_of_the_time_and_keeps_the_total() -> None:
    sizes = [256, 362, 512]
    counts = split_steps(300, sizes)
    assert sum(counts) == 300
    # time ∝ steps × pixels: the last scale gets FINAL_SCALE_TIME of it, the others equal parts
    work = [c * s * s for c, s in zip(counts, sizes, strict=True)]
    assert work[-1] / sum(work) == pytest.approx(FINAL_SCALE_TIME, abs=0.01)
    assert work[0] / work[1] == pytest.approx(1.0, abs=0.05)
    # coarse steps are cheap: the first scale still takes more steps than the second
    assert counts[0] > counts[1] >= 1
    assert split_steps(160, sizes) == [60, 30, 70]
    assert split_steps(3, [10, 20, 30]) == [1, 1, 1]
    assert split_steps(7, [64]) == [7]


def test_split_steps_gives_every_scale_a_step_at_large_sizes() -> None:
    sizes = auto_scales(2048)
    counts = split_steps(40, sizes)
    assert sum(counts) == 40 and min(counts) >= 1
    work = [c * s * s for c, s in zip(counts, sizes, strict=True)]
    assert work[-1] == max(work)


def test_schedule_ranges_are_contiguous_and_end_at_total() -> None:
    config = Config(resolution=512, steps=[5, 6, 7])
    stages = config.schedule()
    assert [(s.size, s.start, s.end) for s in stages] == [
        (256, 0, 5),
        (362, 5, 11),
        (512, 11, 18),
    ]
    assert config.total_steps == 18 and stages[-1].is_last and not stages[0].is_last


def test_explicit_scales_below_resolution_end_at_resolution() -> None:
    assert Config(resolution=100, scales=[50]).scale_sizes() == [50, 100]
    assert Config(resolution=100, scales=[50, 100]).scale_sizes() == [50, 100]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["scales=[]"], "scales: empty list"),
        (["scales=[64, 128]"], "128 is above resolution 96"),
        (["scales=[64, 32]"], "must increase"),
        (["scales=[48]", "steps=[10, 20, 30]"], "3 numbers for 2 scales [48, 96]"),
        (["scales=[24, 48]", "steps=2"], "fewer than the 3 scales"),
        (["preset=turbo"], "preset"),
        (["steps=true"], "steps"),
    ],
)
def test_bad_schedules_are_one_clear_error(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(None, [*sets, "resolution=96"])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_resolves_to_its_documented_keys(preset: str) -> None:
    config = resolve_config(None, [f"preset={preset}"])
    data = config.to_yaml_dict()
    for key, value in PRESETS[preset].items():
        node = data
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert config.preset == preset


def test_explicit_keys_win_over_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("preset: quality\nsteps: 7\n")
    config = resolve_config(path)
    assert config.steps == 7 and config.scales == "auto"  # a preset sets the steps only
    assert resolve_config(path, overrides={"steps": 9}).steps == 9
    path.write_text("preset: quality\n")
    assert resolve_config(path).steps == PRESETS["quality"]["steps"] == 500


def test_presets_are_ordered_by_effort() -> None:
    steps = [PRESETS[name]["steps"] for name in ("fast", "balanced", "quality")]
    assert steps == sorted(steps) and len(set(steps)) == 3


def test_default_is_balanced_and_saved_config_reloads_identically(tmp_path: Path) -> None:
    config = resolve_config(None, [f"content={tmp_path}/a.png", f"style={tmp_path}/b.png"])
    assert config.preset == "balanced"
    path = tmp_path / "saved.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config.to_yaml_dict()))
    assert resolve_config(path).to_yaml_dict() == config.to_yaml_dict()


def test_too_few_steps_for_auto_scales_run_fewer_of_them() -> None:
    """`--resolution 1600 --steps 8` spread 8 steps over 6 scales (one or two each) and gave
    a soft, murky picture: auto runs at most one scale per MIN_STEPS_PER_SCALE steps."""
    full = auto_scales(1600)
    assert len(full) == 6
    few = Config(resolution=1600, steps=8)
    assert few.scale_sizes() == [1600]
    assert [s.end - s.start for s in few.schedule()] == [8]
    some = Config(resolution=1600, steps=30)
    assert some.scale_sizes() == [256, 640, 1600]
    assert min(s.end - s.start for s in some.schedule()) >= 2
    assert Config(resolution=1600, steps=60).scale_sizes() == full
    note = few.schedule_note()
    assert note is not None and "8 steps are too few for the 6 scales" in note
    assert "running 1600 px (one scale)" in note and "--steps 60" in note
    assert Config(resolution=512).schedule_note() is None  # the defaults: 160 steps, 3 scales
    assert Config(resolution=512, steps=[4, 3, 2]).schedule_note() is None  # the user's own split


def test_too_few_steps_for_explicit_scales_keep_them_and_say_what_to_change() -> None:
    config = Config(resolution=1600, scales=[400, 800], steps=8)
    assert config.scale_sizes() == [400, 800, 1600]
    note = config.schedule_note()
    assert note is not None and "--steps 30" in note and "scales: [1600]" in note
    assert Config(resolution=1600, scales=[1600], steps=2).schedule_note() is None  # one scale


def test_a_resumed_auto_run_keeps_the_scales_its_checkpoint_was_made_at(tmp_path: Path) -> None:
    """8 steps at 400 px ran one scale; --steps 30 would pick two, but the checkpoint is at
    400 px: the resumed run keeps [400], and the resume check accepts it."""
    from nst_cli.config.resolve import resume_config
    from nst_cli.io.rundir import RunDir
    from nst_cli.run.provenance import write_run_config
    from nst_cli.run.resume import check_resume_changes

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    first = Config(content=tmp_path / "c.png", style=tmp_path / "s.png", resolution=400, steps=8)
    assert first.scale_sizes() == [400] and Config(resolution=400, steps=30).scale_sizes() == [
        256,
        400,
    ]
    write_run_config(run, first, status="completed")
    resumed = resume_config(run.root, overrides={"steps": 30})
    assert resumed.scale_sizes() == [400] and resumed.total_steps == 30
    check_resume_changes(run, resumed)  # no "scales cannot change on resume"
