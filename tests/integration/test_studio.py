"""`nst studio`: the page's API driven with gradio_client, the page itself in headless
Chromium, and its safety (loopback, Host header, password, upload limits). A studio run is an
ordinary run folder: the CLI continues it, and the studio shows and continues CLI runs."""

from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nst_cli.cli import app

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A studio serving a fresh output folder, the repository's samples offered."""
    from nst_cli.studio.server import offline

    offline()
    from nst_cli.studio.actions import Studio
    from nst_cli.studio.page import build
    from nst_cli.studio.server import Access, launch

    output = tmp_path_factory.mktemp("studio") / "outputs"
    made = Studio(output, SAMPLES)
    page = build(made)
    url = launch(page, Access(), None, made.readable, 1)
    yield url, made
    page.close()


def _client(url: str) -> Any:
    return gradio_client.Client(url, verbose=False)


def _arguments(client: Any, endpoint: str, **given: Any) -> list[Any]:
    """The endpoint's inputs by label: the given ones, the page's defaults for the rest."""
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"][
        endpoint
    ]["parameters"]
    labels = [p["label"] for p in parameters]
    unknown = set(given) - set(labels)
    assert not unknown, f"no such inputs: {unknown}"
    return [given.get(p["label"], p["parameter_default"]) for p in parameters]


def _stylize(client: Any, photo: Path, painting: Path, **given: Any) -> tuple[Any, ...]:
    arguments = _arguments(
        client,
        "/stylize",
        Photo=gradio_client.handle_file(str(photo)),
        Painting=gradio_client.handle_file(str(painting)),
        **given,
    )
    return client.predict(*arguments, api_name="/stylize")


def _tiny(**more: Any) -> dict[str, Any]:
    """A 64 px, 6-step run: the preset fast, steps set through the advanced fold."""
    return {"Preset": "fast", "Resolution (long side, px)": 64, "steps": "6", **more}


def test_a_tiny_run_leaves_a_run_folder_that_the_cli_resumes(studio: tuple[str, Any]) -> None:
    url, made = studio
    client = _client(url)
    progress, image, files, score, settings, command = _stylize(
        client, SAMPLES / "chelsea.png", SAMPLES / "cubist.png", **_tiny(**{"Run name": "tiny"})
    )
    assert image and Path(image).is_file()
    assert "step 6/6" in progress
    folder = made.output / "tiny"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["run"]["status"] == "completed"
    assert saved["resolution"] == 64 and saved["steps"] == 6
    assert {Path(f).name for f in files} >= {"final.png", "config.yaml", "losses.csv"}
    assert "style distance" in score and "structure kept" in score
    # The command line it shows makes the same run: its --print-config is the run's settings.
    assert command.startswith("nst stylize ")
    printed = CliRunner().invoke(app, [*shlex.split(command)[1:], "--print-config"])
    assert printed.exit_code == 0, printed.output
    ours = yaml.safe_load(printed.output)
    for key in ("preset", "resolution", "steps", "weights", "color", "style_scale", "output"):
        assert ours[key] == saved[key], key
    # The CLI continues the studio's run, from its checkpoint, in the same folder.
    resumed = CliRunner().invoke(
        app, ["stylize", "--resume", str(folder), "--steps", "9", "--quiet"]
    )
    assert resumed.exit_code == 0, resumed.output
    again = yaml.safe_load((folder / "config.yaml").read_text())
    assert again["run"]["status"] == "completed" and again["run"]["steps_done"] == 9


def test_a_16_bit_tiff_is_written_beside_the_run_and_offered(studio: tuple[str, Any]) -> None:
    tifffile = pytest.importorskip("tifffile")
    url, made = studio
    files = _stylize(
        _client(url), SAMPLES / "astronaut.png", SAMPLES / "strokes.png",
        **_tiny(**{"Run name": "deep", "Download as": "16-bit TIFF"}),
    )[2]  # fmt: skip
    tiff = made.output / "deep.tif"
    assert tifffile.imread(tiff).dtype.name == "uint16"
    assert (made.output / "deep" / "final.png").is_file()
    assert "deep.tif" in {Path(f).name for f in files}


