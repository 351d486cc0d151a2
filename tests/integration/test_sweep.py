"""`nst sweep`: per-run folders, grid, summary, skip-on-rerun, dry-run, the HTML index."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli.base import app
from nst_cli.errors import ConfigError
from nst_cli.sweep.grid import parse_param, split_values

runner = CliRunner()


def read_summary(root: Path) -> list[dict[str, str]]:
    with (root / "summary.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    from tests.conftest import make_image

    base = tmp_path_factory.mktemp("sweep")
    make_image(base / "content.png", (64, 48), seed=1)
    make_image(base / "style.png", (48, 48), seed=7)
    config = base / "tiny.yaml"
    config.write_text(
        "content: content.png\nstyle: style.png\nresolution: 48\nsteps: 12\nsave_every: 6\ndevice: cpu\n"
    )
    root = base / "out"
    result = runner.invoke(
        app, ["sweep", "-c", str(config), "--style-weights", "0.01,0.1,10", "-o", str(root)]
    )
    return config, root, result.output


@pytest.mark.slow
def test_three_runs_grid_and_summary(swept: tuple[Path, Path, str]) -> None:
    _, root, output = swept
    names = ["style_weight=0.01", "style_weight=0.1", "style_weight=10"]
    for name in names:
        assert (root / name / "final.png").is_file()
        assert (root / name / "losses.csv").is_file()
    rows = read_summary(root)
    assert [r["run"] for r in rows] == names
    assert [r["weights.style"] for r in rows] == ["0.01", "0.1", "10"]
    style = [float(r["style"]) for r in rows]
    # more style weight, less style loss (from 1 up style dominates, and runs end within 1%
    # of each other, too close to order: hence 0.01, 0.1 and 10)
    assert style[0] > style[1] > style[2]
    assert all(r["status"] == "completed" for r in rows)
    with Image.open(root / "grid.png") as grid:
        assert grid.size == (3 * 256, 256 + 20)  # one row, three columns
    assert "grid" in output and "3 runs" in output


def test_second_invocation_skips_finished_runs(swept: tuple[Path, Path, str]) -> None:
    config, root, _ = swept
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/final.png")}
    result = runner.invoke(
        app, ["sweep", "-c", str(config), "--style-weights", "0.01,0.1,10", "-o", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("done, will skip") == 3
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/final.png")} == before


def test_dry_run_lists_and_writes_nothing(swept: tuple[Path, Path, str], tmp_path: Path) -> None:
    config, _, _ = swept
    out = tmp_path / "dry"
    result = runner.invoke(
        app,
        [
            "sweep",
            "-c",
            str(config),
            "--param",
            "weights.style=1,2",
            "--param",
            "optimizer.name=lbfgs,adam",
            "-o",
            str(out),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("will run") == 4
    assert "style_weight=2__optimizer.name=adam" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_two_params_make_a_grid_of_rows_and_columns(
    swept: tuple[Path, Path, str], tmp_path: Path
) -> None:
    config, _, _ = swept
    out = tmp_path / "grid2"
    result = runner.invoke(
        app,
        [
            "sweep",
            "-c",
            str(config),
            "--param",
            "weights.style=1,10",
            "--param",
            "optimizer.name=lbfgs,adam",
            "-o",
            str(out),
            "-q",
            "--steps",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (2 * 256, 2 * (256 + 20))
    assert len(read_summary(out)) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "weights.style=1,abc"], "weights.style"),
        (["--param", "weights.style="], "no empty values"),
        (["--param", "stepz=1,2"], "stepz: unknown key"),
        (["--param", "steps=1,-1"], "steps: Input should be greater than 0"),
        (["--param", "noequals"], "expected key.path=value"),
        ([], "nothing to sweep"),
        (["--param", "steps=4,8", "--steps", "6"], "a flag also sets steps"),
        (["--param", "device=cpu,auto", "--device", "cpu"], "a flag also sets device"),
    ],
)
def test_bad_params_are_clear_errors(
    swept: tuple[Path, Path, str], tmp_path: Path, args: list[str], message: str
) -> None:
    config, _, _ = swept
    result = runner.invoke(app, ["sweep", "-c", str(config), "-o", str(tmp_path / "bad"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_param_parsing() -> None:
    assert split_values("1,{a: 1, b: 2},[3, 4]") == ["1", "{a: 1, b: 2}", "[3, 4]"]
    param = parse_param("layers.style={relu1_1: 1},{relu2_1: 1}")
    assert param.values == [{"relu1_1": 1}, {"relu2_1": 1}]
    with pytest.raises(ConfigError):
        parse_param("weights.style=1,,2")


def test_sweep_section_in_yaml(swept: tuple[Path, Path, str], tmp_path: Path) -> None:
    config, _, _ = swept
    text = (
        config.read_text()
        .replace("content.png", str(config.parent / "content.png"))
        .replace("style.png", str(config.parent / "style.png"))
    )
    with_section = tmp_path / "with_sweep.yaml"
    with_section.write_text(text + "sweep:\n  weights.style: [0.5, 5]\n")
    result = runner.invoke(
        app, ["sweep", "-c", str(with_section), "-o", str(tmp_path / "sec"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "style_weight=0.5" in result.output and "style_weight=5" in result.output
    # stylize ignores the sweep section
    assert runner.invoke(app, ["stylize", "-c", str(with_section), "--print-config"]).exit_code == 0


def _browser() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def _headless(profile: Path, *extra: str) -> list[str]:
    """Headless Chromium's command line, reading local files, with a fresh profile."""
    return [
        _browser() or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
        "--allow-file-access-from-files", *extra,
    ]  # fmt: skip


