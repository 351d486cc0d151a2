"""The studio's form as nst reads it (no Gradio needed): the advanced keys come from the config
models, changed keys become `--set` items, the command line makes the same run, and a run
reads only the studio's own folders."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nst_cli.cli import app
from nst_cli.config.docs import leaf_fields
from nst_cli.config.models import Config
from nst_cli.errors import ConfigError, ImageError
from nst_cli.studio.runs import list_runs
from nst_cli.studio.settings import (
    MAIN_KEYS,
    PATH_KEYS,
    Request,
    advanced_fields,
    changed_sets,
    check_inside,
)
from nst_cli.studio.uploads import Uploads


def test_the_advanced_fold_holds_every_other_config_key() -> None:
    keys = [field.key for field in advanced_fields()]
    every = [key for key, _ in leaf_fields(Config)]
    assert sorted(keys + list(MAIN_KEYS) + list(PATH_KEYS)) == sorted(every)
    by_key = {field.key: field for field in advanced_fields()}
    assert by_key["optimizer.name"].choices == ("lbfgs", "adam")
    assert by_key["compile"].choices == ("true", "false")
    assert by_key["steps"].choices is None  # an int, or a list per scale: typed as YAML
    assert by_key["loss.objects"].description  # the model's own words


def test_only_changed_keys_become_set_items() -> None:
    defaults = {field.key: field.default for field in advanced_fields()}
    answers = {**defaults, "steps": "12", "optimizer.name": "adam", "seed": " 0 "}
    assert sorted(changed_sets(answers)) == ["optimizer.name=adam", "steps=12"]
    with pytest.raises(ConfigError, match="not a config key"):
        changed_sets({"content": "elsewhere.png"})


def test_the_command_line_makes_the_same_config(tmp_path: Path) -> None:
    request = Request(
        Path("samples/chelsea.png"),
        Path("samples/cubist.png"),
        tmp_path / "out",
        {"preset": "fast", "weights.style": 5.0, "color": "luminance", "resolution": 512,
         "style_scale": 1.0},
        ["optimizer.name=adam", "layers.style={relu1_1: 1, relu2_1: 0.5}"],
    )  # fmt: skip
    words = shlex.split(request.command_line())
    assert words[:2] == ["nst", "stylize"]
    assert "--resolution" not in words  # the default is left out
    printed = CliRunner().invoke(app, [*words[1:], "--print-config"])
    assert printed.exit_code == 0, printed.output
    ours = request.config([tmp_path, Path("samples")]).to_yaml_dict()
    theirs = yaml.safe_load(printed.output)
    for key in ("preset", "weights", "color", "resolution", "optimizer", "layers", "output"):
        assert theirs[key] == ours[key], key


def test_the_sweep_command_line_leaves_the_swept_key_to_the_values(tmp_path: Path) -> None:
    request = Request(Path("a.png"), Path("b.png"), tmp_path / "x", {"color": "luminance"}, [])
    words = shlex.split(request.sweep_command_line("weights.style", "1,4", tmp_path / "x"))
    assert words[:2] == ["nst", "sweep"]
    assert words[words.index("--set") : words.index("--set") + 2] == ["--set", "color=luminance"]
    assert "--param" in words and "weights.style=1,4" in words and "--score" in words


def test_a_run_may_read_only_the_studio_folders(tmp_path: Path) -> None:
    inside, outside = tmp_path / "outputs", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    config = Config(content=outside / "a.png", style=inside / "b.png", output=inside / "run")
    with pytest.raises(ConfigError, match="reads only its uploads"):
        check_inside(config, [inside])
    linked = inside / "link.png"
    linked.symlink_to(outside / "a.png")
    with pytest.raises(ConfigError, match="reads only"):  # a link out of the folder counts
        check_inside(Config(content=linked, style=inside / "b.png", output=inside / "r"), [inside])
    with pytest.raises(ConfigError, match="writes only into"):
        check_inside(Config(content=inside / "a.png", style=inside / "b.png", output=outside), [inside])  # fmt: skip


def test_uploads_are_checked_and_kept_by_content(tmp_path: Path, content_path: Path) -> None:
    uploads = Uploads(tmp_path / "outputs", None)
    kept = uploads.adopt(content_path, "content")
    assert kept.parent == tmp_path / "outputs" / ".studio" / "uploads"
    assert kept.read_bytes() == content_path.read_bytes()
    assert uploads.adopt(content_path, "content") == kept  # the same image: one file
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="content image broken.png: "):
        uploads.adopt(tmp_path / "broken.png", "content")
    with pytest.raises(ImageError, match="no photo given"):
        uploads.adopt(None, "content")


def test_a_sample_sent_back_is_named_by_its_own_path(tmp_path: Path, content_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    sample = samples / "photo.png"
    sample.write_bytes(content_path.read_bytes())
    uploads = Uploads(tmp_path / "outputs", samples)
    assert uploads.adopt(content_path, "content") == sample


def test_runs_are_listed_whoever_made_them_and_links_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    run = root / "sweep" / "a_run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "resolution: 64\nrun: {nst_version: 0.1.0, status: interrupted, steps_done: 3}\n"
    )
    (root / "not_nst").mkdir()
    (root / "not_nst" / "config.yaml").write_text("resolution: 64\n")
    (root / "out").symlink_to(run, target_is_directory=True)
    entries = list_runs(root)
    assert [e.name for e in entries] == ["sweep/a_run"]
    assert entries[0].status == "interrupted" and entries[0].resumable
    assert entries[0].image is None
