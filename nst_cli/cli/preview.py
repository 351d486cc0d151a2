"""`nst stylize --preview`: a live, read-only page of the running stylisation.

A small HTTP server on 127.0.0.1 (a free port, printed at the start) in a background thread,
fed by a callback like any other: it keeps the newest image (re-encoded at most every
IMAGE_INTERVAL seconds, so a fast run does not spend its time on JPEGs), the loss history and
the frames written so far. The page is one self-contained HTML file (no external assets) that
polls /state.json and redraws the image, the step, the loss curves and the frame strip. Only
GET of its four kinds of paths is answered; the server stops when the run ends.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from nst_cli.core.optimize import StepEvent
from nst_cli.core.pixels import to_pil
from nst_cli.io.plot import SERIES
from nst_cli.io.rundir import FRAME_PATTERN, RunDir
from nst_cli.io.web import host_allowed
from nst_cli.run.progress import scale_label

#: Seconds between re-encodings of the live image.
IMAGE_INTERVAL = 0.5
#: Seconds between updates of the step, losses and curve points the page shows.
STATE_INTERVAL = 0.1
#: Loss points sent to the page at most (older ones are thinned).
MAX_POINTS = 1000

#: The page itself (package data): no external assets, it polls /state and /image.
PAGE = (resources.files("nst_cli.cli") / "preview_page.html").read_bytes()


class Preview:
    """The live page's server and the callback that feeds it."""

    def __init__(
        self,
        run_dir: RunDir,
        host: str = "127.0.0.1",
        port: int = 0,
        frame_pattern: re.Pattern[str] = FRAME_PATTERN,
    ) -> None:
        self.run_dir = run_dir
        #: The names of the frames the page lists and serves (a video run's are 000123.png).
        self.frame_pattern = frame_pattern
        self._lock = threading.Lock()
        self._image: bytes | None = None
        self._image_version = 0
        self._image_time = 0.0
        self._state: dict[str, Any] = {"step": 0, "total": 0, "scale": "", "status": "starting"}
        self._losses: list[list[float]] = []
        self._state_time = -math.inf
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        host = self._server.server_address[0]
        return host.decode() if isinstance(host, bytes) else str(host)

    @property
    def server_port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}/"

    def start(self) -> Preview:
        self._thread.start()
        return self

    def stop(self, status: str = "finished") -> None:
        with self._lock:
            self._state["status"] = status
        self._server.shutdown()
        self._server.server_close()

    def __call__(self, event: StepEvent) -> None:
        now = time.monotonic()
        # A few updates a second are all a page shows; reading losses is a GPU sync.
        if not event.is_final and now - self._state_time < STATE_INTERVAL:
            return
        self._state_time = now
        with self._lock:
            if self._losses and event.step < self._losses[-1][0]:
                self._losses = []  # a new optimisation (the next frame of a clip): a new curve
            self._state.update(
                step=event.step,
                total=event.total_steps,
                scale=scale_label(event.stage),
                status="finished" if event.is_final else "running",
                losses=dict(event.losses),
            )
            self._losses.append([event.step, *(float(event.losses.get(n, 0.0)) for n in SERIES)])
            due = now - self._image_time >= IMAGE_INTERVAL or event.is_final
        if due:
            buffer = io.BytesIO()
            to_pil(event.image).save(buffer, format="JPEG", quality=90)
            with self._lock:
                self._image = buffer.getvalue()
                self._image_version += 1
                self._image_time = now

    def state(self) -> dict[str, Any]:
        with self._lock:
            points = self._losses
            if len(points) > MAX_POINTS:
                stride = len(points) // MAX_POINTS + 1
                points = points[::stride] + [points[-1]]
            return {
                **self._state,
                "image_version": self._image_version,
                "series": list(SERIES),
                "colors": [f"rgb({r},{g},{b})" for r, g, b in SERIES.values()],
                "points": points,
                "frames": self._frames(),
            }

    def image(self) -> bytes | None:
        with self._lock:
            return self._image

    def _frames(self) -> list[str]:
        if not self.run_dir.frames.is_dir():
            return []
        return sorted(
            p.name for p in self.run_dir.frames.iterdir() if self.frame_pattern.fullmatch(p.name)
        )


def _handler(preview: Preview) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "nst-preview"

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if not host_allowed(self.headers.get("Host"), preview.server_port, preview.host):
                # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1
                # reaches this server, but its requests still say `Host: evil.example`.
                self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host")
                return
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(PAGE, "text/html; charset=utf-8")
            elif path == "/state.json":
                self._send(json.dumps(preview.state()).encode(), "application/json")
            elif path == "/image.jpg":
                data = preview.image()
                if data is None:
                    self.send_error(HTTPStatus.NOT_FOUND, "no image yet")
                else:
                    self._send(data, "image/jpeg")
            elif path.startswith("/frames/") and preview.frame_pattern.fullmatch(path[8:]):
                data = _own_file(preview.run_dir.frames, path[8:])
                if data is None:
                    self.send_error(HTTPStatus.NOT_FOUND)
                else:
                    self._send(data, "image/png")
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _refuse(self) -> None:
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "the preview is read-only")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the terminal belongs to the progress display

    return Handler


def _own_file(folder: Path, name: str) -> bytes | None:
    """A regular file in `folder` (itself no link), read without following a link: a link
    planted under a frame's name (to /etc/passwd, say) is never served."""
    if folder.is_symlink():
        return None
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(folder / name, os.O_RDONLY | nofollow)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read()
