"""Serving the studio (`nst studio`, the `[studio]` extra: `pip install "nst-cli[studio]"`):
safe by default. It binds to 127.0.0.1 and answers only requests whose Host header names this
machine (a page on another site cannot reach it through DNS rebinding); another host, or a
public share link, only with a password. Offline: no analytics, no fonts or scripts from
outside (the theme uses the system's fonts)."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from nst_cli.errors import ConfigError
from nst_cli.io.web import host_allowed, is_loopback

#: The environment variable a password may come from (so it stays out of shell history).
PASSWORD_ENV = "NST_STUDIO_PASSWORD"
#: The largest upload the page accepts; the images' own size limit is checked after.
MAX_UPLOAD = "200mb"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Access:
    """Who may reach the studio: where it listens, and the login when it is not private."""

    host: str = "127.0.0.1"
    password: str | None = None
    user: str = "nst"
    share: bool = False

    def check(self) -> None:
        """Refuse, in one line, a studio that others could reach without a password."""
        if self.password is not None and not self.password.strip():
            raise ConfigError(f"--password: empty; give one (or set {PASSWORD_ENV})")
        if self.password is None and not is_loopback(self.host):
            raise ConfigError(
                f"--host {self.host}: other machines could use the studio; give a password "
                f"too (--password, or {PASSWORD_ENV}), or leave --host at 127.0.0.1"
            )
        if self.password is None and self.share:
            raise ConfigError(
                f"--share: a public link needs a password (--password, or {PASSWORD_ENV})"
            )

    def check_address(self) -> None:
        """Refuse, in one line, a --host that is not an address of this machine (the server
        would try a hundred ports there before giving up)."""
        try:
            family, kind, _, _, address = socket.getaddrinfo(self.host, 0, type=socket.SOCK_STREAM)[
                0
            ]
            with socket.socket(family, kind) as probe:
                probe.bind(address)
        except OSError as exc:  # socket.gaierror too: a name that does not resolve
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"--host {self.host}: not an address of this machine ({reason}); use "
                "127.0.0.1, 0.0.0.0 (every interface) or one of this machine's addresses"
            ) from None

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.password else None


class HostCheck:
    """ASGI middleware: a request whose Host header does not name this server (a loopback
    name, or the address it is bound to, with its port) gets 421 and nothing else."""

    def __init__(self, app: Callable[..., Awaitable[None]], bound: str = "127.0.0.1") -> None:
        self.app, self.bound = app, bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            port = (scope.get("server") or ("", 0))[1]
            if not host_allowed(host, port, self.bound):
                await _refuse(scope, send)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = b"421 Misdirected Request: this studio answers only to its own address\n"
    await send({"type": "http.response.start", "status": 421,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def offline() -> None:
    """Gradio's analytics and version check off, before Gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def theme() -> Any:
    """Gradio's default look with the system's fonts (the default fetches Google Fonts)."""
    import gradio as gr

    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
    )


def default_jobs() -> int:
    """Runs at a time: one on a CPU (each uses every core); on a GPU, one per 8 GiB."""
    import torch

    if not torch.cuda.is_available():
        return 1
    gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    return max(1, min(4, int(gib // 8)))


def launch(
    page: Any,
    access: Access,
    port: int | None,
    readable: list[Path],
    jobs: int,
    *,
    open_browser: bool = False,
) -> str:
    """Serve `page` in the background; returns its local address."""
    from starlette.middleware import Middleware

    access.check()
    # Gradio opens an upload's header to read its mode; Pillow's own bomb check there would
    # answer a huge declared size with a bare "Error". nst's loader checks every image the
    # studio decodes against its own limit, with one clear line (uploads.Uploads.adopt).
    Image.MAX_IMAGE_PIXELS = None
    middleware = [Middleware(HostCheck, bound=access.host)] if is_loopback(access.host) else []
    page.queue(default_concurrency_limit=jobs)
    try:
        _start(page, access, port, readable, middleware, open_browser)
    except OSError as exc:  # the port taken, or the address not this machine's
        where = f"--port {port}" if port else f"--host {access.host}"
        raise ConfigError(
            f"{where}: cannot listen there ({str(exc).split('. ')[0]}); pick another port, or "
            "leave --port out to take the first free one from 7860"
        ) from None
    return str(page.local_url)


def _start(
    page: Any,
    access: Access,
    port: int | None,
    readable: list[Path],
    middleware: list[Any],
    open_browser: bool,
) -> None:
    page.launch(
        server_name=access.host,
        server_port=port,
        auth=access.auth,
        share=access.share,
        allowed_paths=[str(p) for p in readable],
        max_file_size=MAX_UPLOAD,
        theme=theme(),
        app_kwargs={"middleware": middleware},
        prevent_thread_lock=True,
        inbrowser=open_browser,
        ssr_mode=False,
        quiet=True,
        show_error=True,
    )
