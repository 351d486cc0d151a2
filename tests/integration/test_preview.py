"""The live preview: a read-only local page that follows a real run, checked over HTTP and in
headless Chromium (skipped where no browser is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nst_cli import stylize
from nst_cli.cli import preview as preview_module
from nst_cli.cli.preview import Preview
from nst_cli.config.resolve import resolve_config
from nst_cli.io.rundir import RunDir


def _browser() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _slow_run(tiny_config: Path, tmp_path: Path, preview: Preview, delay: float):
    """A real 12-step run, slowed so the page can be looked at while it advances."""
    config = resolve_config(
        tiny_config, [], {"output": str(tmp_path / "run"), "steps": 12, "save_every": 2}
    )
    done: dict[str, object] = {}

    def slow(_event) -> None:
        time.sleep(delay)

    def target() -> None:
        done["result"] = stylize(config, callbacks=[preview, slow])

    thread = threading.Thread(target=target)
    thread.start()
    return thread, done


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_preview_serves_state_image_and_frames_and_nothing_else(
    tiny_config: Path, tmp_path: Path, monkeypatch
):
    # Every step's point is kept when steps come further apart than the page's update
    # interval; set it below the delay, so how fast a step computes does not matter.
    monkeypatch.setattr(preview_module, "STATE_INTERVAL", 0.01)
    preview = Preview(RunDir(tmp_path / "run")).start()
    try:
        assert preview.url.startswith("http://127.0.0.1:")
        thread, done = _slow_run(tiny_config, tmp_path, preview, 0.05)
        thread.join(timeout=120)
        assert done["result"].status == "completed"
        status, body = _get(preview.url + "state.json")
        state = json.loads(body)
        assert status == 200 and state["step"] == 12 and state["status"] == "finished"
        assert state["frames"] == [f"step_{s:06d}.png" for s in range(0, 13, 2)]
        assert [p[0] for p in state["points"]] == list(range(13))
        status, image = _get(preview.url + "image.jpg")
        assert status == 200 and image[:2] == b"\xff\xd8"
        status, frame = _get(preview.url + "frames/step_000004.png")
        assert status == 200 and frame[:4] == b"\x89PNG"
        status, page = _get(preview.url)
        assert status == 200 and b"<canvas" in page and b"http" not in page.split(b"<script>")[1]
        for path in ("frames/../config.yaml", "config.yaml", "frames/step_4.png"):
            assert _get(preview.url + path)[0] == 404, path
        request = urllib.request.Request(preview.url + "state.json", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError, match="405"):
            urllib.request.urlopen(request, timeout=10)
    finally:
        preview.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(preview.url, timeout=2)  # it ends with the run


@pytest.mark.browser
@pytest.mark.subprocess
@pytest.mark.skipif(
    _browser() is None, reason="no headless browser installed (apt-get install chromium)"
)
def test_page_in_a_browser_follows_the_run(tiny_config: Path, tmp_path: Path) -> None:
    preview = Preview(RunDir(tmp_path / "run")).start()
    seen: list[str] = []
    try:
        thread, _ = _slow_run(tiny_config, tmp_path, preview, 0.6)
        _wait_for(lambda: preview.state()["image_version"] > 0)
        for _ in range(2):
            dom = subprocess.run(
                [
                    _browser(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=1500", "--dump-dom", preview.url,
                ],
                capture_output=True, text=True, timeout=120,
            ).stdout  # fmt: skip
            title = dom.split("<title>")[1].split("</title>")[0]
            assert title.startswith("nst preview: step"), title
            assert 'src="/image.jpg?v=' in dom
            seen.append(title)
            time.sleep(2.0)
        thread.join(timeout=120)
    finally:
        preview.stop()
    first, second = (int(t.split("step ")[1].split()[0]) for t in seen)
    images = [int(t.split("image ")[1].split()[0]) for t in seen]
    assert second > first and images[1] > images[0], seen


def test_a_link_planted_under_a_frames_name_is_never_served(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    run = RunDir(tmp_path / "run")
    run.frames.mkdir(parents=True)
    (run.frames / "step_000000.png").write_bytes(b"\x89PNG a real frame")
    (run.frames / "step_000002.png").symlink_to(secret)
    preview = Preview(run).start()
    try:
        assert _get(preview.url + "frames/step_000000.png") == (200, b"\x89PNG a real frame")
        status, body = _get(preview.url + "frames/step_000002.png")
        assert status == 404 and b"not for the page" not in body
    finally:
        preview.stop()


def test_a_request_for_another_host_name_is_refused(tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example.com whose name resolves to 127.0.0.1 reaches the
    server, but says `Host: evil.example.com`; it gets nothing. The loopback names and the
    printed address get the page."""
    preview = Preview(RunDir(tmp_path / "run")).start()
    port = preview.url.rstrip("/").rsplit(":", 1)[1]
    try:

        def status(host: str) -> int:
            request = urllib.request.Request(preview.url + "state.json", headers={"Host": host})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    json.loads(response.read())
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status("evil.example.com") == 421
        assert status(f"evil.example.com:{port}") == 421
        assert status(f"127.0.0.1:{int(port) + 1}") == 421
        assert status(f"127.0.0.1:{port}") == 200
        assert status(f"localhost:{port}") == 200
        assert _get(preview.url)[0] == 200  # as a browser asks for the printed address
    finally:
        preview.stop()
