"""Never lose work: interrupts, NaN losses, failing writes, resume, provenance, fuzzed configs."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from nst_cli import stylize
from nst_cli.cli.base import app
from nst_cli.config.resolve import resolve_config
from nst_cli.errors import NonFiniteLossError, NSTError, OutputError
from nst_cli.io.files import save_png, write_text

runner = CliRunner()


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def start_long_run(tiny_config: Path, out: Path) -> subprocess.Popen[str]:
    """A real `nst stylize` subprocess, returned once it has written a few frames."""
    command = [
        sys.executable, "-m", "nst_cli", "stylize", "-c", str(tiny_config), "-o", str(out),
        "--steps", "100000", "--set", "save_every=2", "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "frames" / "step_000004.png").exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no frames appeared"
        time.sleep(0.1)
    return process


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_the_step_and_keeps_everything(
    tiny_config: Path, tmp_path: Path, sig: int
) -> None:
    out = tmp_path / "interrupted"
    process = start_long_run(tiny_config, out)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["run"]["status"] == "interrupted"
    assert (out / "final.png").is_file() and (out / "checkpoint.pt").is_file()
    rows = (out / "losses.csv").read_text().splitlines()
    assert len(rows) - 1 == saved["run"]["steps_done"] + 1  # header + steps 0..k
    assert not [p for p in out.rglob("*.tmp")]


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once_and_keeps_files(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "aborted"
    process = start_long_run(tiny_config, out)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert (out / "final.png").is_file() and (out / "frames" / "step_000004.png").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["status"] == "interrupted"


def test_nan_loss_stops_and_keeps_last_good_image(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nst_cli.core.losses.total as losses

    calls = {"n": 0}
    real_tv = losses.tv_loss

    def flaky_tv(image):  # turns NaN on the 4th evaluation
        calls["n"] += 1
        value = real_tv(image)
        return value * float("nan") if calls["n"] >= 4 else value

    monkeypatch.setattr(losses, "tv_loss", flaky_tv)
    out = tmp_path / "nan"
    config = resolve_config(tiny_config, ["weights.tv=1", "save_every=1"], {"output": str(out)})
    with pytest.raises(
        NonFiniteLossError, match="the tv loss became nan at step 3.*Lower optimizer.lr"
    ):
        stylize(config)
    assert np.array_equal(pixels(out / "final.png"), pixels(out / "frames" / "step_000002.png"))
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["status"] == "failed"
    result = runner.invoke(
        app,
        [
            "stylize",
            "-c",
            str(tiny_config),
            "-o",
            str(tmp_path / "nan2"),
            "-q",
            "--set",
            "weights.tv=1",
        ],
    )
    assert (
        result.exit_code == 1 and "became nan" in result.output and "Traceback" not in result.output
    )


def test_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "final.png"
    save_png(Image.new("RGB", (4, 4), (1, 2, 3)), target)
    before = target.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        save_png(Image.new("RGB", (4, 4), (9, 9, 9)), target)
    with pytest.raises(OutputError):
        write_text(tmp_path / "config.yaml", "x: 1\n")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.png"]  # no temp files left


def test_disk_full_mid_run_keeps_what_was_saved(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nst_cli.run.recording as callbacks

    real_save = callbacks.save_png
    saved = {"n": 0}

    def save_until_full(image, path, text=None):
        saved["n"] += path.name.startswith("step_")  # the third frame finds the disk full
        if saved["n"] > 2:
            raise OutputError(
                f"{path}: write failed (No space left on device); earlier files are kept"
            )
        real_save(image, path, text)

    monkeypatch.setattr(callbacks, "save_png", save_until_full)
    out = tmp_path / "full"
    result = runner.invoke(
        app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--set", "save_every=1"]
    )
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "step_000000.png",
        "step_000001.png",
    ]
    assert (out / "final.png").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["status"] == "failed"


def test_unwritable_output_folder(tiny_config: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = runner.invoke(
        app, ["stylize", "-c", str(tiny_config), "-o", str(blocker / "run"), "-q"]
    )
    assert result.exit_code == 1
    assert "cannot create it" in result.output and "--output" in result.output


# bfloat16 at 32 px: on a CPU without bfloat16 units (AVX2) it is emulated, ~30x float32's time.
@pytest.mark.slow
@pytest.mark.parametrize(("precision", "size", "levels"), [("fp32", 64, 1.0), ("bf16", 32, 4.0)])
def test_resume_matches_an_uninterrupted_run(
    tiny_config: Path, tmp_path: Path, precision: str, size: int, levels: float
) -> None:
    # The compact checkpoint keeps 3 of the 20 curvature pairs in float16: the resumed run
    # rebuilds the rest, a rounding L-BFGS amplifies; bfloat16's coarser gradients more.
    sets = ["steps=8", "save_every=3", f"precision={precision}", f"resolution={size}"]
    base = resolve_config(tiny_config, sets)
    straight = stylize(base.model_copy(update={"output": tmp_path / "straight"}))
    stop_at = {"step": 4}
    calls = {"n": 0}

    def stop_after_four() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_at["step"]

    run = base.model_copy(update={"output": tmp_path / "resumed"})
    first = stylize(run, should_stop=stop_after_four)
    assert first.status == "interrupted" and first.steps == 4
    second = stylize(run, resume=True)
    assert second.status == "completed" and second.steps == 8 and second.steps_run == 4
    assert np.abs(pixels(second.final_image) - pixels(straight.final_image)).max() <= levels
    assert second.losses["total"] == pytest.approx(straight.losses["total"], rel=0.02)
    rows = (tmp_path / "resumed" / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(9))
    frames = sorted(p.name for p in (tmp_path / "resumed" / "frames").iterdir())
    assert frames == ["step_000000.png", "step_000003.png", "step_000006.png"]


@pytest.mark.slow
def test_resume_past_its_scale_s_end_under_another_split_goes_on_from_its_step(
    tiny_config: Path, tmp_path: Path
) -> None:
    """A checkpoint written at step 8 of a first scale that now ends at step 4 (a run begun
    under an earlier split of the steps): the run goes on at the next scale from step 8; it
    used to restart its step count at 0 and rewrite the log."""
    run = resolve_config(tiny_config, ["scales=[32, 64]", "steps=[10, 4]"])
    run = run.model_copy(update={"output": tmp_path / "split"})
    calls = {"n": 0}

    def stop_after_eight() -> bool:
        calls["n"] += 1
        return calls["n"] > 8

    assert stylize(run, should_stop=stop_after_eight).steps == 8
    second = stylize(run.model_copy(update={"steps": [4, 10]}), resume=True)
    assert second.status == "completed" and second.steps == 14 and second.steps_run == 6
    rows = [r.split(",") for r in (tmp_path / "split" / "losses.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == list(range(15))
    assert [int(r[1]) for r in rows] == [32] * 8 + [64] * 7


@pytest.mark.slow
def test_resume_via_cli_with_more_steps(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "more"
    assert (
        runner.invoke(app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q"]).exit_code == 0
    )
    result = runner.invoke(app, ["stylize", "--resume", str(out), "--steps", "9", "-q"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["steps"] == 9 and saved["run"]["steps_done"] == 9
    bad = runner.invoke(app, ["stylize", "--resume", str(tmp_path / "nowhere"), "-q"])
    assert bad.exit_code == 2 and "no config.yaml" in bad.output


@pytest.mark.slow
def test_png_carries_config_and_reruns_it(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "prov"
    assert (
        runner.invoke(
            app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--seed", "3"]
        ).exit_code
        == 0
    )
    info = Image.open(out / "final.png").info
    assert info["nst:version"] and yaml.safe_load(info["nst:config"])["seed"] == 3
    assert "nst:config" in Image.open(out / "frames" / "step_000000.png").info
    again = tmp_path / "again"
    result = runner.invoke(
        app, ["stylize", "--config", str(out / "final.png"), "-o", str(again), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(out / "final.png"), pixels(again / "final.png"))
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    result = runner.invoke(app, ["stylize", "--config", str(plain), "-q"])
    assert result.exit_code == 2 and "carries no nst settings" in result.output


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("content: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(NSTError, match="not valid YAML"):
        resolve_config(path)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
config_keys = st.sampled_from(
    [
        "steps",
        "resolution",
        "weights",
        "layers",
        "optimizer",
        "model",
        "device",
        "init",
        "style_scale",
        "seed",
        "nope",
        "save_every",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    document=st.dictionaries(config_keys, yaml_values, max_size=5) | yaml_values,
    raw=st.text(max_size=60),
)
@example(document={"[": None}, raw="")  # a key that looks like a union form's name
@example(document={"device": "\n"}, raw="")  # a value that would break the one line
@pytest.mark.slow
def test_config_loader_only_raises_its_own_errors(
    tmp_path: Path, document: object, raw: str
) -> None:
    for text in (yaml.safe_dump(document), raw):
        path = tmp_path / "fuzz.yaml"
        path.write_text(text)
        try:
            resolve_config(path, ["weights.style=2"])
        except NSTError as exc:
            assert "\n" not in str(exc)


def test_damaged_checkpoint_is_a_clear_error(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    assert (
        runner.invoke(app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q"]).exit_code == 0
    )
    (out / "checkpoint.pt").write_bytes(b"garbage")
    result = runner.invoke(app, ["stylize", "--resume", str(out), "-q"])
    assert result.exit_code == 2 and "checkpoint unreadable" in result.output


@pytest.mark.slow
def test_interrupted_sweep_resumes_run_by_run(tiny_config: Path, tmp_path: Path) -> None:
    from nst_cli.sweep.execute import SweepHooks, run_sweep
    from nst_cli.sweep.grid import parse_param
    from nst_cli.sweep.plan import plan_sweep

    params = [parse_param("weights.style=1,2,3")]
    root, runs = plan_sweep(tiny_config, params, output=tmp_path / "sw")
    calls = {"n": 0}

    def stop_in_second_run() -> bool:
        calls["n"] += 1
        return calls["n"] > 10  # run 1 checks 6 times (steps 0-5); run 2 stops partway

    run_sweep(root, runs, SweepHooks(should_stop=stop_in_second_run))
    _, again = plan_sweep(tiny_config, params, output=tmp_path / "sw")
    assert [r.state for r in again] == ["done", "resume", "new"]
    outcome = run_sweep(root, again)
    assert [r.state for r in again] == ["done", "done", "done"]
    assert all(row["status"] == "completed" for row in outcome.rows)


@pytest.mark.slow
def test_overwrite_never_touches_files_nst_did_not_write(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    assert (
        runner.invoke(app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q"]).exit_code == 0
    )
    mine = out / "frames" / "step_1.png"  # a user's file, not an nst frame name
    Image.new("RGB", (4, 4), "red").save(mine)
    result = runner.invoke(
        app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert mine.is_file() and pixels(mine)[0, 0, 0] == 255
    # A user's own final.png (no nst metadata) in the folder: refused, left as it was.
    user_final = out / "final.png"
    Image.new("RGB", (5, 5), "blue").save(user_final)
    before = user_final.read_bytes()
    result = runner.invoke(
        app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--overwrite"]
    )
    assert result.exit_code == 2 and "final.png was not written by nst" in result.output
    assert user_final.read_bytes() == before


def test_overwrite_into_the_config_folder_keeps_the_config(tiny_config: Path) -> None:
    before = tiny_config.read_text()
    result = runner.invoke(
        app, ["stylize", "-c", str(tiny_config), "-o", str(tiny_config.parent), "-q", "--overwrite"]
    )
    # tiny.yaml is not at nst's config.yaml name: the run goes ahead and the config survives.
    assert result.exit_code == 0, result.output
    assert tiny_config.read_text() == before
    named = tiny_config.parent / "config.yaml"
    named.write_text(before)
    result = runner.invoke(
        app, ["stylize", "-c", str(named), "-o", str(named.parent), "-q", "--overwrite"]
    )
    assert result.exit_code == 2 and "config.yaml was not written by nst" in result.output
    assert named.read_text() == before


def test_a_png_never_decides_where_files_go(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "src"
    assert (
        runner.invoke(app, ["stylize", "-c", str(tiny_config), "-o", str(out), "-q"]).exit_code == 0
    )
    info = Image.open(out / "final.png").info
    settings_ = yaml.safe_load(info["nst:config"])
    target = tmp_path / "elsewhere"
    settings_["output"] = str(target)
    crafted = tmp_path / "downloaded.png"
    save_png(Image.open(out / "final.png"), crafted, {"nst:config": yaml.safe_dump(settings_)})
    config = resolve_config(crafted)
    assert config.output != target and not str(config.output).startswith(str(tmp_path))
    for text in ("!!python/object:os.system ls", "{unclosed: [", "x" * 300_000):
        save_png(Image.new("RGB", (4, 4)), crafted, {"nst:config": text})
        result = runner.invoke(app, ["stylize", "--config", str(crafted), "-q", "-o", str(target)])
        assert result.exit_code == 2, result.output
        assert "nst settings" in result.output and "Traceback" not in result.output
    assert not target.exists()


def test_decompression_bomb_png_as_config_and_as_frame(tiny_config: Path, tmp_path: Path) -> None:
    import warnings

    bomb = tmp_path / "bomb.png"
    settings_ = resolve_config(tiny_config).to_yaml_dict()
    # 200 megapixels, over Pillow's own error threshold (179 MP); 1-bit keeps the test light.
    save_png(Image.new("1", (20000, 10000)), bomb, {"nst:config": yaml.safe_dump(settings_)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning fails the test
        assert resolve_config(bomb).resolution == settings_["resolution"]
    frames = tmp_path / "run" / "frames"
    frames.mkdir(parents=True)
    bomb.replace(frames / "step_000000.png")
    # --size 64: small enough for the animation's own size check, so the frame loader answers.
    result = runner.invoke(app, ["gif", str(tmp_path / "run"), "--size", "64"])
    assert result.exit_code == 2, result.output
    assert "100,000,000-pixel limit" in result.output and "Traceback" not in result.output


def _under_memory_limit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`nst ARGS` in a child whose address space is capped at 4 GB: a request refused only
    after allocating would die of MemoryError (or worse) instead of printing one line."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from nst_cli.cli import main\n"
        "sys.argv = ['nst', *sys.argv[1:]]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.mark.slow
def test_unbounded_requests_are_refused_before_allocation(tmp_path: Path) -> None:
    frames = tmp_path / "run" / "frames"
    frames.mkdir(parents=True)
    for step in (0, 5, 10):
        save_png(Image.new("RGB", (64, 48), (step * 20, 90, 160)), frames / f"step_{step:06d}.png")
    laughs = tmp_path / "laughs.yaml"
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, 9):
        name, previous = chr(ord("a") + i), chr(ord("a") + i - 1)
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    laughs.write_text(text + "content: c.png\nstyle: s.png\nsweep: {weights.style: *i}\n")
    cases = [
        (["gif", "run", "--fps", "1e9"], "--fps"),
        (["gif", "run", "--hold-last", "1e7"], "10,000-frame limit"),
        (["gif", "run", "--duration", "1.0000001", "--hold-last", "1"], "frames per second"),
        (["gif", "run", "--size", "100000"], "--size 100000"),
        (["sweep", "-c", str(laughs), "--dry-run"], "expands to over 100,000 values"),
        (["stylize", "--config", "/dev/zero"], "not a regular file"),
    ]
    for args, message in cases:
        done = _under_memory_limit(args, tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    control = _under_memory_limit(["gif", "run"], tmp_path)  # a normal request fits the cap
    assert control.returncode == 0, control.stderr