def test_the_studio_lists_and_resumes_a_cli_run(studio: tuple[str, Any]) -> None:
    url, made = studio
    folder = made.output / "from_cli"
    ran = CliRunner().invoke(
        app,
        ["stylize", str(SAMPLES / "coffee.png"), str(SAMPLES / "swirls.png"),
         "--resolution", "64", "--steps", "4", "-o", str(folder), "--quiet"],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    client = _client(url)
    gallery, listing, chosen = client.predict(api_name="/runs")
    names = [row[0] for row in listing["data"]]
    assert "from_cli" in names
    assert any("from_cli" in (item.get("caption") or "") for item in gallery)
    result = client.predict("from_cli", 8, api_name="/resume")
    progress = result[0]
    assert "step 8/8" in progress, progress
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["run"]["steps_done"] == 8 and saved["run"]["status"] == "completed"
    # Its animation, made from the page, is written into the run folder.
    files, said = client.predict("from_cli", api_name="/gif")
    assert (folder / "optimization.gif").is_file()
    assert any(Path(f).name == "optimization.gif" for f in files)


def test_compare_runs_a_sweep_and_scores_each_run(studio: tuple[str, Any]) -> None:
    url, made = studio
    client = _client(url)
    arguments = _arguments(
        client,
        "/compare",
        Setting="weights.style",
        **{"Values (comma-separated)": "1,4"},
        Photo=gradio_client.handle_file(str(SAMPLES / "chelsea.png")),
        Painting=gradio_client.handle_file(str(SAMPLES / "strokes.png")),
        **_tiny(**{"Run name": "compared"}),
    )
    progress, gallery, table, command = client.predict(*arguments, api_name="/compare")
    assert len(gallery) == 2, progress
    assert "style" in " ".join(item["caption"] for item in gallery)
    assert len(table["data"]) == 2 and "style_swd" in table["headers"]
    assert (made.output / "compared" / "grid.png").is_file()
    assert command.startswith("nst sweep ") and "--param weights.style=1,4" in command


def _declared_png(path: Path, width: int, height: int) -> Path:
    """A small file whose header declares a huge image (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("side", [12000, 30000])
def test_a_huge_declared_upload_gets_one_clear_line(
    studio: tuple[str, Any], tmp_path: Path, side: int
) -> None:
    url, made = studio
    bomb = _declared_png(tmp_path / "bomb.png", side, side)
    with pytest.raises(Exception) as raised:
        _stylize(_client(url), bomb, SAMPLES / "cubist.png", **_tiny())
    message = str(raised.value)
    assert f"content image bomb.png: {side}×{side} is over the 100,000,000-pixel limit" in message
    assert "\n" not in message.strip() and "Traceback" not in message
    assert not (made.output / "bomb_cubist").exists()


def test_a_foreign_host_header_is_refused(studio: tuple[str, Any]) -> None:
    url, _ = studio
    ours = urllib.request.urlopen(url, timeout=10)
    assert ours.status == 200
    request = urllib.request.Request(url, headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 421


def test_a_run_reads_nothing_outside_its_folders(studio: tuple[str, Any], tmp_path: Path) -> None:
    """A path typed into the advanced fold (an init image elsewhere) is refused, as is a
    run folder outside the output folder."""
    from nst_cli.errors import ConfigError

    _, made = studio
    outside = shutil.copy(SAMPLES / "car.png", tmp_path / "elsewhere.png")
    request = made.request(
        SAMPLES / "chelsea.png", SAMPLES / "cubist.png", {"preset": "fast"}, "PNG", "x",
        {"init": str(outside)},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="reads only its uploads"):
        request.config(made.readable)
    with pytest.raises(ConfigError, match="not a run under"):
        made.entry("../..")
    link = made.output / "linked"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path, target_is_directory=True)
    assert "linked" not in [entry.name for entry in made.runs()]
    link.unlink()


@pytest.mark.parametrize(
    "arguments",
    [["--host", "0.0.0.0"], ["--share"], ["--host", "192.168.1.5", "--password", " "]],
)
def test_a_studio_others_could_reach_needs_a_password(arguments: list[str]) -> None:
    result = CliRunner().invoke(app, ["studio", *arguments], env={"NST_STUDIO_PASSWORD": ""})
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "password" in lines[0], result.output


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (
            ["--host", "10.255.255.1", "--password", "x"],
            "--host 10.255.255.1: not an address of this machine",
        ),
        (["--host", "no-such-host.invalid", "--password", "x"], "not an address of this machine"),
    ],
)
def test_a_host_that_is_not_this_machine_is_one_line(arguments: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["studio", *arguments])
    assert result.exit_code == 2 and said in result.output, result.output


def test_a_port_in_use_is_one_line(studio: tuple[str, Any], tmp_path: Path) -> None:
    url, _ = studio
    port = url.rstrip("/").rsplit(":", 1)[1]
    result = CliRunner().invoke(app, ["studio", "-o", str(tmp_path / "o"), "--port", port])
    assert result.exit_code == 2, result.output
    assert f"--port {port}: cannot listen there" in result.output
    assert "Traceback" not in result.output


@pytest.mark.subprocess
def test_without_the_extra_the_studio_says_how_to_install_it(tmp_path: Path) -> None:
    """`pip install .` alone: every other command works, and `nst studio` says which extra."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _NoGradio:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('gradio', 'gradio_client'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, _NoGradio())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-m", "nst_cli", "studio", "--port", "7999"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert 'pip install "nst-cli[studio]"' in done.stderr
    assert "Traceback" not in done.stderr


# -- the page in a browser ------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="no headless browser (apt-get install chromium)")
def test_the_page_runs_a_sample_pair_and_shows_the_result(
    studio: tuple[str, Any], tmp_path: Path
) -> None:
    """Headless Chromium: upload a sample pair, 64 px, Stylise; the result image appears,
    every tab renders, and the page fetched nothing from outside this machine."""
    playwright = pytest.importorskip("playwright.sync_api")
    url, made = studio
    # NST_SCREENSHOTS=docs/images makes the docs' pictures: larger runs, the same steps.
    shots = Path(os.environ.get("NST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    side, steps = (256, 40) if os.environ.get("NST_SCREENSHOTS") else (64, 6)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url)
        page.locator("#photo input[type=file]").set_input_files(str(SAMPLES / "chelsea.png"))
        page.locator("#painting input[type=file]").set_input_files(str(SAMPLES / "cubist.png"))
        page.locator("#resolution input[type=number]").fill(str(side))
        page.locator("#resolution input[type=number]").press("Enter")
        page.get_by_text("Advanced: every config key").click()
        box = page.locator("#adv-steps").locator("textarea, input").first
        box.wait_for(state="visible")
        page.wait_for_timeout(500)  # the fold's fields settle before they take input
        box.fill(str(steps))
        box.press("Tab")
        playwright.expect(box).to_have_value(str(steps))
        page.locator("#run").click()
        page.locator("#result img").wait_for(timeout=180_000)
        page.wait_for_function(
            f"document.querySelector('#progress textarea').value.includes('step {steps}/{steps}')",
            timeout=60_000,
        )
        page.get_by_text("Advanced: every config key").click()  # folded again for the picture
        page.screenshot(path=str(shots / "studio-stylise.png"), full_page=True)
        page.get_by_role("tab", name="Compare").click()
        page.get_by_label("Values (comma-separated)").fill("1,4")
        page.locator("#compare").click()
        page.wait_for_function(  # the sweep has ended: its command line is shown
            "document.querySelector('#compare-command textarea').value.startsWith('nst sweep')",
            timeout=180_000,
        )
        page.locator("#compare-gallery img").first.click()  # pick one ...
        page.locator("#larger input[type=number]").fill(str(side * 3 // 2))
        page.locator("#larger input[type=number]").press("Enter")
        page.locator("#enlarge").click()  # ... and continue it at a larger size
        page.locator("#enlarged img").wait_for(timeout=180_000)
        page.wait_for_function(
            f"document.querySelector('#picked textarea').value.includes('step {steps}/{steps}')",
            timeout=60_000,
        )
        page.screenshot(path=str(shots / "studio-compare.png"), full_page=True)
        page.get_by_role("tab", name="Video").click()
        page.locator("#clip input[type=file]").set_input_files(str(SAMPLES / "pan.mp4"))
        page.locator("#clip-painting input[type=file]").set_input_files(str(SAMPLES / "fluid.png"))
        page.locator("#clip-resolution input[type=number]").fill(str(side))
        page.locator("#clip-resolution input[type=number]").press("Enter")
        page.locator("#clip-frames input").fill("2")
        page.locator("#clip-run").click()
        page.locator("#clip-result video").wait_for(timeout=180_000)
        page.screenshot(path=str(shots / "studio-video.png"), full_page=True)
        page.get_by_role("tab", name="Runs").click()
        page.get_by_role("button", name="Refresh").click()
        page.locator("#runs-gallery img").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "studio-runs.png"), full_page=True)
        browser.close()
    ran = {entry.name: entry for entry in made.runs()}
    assert ran["chelsea_cubist"].status == "completed"
    larger = [e for name, e in ran.items() if name.endswith(f"_{side * 3 // 2}px")]
    assert larger and larger[0].settings["resolution"] == side * 3 // 2
    assert Path(larger[0].settings["init"]).name == "final.png"
    outside = [u for u in requested if not u.startswith((url.rstrip("/"), "data:", "blob:"))]
    assert not outside, f"the page fetched from outside: {outside[:5]}"
    assert (shots / "studio-stylise.png").stat().st_size > 10_000


def test_stop_keeps_the_work_and_the_cli_continues_it(studio: tuple[str, Any]) -> None:
    """Stop is the first Ctrl-C: the run ends after its step, final.png and the checkpoint
    saved, config.yaml says interrupted, and `nst stylize --resume` finishes it."""
    url, made = studio
    client = _client(url)
    arguments = _arguments(
        client,
        "/stylize",
        Photo=gradio_client.handle_file(str(SAMPLES / "rocket.jpg")),
        Painting=gradio_client.handle_file(str(SAMPLES / "swirls.png")),
        **_tiny(steps="400", **{"Run name": "stopped"}),
    )
    job = client.submit(*arguments, api_name="/stylize")
    folder = made.output / "stopped"
    deadline = time.monotonic() + 120
    while not list((folder / "frames").glob("step_*.png")) and time.monotonic() < deadline:
        time.sleep(0.2)
    client.predict(api_name="/stop")
    progress = job.result(timeout=120)[0]
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["run"]["status"] == "interrupted", progress
    assert 0 < saved["run"]["steps_done"] < 400
    assert (folder / "final.png").is_file() and (folder / "checkpoint.pt").is_file()
    more = saved["run"]["steps_done"] + 4
    resumed = CliRunner().invoke(
        app, ["stylize", "--resume", str(folder), "--steps", str(more), "--quiet"]
    )
    assert resumed.exit_code == 0, resumed.output
    again = yaml.safe_load((folder / "config.yaml").read_text())["run"]
    assert again["steps_done"] == more and again["status"] == "completed"


def test_a_clip_is_stylised_and_the_runs_tab_continues_it(studio: tuple[str, Any]) -> None:
    """The Video tab: the sample clip's first frames, 64 px, into an ordinary video run
    folder (its clip written), which the Runs tab lists and `nst video --resume` accepts."""
    url, made = studio
    client = _client(url)
    arguments = _arguments(
        client,
        "/video",
        Clip=gradio_client.handle_file(str(SAMPLES / "pan.mp4")),
        Painting=gradio_client.handle_file(str(SAMPLES / "fluid.png")),
        **{"Resolution (long side, px)": 64, "Frames (0: the whole clip)": 2, "Run name": "clip"},
    )
    progress, newest, clip, files, command = client.predict(*arguments, api_name="/video")
    assert "frame 2/2 done" in progress, progress
    assert clip and Path(clip["video"]["path"] if isinstance(clip, dict) else clip).is_file()
    folder = made.output / "clip"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["run"]["kind"] == "video" and saved["video"]["max_frames"] == 2
    assert (folder / "video.mp4").is_file()
    assert shlex.split(command)[:2] == ["nst", "video"] and "--max-frames" in command
    entry = made.entry("clip")
    assert entry.kind == "video" and entry.image is not None
    again = CliRunner().invoke(app, ["video", "--resume", str(folder), "--quiet"])
    assert again.exit_code == 0, again.output


def test_the_page_serves_only_the_output_folder_and_samples(
    studio: tuple[str, Any], tmp_path: Path
) -> None:
    """Gradio's file route: a file of the output folder is served; a link in it to a file
    outside, a file beside the repository's samples, and /etc/passwd are not."""
    url, made = studio
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    made.output.mkdir(parents=True, exist_ok=True)
    (made.output / "own.txt").write_text("the studio's")
    (made.output / "leak.txt").symlink_to(secret)

    def status(path: Path | str) -> int:
        try:
            with urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            return refused.code

    assert status(made.output / "own.txt") == 200
    assert status(SAMPLES / "car.png") == 200
    assert status(made.output / "leak.txt") == 403
    assert status(secret) == 403
    assert status(ROOT / "README.md") == 403
    assert status("/etc/passwd") == 403


def test_with_a_password_the_page_asks_for_the_login(tmp_path: Path) -> None:
    from nst_cli.studio.actions import Studio
    from nst_cli.studio.page import build
    from nst_cli.studio.server import Access, launch

    made = Studio(tmp_path / "outputs", None)
    page = build(made)
    url = launch(page, Access(password="s3cret"), None, made.readable, 1)
    try:
        with pytest.raises(Exception):  # noqa: B017 - gradio_client's error for a refused login
            gradio_client.Client(url, verbose=False)
        client = gradio_client.Client(url, auth=("nst", "s3cret"), verbose=False)
        assert (
            "/stylize" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        )
    finally:
        page.close()
