"""The evaluator's measures (core.measures) on cases whose answer is known, and `nst score`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli import app
from nst_cli.core import measures as score

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def _photo(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.open(SAMPLES / name).convert("RGB")
    if size is not None:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float64) / 255


def test_sliced_wasserstein_is_zero_for_one_cloud_and_the_shift_for_a_moved_one() -> None:
    cloud = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert score.sliced_wasserstein(cloud, cloud) == pytest.approx(0.0, abs=1e-9)
    shift = torch.tensor([3.0, 0.0, 4.0, 0.0])  # |v| = 5; along a random unit d: v·d, RMS |v|/√D
    moved = score.sliced_wasserstein(cloud + shift, cloud, projections=1024)
    assert moved == pytest.approx(5 / math.sqrt(4), rel=0.07)


def test_lab_of_known_colours() -> None:
    lab = score.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.1)
    assert lab[1] == pytest.approx([53.24, 80.09, 67.20], abs=0.2)
    assert lab[2] == pytest.approx([0, 0, 0], abs=0.1)


def test_palette_and_structure_tell_apart_what_they_should() -> None:
    rocket = _photo("rocket.jpg", (128, 96))
    coffee = _photo("coffee.png", (128, 96))
    assert score.palette_distance(rocket, rocket) == pytest.approx(0.0, abs=1e-9)
    # A grey version keeps the layout and loses the colours; another photo loses both.
    grey = np.repeat(rocket @ np.array([[0.299], [0.587], [0.114]]), 3, axis=-1)
    assert score.structure(rocket, rocket) == pytest.approx(1.0)
    assert score.structure(grey, rocket) > 0.95 > 0.5 > score.structure(coffee, rocket)
    assert score.palette_distance(grey, rocket) > 5


def test_a_painted_in_face_is_found_and_the_photos_own_is_not_new() -> None:
    astronaut = _photo("astronaut.png", (256, 256))
    rocket = _photo("rocket.jpg", (256, 256))
    found = score.faces(astronaut)
    assert found is not None, (
        "this OpenCV ships no face detectors (opencv-python-headless < 5 does)"
    )
    assert len(found) >= 1 and score.faces(rocket) == []
    assert score.new_faces(astronaut, astronaut) == []
    assert len(score.new_faces(astronaut, rocket) or []) >= 1


def test_style_distance_is_zero_for_the_painting_itself() -> None:
    features = {"relu1_1": torch.rand(1, 8, 16, 16)}
    assert score.style_distance(features, features)["relu1_1"] == pytest.approx(0.0, abs=1e-9)
    shifted = {"relu1_1": features["relu1_1"] + 1.0}
    assert score.style_distance(shifted, features)["relu1_1"] > 1.0


@pytest.mark.slow
def test_nst_score_reads_the_inputs_from_the_image_nst_wrote(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "r.png"
    made = runner.invoke(
        app,
        [
            "stylize", str(SAMPLES / "rocket.jpg"), str(SAMPLES / "astronaut.png"), "-o", str(out),
            "--resolution", "64", "--steps", "3", "--device", "cpu", "-q",
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["score", str(out), "--json"])
    assert result.exit_code == 0, result.output
    # (a note on stderr, e.g. rocket.jpg's Adobe RGB converted to sRGB, may come with it)
    measured = json.loads(next(x for x in result.output.splitlines() if x.startswith("{")))
    assert set(measured) >= {"style_swd", "palette_swd", "structure_ssim", "new_faces"}
    assert 0 < measured["structure_ssim"] <= 1 and measured["palette_swd"] > 0
    plain = runner.invoke(app, ["score", str(SAMPLES / "car.png")])
    assert plain.exit_code != 0 and "give --content and --style" in plain.output


@pytest.mark.slow
def test_a_scored_sweep_ranks_its_runs_by_the_measures(tmp_path: Path) -> None:
    import csv

    root = tmp_path / "sweep"
    args = ["sweep", "--content", str(SAMPLES / "rocket.jpg"), "--style"]
    args += [str(SAMPLES / "astronaut.png"), "--style-weights", "0.5,5", "--resolution", "48"]
    args += ["--steps", "3", "--device", "cpu", "-q", "--score", "-o", str(root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((root / "summary.csv").open()))
    assert len(rows) == 2 and all(float(r["style_swd"]) > 0 for r in rows)
    assert all(0 < float(r["structure_ssim"]) <= 1 for r in rows)
    page = (root / "index.html").read_text()
    assert "style_swd" in page and "palette_swd" in page


def test_a_face_on_its_side_or_upside_down_is_found_where_it_is() -> None:
    astronaut = _photo("astronaut.png", (256, 256))
    upright = score.faces(astronaut)
    for turns in (1, 2):
        turned = np.ascontiguousarray(np.rot90(astronaut, turns))
        found = score.faces(turned)
        assert found, f"no face found turned {turns} quarter turns"
        # The turned face's box, turned back, is where the upright one is.
        back = [score._unturned(b.x, b.y, b.width, b.height, turns, 256, 256) for b in found]
        assert any(a.overlaps(b) for a in back for b in upright or [])


def test_boxes_turn_back_exactly() -> None:
    image = np.zeros((60, 100))
    image[5:13, 10:30] = 1
    for turns in range(4):
        rows, columns = np.nonzero(np.rot90(image, turns))
        x, y = int(columns.min()), int(rows.min())
        w, h = int(columns.max()) - x + 1, int(rows.max()) - y + 1
        assert score._unturned(x, y, w, h, turns, 60, 100) == score.Box(10, 5, 20, 8)


def test_a_face_in_a_large_image_is_found_where_it_is() -> None:
    # The search runs on a copy at DETECT_SHORT_SIDE; the boxes come back in the image's own
    # coordinates.
    small, large = _photo("astronaut.png", (240, 240)), _photo("astronaut.png", (720, 720))
    found_small, found_large = score.faces(small), score.faces(large)
    assert found_small and found_large
    scaled = [score.Box(b.x * 3, b.y * 3, b.width * 3, b.height * 3) for b in found_small]
    assert all(any(a.overlaps(b) for a in found_large) for b in scaled)


def test_a_print_size_result_is_measured_as_its_screen_size_one(tmp_path: Path) -> None:
    from nst_cli.run.score import score_result

    photo, painting = SAMPLES / "rocket.jpg", SAMPLES / "strokes.png"
    image = Image.open(SAMPLES / "coffee.png").convert("RGB")
    screen, large = tmp_path / "screen.png", tmp_path / "large.png"
    image.resize((score.MEASURE_SIDE, 192), Image.Resampling.LANCZOS).save(screen)
    image.resize((4 * score.MEASURE_SIDE, 768), Image.Resampling.LANCZOS).save(large)
    a, b = score_result(screen, photo, painting), score_result(large, photo, painting)
    assert a.style > 0.05
    assert b.style == pytest.approx(a.style, rel=0.03)
    assert b.palette == pytest.approx(a.palette, rel=0.05)


def test_the_palette_distance_converts_only_the_positions_it_compares() -> None:
    # Picking the positions before the Lab conversion gives the distance of all of them.
    rocket, coffee = _photo("rocket.jpg", (160, 120)), _photo("coffee.png", (160, 120))
    every = score.sliced_wasserstein(
        torch.from_numpy(score.srgb_to_lab(rocket).reshape(-1, 3)),
        torch.from_numpy(score.srgb_to_lab(coffee).reshape(-1, 3)),
    )
    assert score.palette_distance(rocket, coffee) == pytest.approx(every, rel=1e-9)


def test_a_painting_changed_on_disk_is_measured_again(tmp_path: Path) -> None:
    # The painting's features are kept between calls (a sweep scores many results of one
    # painting), but never past a change to its file.
    import os

    from nst_cli.run.score import score_result

    result, painting = tmp_path / "result.png", tmp_path / "painting.png"
    Image.open(SAMPLES / "coffee.png").convert("RGB").resize((96, 64)).save(result)
    Image.open(SAMPLES / "strokes.png").convert("RGB").resize((96, 96)).save(painting)
    first = score_result(result, SAMPLES / "rocket.jpg", painting).style
    assert score_result(result, SAMPLES / "rocket.jpg", painting).style == first
    Image.open(SAMPLES / "swirls.png").convert("RGB").resize((96, 96)).save(painting)
    os.utime(painting, ns=(0, 0))  # whatever the file's time says
    assert score_result(result, SAMPLES / "rocket.jpg", painting).style != first


def test_an_image_too_small_to_score_is_one_clear_error(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    Image.open(SAMPLES / "coffee.png").convert("RGB").resize((12, 9)).save(tiny)
    args = ["score", str(tiny), "--content", str(SAMPLES / "coffee.png")]
    result = CliRunner().invoke(app, [*args, "--style", str(SAMPLES / "fluid.png")])
    assert result.exit_code != 0
    assert "12×9 px is too small to score" in result.output
    assert "Traceback" not in result.output


def test_a_face_is_counted_only_where_a_second_detector_agrees() -> None:
    import cv2

    folder = Path(cv2.data.haarcascades)
    confirmer = cv2.CascadeClassifier(str(folder / score.CASCADES[next(iter(score.CASCADES))]))
    astronaut = _photo("astronaut.png", (240, 240))
    grey = np.clip(astronaut @ np.array([0.299, 0.587, 0.114]) * 255, 0, 255).astype(np.uint8)
    (face,) = [b for b in score.faces(astronaut) or [] if b.width < 120]
    assert score._confirmed(confirmer, grey, face.x, face.y, face.width, face.height)
    # The same box over a texture with no face in it is not confirmed.
    strokes = _photo("strokes.png", (240, 240))
    texture = np.clip(strokes @ np.array([0.299, 0.587, 0.114]) * 255, 0, 255).astype(np.uint8)
    assert not score._confirmed(confirmer, texture, face.x, face.y, face.width, face.height)


def test_a_small_painting_is_measured_at_the_results_size(tmp_path: Path) -> None:
    # A run uses a small painting upscaled to the photo's size; measured at its own 20 px,
    # its deep layers would be a point or two and the distance would be off the scale.
    from nst_cli.run.score import score_result

    result, small, full = tmp_path / "result.png", tmp_path / "small.png", tmp_path / "full.png"
    Image.open(SAMPLES / "coffee.png").convert("RGB").resize((96, 64)).save(result)
    strokes = Image.open(SAMPLES / "strokes.png").convert("RGB")
    strokes.resize((20, 20)).save(small)
    strokes.resize((96, 96)).save(full)
    near = score_result(result, SAMPLES / "rocket.jpg", full).style
    assert score_result(result, SAMPLES / "rocket.jpg", small).style < 2 * near


def test_a_missing_result_is_named_as_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(tmp_path / "gone.png")])
    assert result.exit_code != 0
    assert "gone.png: file not found" in result.output and "--content" not in result.output


def test_a_blends_result_is_measured_against_its_first_painting_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import yaml

    from nst_cli.io.files import save_png
    from nst_cli.run.score import inputs_of

    settings = {
        "content": str(SAMPLES / "rocket.jpg"),
        "style": [{"path": str(SAMPLES / "fluid.png")}, {"path": str(SAMPLES / "swirls.png")}],
    }
    result = tmp_path / "blend.png"
    save_png(Image.new("RGB", (64, 48)), result, {"nst:config": yaml.safe_dump(settings)})
    with caplog.at_level(logging.INFO):
        assert inputs_of(result) == (SAMPLES / "rocket.jpg", SAMPLES / "fluid.png")
    assert "a blend of 2 paintings; measured against the first" in caplog.text


def test_a_photo_of_another_shape_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from nst_cli.run.score import score_result

    result = tmp_path / "result.png"
    coffee = Image.open(SAMPLES / "coffee.png").convert("RGB")  # 3:2
    coffee.resize((64, 43)).save(result)  # as a 64 px run of it rounds
    with caplog.at_level(logging.WARNING):
        score_result(result, SAMPLES / "coffee.png", SAMPLES / "strokes.png")
        assert "another shape" not in caplog.text
        score_result(result, SAMPLES / "astronaut.png", SAMPLES / "strokes.png")  # square
    assert "astronaut.png: 512×512 px, another shape than the result's 64×43" in caplog.text


def test_the_even_subsample_of_twenty_million_points_stays_in_range() -> None:
    """A ~20 MP result: a float32 linspace rounded the last index past the end (IndexError)."""
    points = torch.arange(20_000_000, dtype=torch.int32).unsqueeze(1)  # 5000×4000 px
    sample = score._subsample(points)
    assert len(sample) == score.MAX_POINTS
    assert int(sample[0]) == 0 and int(sample[-1]) == 19_999_999
    assert bool((sample[1:] > sample[:-1]).all())  # evenly strided, no repeats


def test_score_of_an_oversized_image_names_a_flag_score_has(tmp_path: Path) -> None:
    """The refusal advised --allow-large, which `nst score` did not accept; now it does."""
    big = tmp_path / "big.png"
    Image.new("RGB", (10_001, 10_000), (90, 120, 150)).save(big)
    refused = CliRunner().invoke(app, ["score", str(big)])
    assert refused.exit_code == 2 and "--allow-large" in refused.output
    accepted = CliRunner().invoke(app, ["score", str(big), "--allow-large"])
    assert "No such option" not in accepted.output and "no such option" not in accepted.output
    assert "over the 100,000,000-pixel limit" not in accepted.output


def test_a_face_two_detectors_find_is_one_face(monkeypatch: pytest.MonkeyPatch) -> None:
    # The people and cat detectors, or two turns, can find the same thing (a painted wheel
    # was counted as two new faces): overlapping finds are one face, apart ones are two.
    calls: list[int] = []
    answers = {0: [(40, 40, 60, 60), (150, 150, 40, 40)], 4: [(44, 38, 58, 58)]}

    class Detector:  # the people detector upright (call 0), then the cat one upright (4)
        def detectMultiScale(self, grey, *args, **kwargs):  # noqa: N802 - OpenCV's name
            calls.append(len(calls))
            return answers.get(calls[-1], [])

    if score.faces(_photo("rocket.jpg", (64, 64))) is None:
        pytest.skip("this OpenCV ships no face detectors")
    monkeypatch.setattr(score, "_cascade", lambda path: Detector())
    monkeypatch.setattr(score, "_confirmed", lambda *args: True)
    found = score.faces(np.zeros((240, 240, 3)))
    assert found is not None and len(found) == 2
    assert not found[0].overlaps(found[1])