@pytest.mark.browser
@pytest.mark.subprocess
@pytest.mark.skipif(
    _browser() is None, reason="no headless browser installed (apt-get install chromium)"
)
def test_index_html_renders_and_sorts_in_a_real_browser(
    swept: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, root, _ = swept
    # Click the 'style' header twice (descending) from a script appended to a copy of the page.
    page = (root / "index.html").read_text()
    probe = """<script>
    var th = Array.from(document.querySelectorAll('#runs th')).find(function (h) { return h.textContent === 'style'; });
    th.click(); th.click();
    var order = Array.from(document.querySelectorAll('#runs tbody tr')).map(function (r) { return r.cells[0].textContent; });
    var loaded = Array.from(document.images).every(function (i) { return i.complete && i.naturalWidth > 0; });
    document.title = 'RESULT ' + order.join('|') + ' images=' + document.images.length;
    </script></body>"""
    probe_page = root / "probe.html"
    probe_page.write_text(page.replace("</body>", probe))
    dom = subprocess.run(
        _headless(tmp_path / "profile", "--dump-dom", probe_page.as_uri()),
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    probe_page.unlink()
    assert "RESULT style_weight=0.01|style_weight=0.1|style_weight=10 images=6" in dom


@pytest.mark.browser
@pytest.mark.subprocess
@pytest.mark.skipif(
    _browser() is None, reason="no headless browser installed (apt-get install chromium)"
)
def test_index_html_fits_a_laptop_window_with_readable_loss_curves(
    swept: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """At 1200 px wide the page scrolled sideways to reach the loss curves, shown 240 px
    wide: now everything is in the window, the curves at least 300 px, in a screenshot too."""
    _, root, _ = swept
    # A sweep with `--score` has four more columns: the widest page a one-key sweep makes.
    rows = read_summary(root)
    for row in rows:
        row.update(style_swd=0.2543, palette_swd=5.099, structure_ssim=0.5539, new_faces=0)
        row["image"] = str(root / row["run"] / "final.png")
    from nst_cli.sweep.report import index_html

    page = index_html(rows, ["weights.style"], root)
    probe = """<script>
    window.addEventListener('load', function () {
      var wrap = document.querySelector('.wrap'), plot = document.querySelector('img.plot');
      var box = plot.getBoundingClientRect();
      document.title = 'FIT page=' + document.documentElement.scrollWidth + ' window=' + window.innerWidth
        + ' table=' + wrap.scrollWidth + '/' + wrap.clientWidth
        + ' plot=' + Math.round(box.width) + ' right=' + Math.round(box.right);
    });
    </script></body>"""
    probe_page = root / "fit.html"
    probe_page.write_text(page.replace("</body>", probe))
    browser = _headless(tmp_path / "profile", "--window-size=1200,900", "--hide-scrollbars")
    dom = subprocess.run(
        [*browser, "--dump-dom", probe_page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    shot = tmp_path / "page.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", probe_page.as_uri()], capture_output=True, timeout=120
    )
    probe_page.unlink()
    found = re.search(r"FIT page=(\d+) window=(\d+) table=(\d+)/(\d+) plot=(\d+) right=(\d+)", dom)
    assert found, dom[-2000:]
    page_w, window, table_w, table_visible, plot_w, right = map(int, found.groups())
    assert window == 1200 and page_w <= window and table_w <= table_visible, found.group(0)
    assert plot_w >= 300 and right <= window, found.group(0)
    # The screenshot shows the curves: the plot's own pixels (its grey frame, coloured lines)
    # inside the window's right third, not a cut-off table.
    with Image.open(shot) as image:
        assert image.width == 1200
        strip = np.asarray(image.convert("RGB").crop((right - plot_w, 160, right, 400)), np.int16)
    saturated = (strip.max(axis=2) - strip.min(axis=2)) > 80
    assert saturated.sum() > 100, "no coloured loss curves where the plot should be"


def test_runs_share_one_network_and_style_targets(
    swept: tuple[Path, Path, str], tmp_path: Path
) -> None:
    from nst_cli.run.cache import ModelCache
    from nst_cli.sweep.execute import SweepHooks, run_sweep
    from nst_cli.sweep.plan import plan_sweep

    config, _, _ = swept
    root, runs = plan_sweep(
        config, [parse_param("weights.style=1,2,3")], ["steps=1"], output=tmp_path / "shared"
    )
    cache = ModelCache()
    run_sweep(root, runs, SweepHooks(cache=cache))
    assert [run.state for run in runs] == ["done"] * 3
    assert cache.made == {"networks": 1, "style targets": 1}


def _sweep_base(tmp_path: Path) -> Path:
    from tests.conftest import make_image

    make_image(tmp_path / "content.png", (64, 48), seed=1)
    make_image(tmp_path / "style.png", (48, 48), seed=7)
    (tmp_path / "sub").mkdir()
    make_image(tmp_path / "sub" / "b.png", (48, 48), seed=9)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "content: content.png\nstyle: style.png\nresolution: 48\nsteps: 2\nsave_every: 2\ndevice: cpu\n"
    )
    return config


def test_sweeping_style_images_names_folders_by_stem_and_keeps_columns_apart(tmp_path: Path):
    config = _sweep_base(tmp_path)
    root = tmp_path / "styles"
    result = runner.invoke(
        app,
        ["sweep", "-c", str(config), "-o", str(root), "-q",
         "--param", f"style={tmp_path / 'style.png'},{tmp_path / 'sub' / 'b.png'},{tmp_path / 'style.png'}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_summary(root)
    assert [r["run"] for r in rows] == ["style=style", "style=b"]  # the repeat ran once
    assert all(float(r["style"]) >= 0 for r in rows)  # the loss column stays a loss
    assert rows[1]["swept.style"].endswith("b.png")


def test_colliding_folder_names_are_numbered(tmp_path: Path):
    from nst_cli.sweep.grid import parse_param
    from nst_cli.sweep.plan import plan_sweep
    from tests.conftest import make_image

    config = _sweep_base(tmp_path)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        make_image(tmp_path / folder / "x.png", (48, 48), seed=3)
    param = parse_param(f"style={tmp_path / 'a' / 'x.png'},{tmp_path / 'b' / 'x.png'}")
    _, runs = plan_sweep(config, [param], output=tmp_path / "s")
    assert [run.name for run in runs] == ["style=x", "style=x~2"]
    assert len({run.config.output for run in runs}) == 2


def test_every_combination_is_validated_before_the_first_run(tmp_path: Path):
    config = _sweep_base(tmp_path)
    root = tmp_path / "bad"
    result = runner.invoke(
        app, ["sweep", "-c", str(config), "-o", str(root), "--param", "resolution=48,12"]
    )
    assert result.exit_code == 2, result.output
    assert "sweep run resolution=12" in result.output and "too small" in result.output
    assert not (root / "resolution=48" / "final.png").exists()  # nothing ran


def test_a_different_sweep_into_the_same_folder_is_refused(tmp_path: Path):
    config = _sweep_base(tmp_path)
    root = tmp_path / "one"
    args = ["sweep", "-c", str(config), "-o", str(root), "-q"]
    assert runner.invoke(app, [*args, "--style-weights", "1,2"]).exit_code == 0
    again = runner.invoke(app, [*args, "--style-weights", "1,2", "--dry-run"])
    assert again.exit_code == 0 and again.output.count("done, will skip") == 2
    other = runner.invoke(app, [*args, "--style-weights", "3,4"])
    assert other.exit_code == 2 and "holds another sweep" in other.output
    fewer = runner.invoke(app, [*args, "--style-weights", "1"])  # would hide a run from the grid
    assert fewer.exit_code == 2 and "holds another sweep" in fewer.output
    assert [r["run"] for r in read_summary(root)] == ["style_weight=1", "style_weight=2"]
    # The same sweep grown by a value is the same sweep: the finished runs are skipped.
    grown = runner.invoke(app, [*args, "--style-weights", "1,2,3", "--dry-run"])
    assert grown.exit_code == 0, grown.output
    assert grown.output.count("done, will skip") == 2 and grown.output.count("will run") == 1
    # Same names, other settings: another sweep, refused (the dry run too) unless --overwrite,
    # and then the dry run says what it will replace.
    changed = [*args, "--style-weights", "1,2", "--set", "weights.tv=0.1", "--dry-run"]
    refused = runner.invoke(app, changed)
    assert refused.exit_code == 2 and "holds another sweep" in refused.output
    replacing = runner.invoke(app, [*changed, "--overwrite"])
    assert replacing.exit_code == 0 and "will replace the run there" in replacing.output


def test_a_long_one_key_sheet_wraps_into_rows(tmp_path: Path) -> None:
    from nst_cli.config.models import Config
    from nst_cli.sweep.plan import PlannedRun
    from nst_cli.sweep.report import contact_sheet

    runs = [
        PlannedRun(f"p{i}", {"content": f"p{i}.png"}, {"content": f"p{i}.png"},
                   Config(output=tmp_path / f"p{i}"))
        for i in range(20)
    ]  # fmt: skip
    assert contact_sheet(runs, ["content"], cell=32).size == (8 * 32, 3 * (32 + 20))
    assert contact_sheet(runs[:5], ["content"], cell=32).size == (5 * 32, 32 + 20)
    assert contact_sheet(runs * 5, ["content"], cell=32).size == (10 * 32, 10 * (32 + 20))
