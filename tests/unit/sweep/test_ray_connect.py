"""`--address auto` joins whatever Ray cluster this machine runs, maybe another user's: nst
says which one it joined and how to have a private one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from nst_cli.sweep.ray_executor import connect


class _FakeRay:
    """The part of the ray module connect() uses, for a cluster someone else started."""

    def __init__(self) -> None:
        self.address: str | None = None

    def is_initialized(self) -> bool:
        return False

    def init(self, address: str, **_: Any) -> Any:
        self.address = address

        class Context:
            address_info = {
                "gcs_address": "10.1.2.3:6379",
                "session_dir": "/tmp/ray/session_2026-12-03_12-00-00_123456_777/",
            }

        return Context()

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 64.0}


def test_joining_a_running_cluster_says_which_and_how_to_have_a_private_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ray = _FakeRay()
    with caplog.at_level(logging.WARNING, logger="nst_cli"):
        assert connect(ray, "auto") is True
    assert ray.address == "auto"
    message = caplog.text
    assert "joined the Ray cluster at 10.1.2.3:6379" in message
    assert "session_2026-12-03_12-00-00_123456_777" in message and "64 CPUs" in message
    assert "ray start --head --port PORT" in message


def test_a_local_instance_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    ray = _FakeRay()
    with caplog.at_level(logging.WARNING, logger="nst_cli"):
        connect(ray, None)
    assert ray.address == "local" and "joined" not in caplog.text


def test_the_ray_page_says_how_to_start_a_private_cluster() -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "usage" / "ray.md").read_text()
    assert "--address auto" in page and "another user's" in page
    assert "ray start --head --port" in page
