"""`nst stylize --content FOLDER|GLOB`: one run folder per image, one bar, failures at the end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nst_cli.cli.base import app
from nst_cli.errors import ConfigError
from nst_cli.sweep.plan import content_files, plan_folder
from tests.conftest import make_image

runner = CliRunner()
TINY = ["--resolution", "48", "--steps", "4", "--save-every", "2", "--device", "cpu", "-q"]


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """Two photos, a damaged one, and a file that is not an image at all."""
    folder = tmp_path / "album"
    folder.mkdir()
    make_image(folder / "beach.png", (64, 48), seed=1)
    make_image(folder / "forest.jpg", (48, 64), seed=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not a photo")
    make_image(tmp_path / "style.png", (40, 40), seed=7)
    return folder


def summary(root: Path) -> dict[str, dict[str, str]]:
    with (root / "summary.csv").open() as fh:
        return {row["run"]: row for row in csv.DictReader(fh)}


@pytest.mark.slow
def test_a_folder_is_stylised_image_by_image_and_a_broken_one_does_not_stop_the_rest(
    album: Path, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    args = ["stylize", "--content", str(album), "--style", str(tmp_path / "style.png")]
    result = runner.invoke(app, [*args, "-o", str(root), *TINY])
    assert result.exit_code == 1, result.output
    for name in ("beach", "forest"):
        assert (root / name / "final.png").is_file()
        assert len(list((root / name / "frames").glob("step_*.png"))) == 3
        saved = yaml.safe_load((root / name / "config.yaml").read_text())
        # Each run folder records its own photo, so it resumes and re-runs like any other.
        assert Path(saved["content"]).name == ("beach.png" if name == "beach" else "forest.jpg")
    assert not (root / "notes").exists()  # only image files take part
    rows = summary(root)
    assert set(rows) == {"beach", "broken", "forest"}
    assert rows["broken"]["status"] == "failed"
    assert "broken.jpg: damaged or truncated image" in rows["broken"]["error"]
    assert rows["beach"]["status"] == rows["forest"]["status"] == "completed"
    assert "Traceback" not in result.output
    assert "1 of 3 runs failed" in result.output and "broken.jpg" in result.output

    # The same command again skips what finished and tries the broken image once more.
    finished = (root / "beach" / "final.png").stat().st_mtime_ns
    again = runner.invoke(app, [*args, "-o", str(root), *TINY])
    assert again.exit_code == 1 and "1 of 3 runs failed" in again.output
    assert (root / "beach" / "final.png").stat().st_mtime_ns == finished
    assert summary(root)["beach"]["status"] == "completed"


@pytest.mark.slow
def test_a_quoted_glob_picks_its_matches_only(album: Path, tmp_path: Path) -> None:
    root = tmp_path / "pngs"
    result = runner.invoke(
        app,
        ["stylize", "--content", str(album / "*.png"), "--style", str(tmp_path / "style.png"),
         "-o", str(root), *TINY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["beach"]


def test_the_default_batch_folder_is_named_after_the_photos_and_the_style(
    album: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root, runs = plan_folder(None, overrides={"content": str(album / "b*"), "style": "style.png"})
    assert root == Path("outputs/album_style")
    assert [run.name for run in runs] == ["beach", "broken"]
    assert [run.state for run in runs] == ["new", "failed"]
    assert runs[0].config.output_dir == root / "beach"


@pytest.mark.parametrize(
    ("content", "output", "message"),
    [
        ("empty", None, "matches no image files"),
        ("album/nothing-*.png", None, "matches no image files"),
        ("album", "result.png", "a folder run writes one run folder per image; give a folder"),
    ],
)
def test_folder_run_mistakes_are_one_line(
    album: Path, tmp_path: Path, content: str, output: str | None, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    args = ["stylize", "--content", str(tmp_path / content), "--style", str(tmp_path / "style.png")]
    args += ["-o", str(tmp_path / output)] if output else []
    result = runner.invoke(app, [*args, *TINY])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_a_problem_every_image_shares_is_said_once(album: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["stylize", "--content", str(album), "--style", str(tmp_path / "missing.png"), *TINY],
    )
    assert result.exit_code == 2
    assert result.output.count("missing.png") == 1 and "file not found" in result.output


def test_content_files_tells_one_image_from_a_batch(album: Path) -> None:
    assert content_files(album / "beach.png") is None
    make_image(album / "photo[1].png")  # a real file whose name looks like a pattern
    assert content_files(album / "photo[1].png") is None
    (album / "photo[1].png").unlink()
    assert [p.name for p in content_files(album) or []] == ["beach.png", "broken.jpg", "forest.jpg"]
    with pytest.raises(ConfigError, match="matches no image files"):
        content_files(album / "*.webp")


def test_resuming_a_batch_folder_says_how_to_continue_it(tmp_path: Path) -> None:
    (tmp_path / "album_out").mkdir()
    (tmp_path / "album_out" / "sweep.yaml").write_text("runs: {}\n")
    result = runner.invoke(app, ["stylize", "--resume", str(tmp_path / "album_out")])
    assert result.exit_code == 2
    assert "a sweep or folder-run folder; run the command that made it again" in result.output


def test_one_run_refuses_a_folder_and_says_what_runs_a_batch(album: Path, tmp_path: Path) -> None:
    from nst_cli import stylize
    from nst_cli.config.resolve import resolve_config

    config = resolve_config(
        None, [], {"content": str(album), "style": str(tmp_path / "style.png"), "output": "x"}
    )
    with pytest.raises(ConfigError, match="names several images; one run takes one"):
        stylize(config)


def test_run_folders_keep_readable_names(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("my car.png", "Ünï.PNG", "cat.png", "cat.jpg"):
        make_image(folder / name)
    make_image(tmp_path / "style.png", (40, 40), seed=7)
    _, runs = plan_folder(
        None, overrides={"content": str(folder), "style": str(tmp_path / "style.png")},
        output=tmp_path / "out",
    )  # fmt: skip
    assert [run.name for run in runs] == ["cat", "cat~2", "my-car", "Ünï"]


@pytest.mark.slow
def test_photos_added_later_are_stylised_by_the_same_command(album: Path, tmp_path: Path) -> None:
    (album / "broken.jpg").unlink()
    root = tmp_path / "out"
    args = ["stylize", "--content", str(album), "--style", str(tmp_path / "style.png")]
    assert runner.invoke(app, [*args, "-o", str(root), *TINY]).exit_code == 0
    finished = (root / "beach" / "final.png").stat().st_mtime_ns
    make_image(album / "lake.png", (64, 48), seed=5)
    again = runner.invoke(app, [*args, "-o", str(root), *TINY])
    assert again.exit_code == 0, again.output
    assert (root / "lake" / "final.png").is_file()
    assert (root / "beach" / "final.png").stat().st_mtime_ns == finished
    assert set(summary(root)) == {"beach", "forest", "lake"}


def test_output_in_the_config_file_names_the_batch_folder(album: Path, tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(f"content: album/*.png\nstyle: style.png\noutput: {tmp_path / 'mine'}\n")
    root, runs = plan_folder(config)
    assert root == tmp_path / "mine" and runs[0].config.output_dir == tmp_path / "mine" / "beach"
    root, _ = plan_folder(config, overrides={"output": str(tmp_path / "flag")})
    assert root == tmp_path / "flag"  # a flag still wins
