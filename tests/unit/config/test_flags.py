"""The flag table: every flag sets the key it names, on every command that has it, and the
command line offers exactly the table's flags (no second declaration beside it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from nst_cli.cli import app
from nst_cli.config.flags import FLAGS, STYLIZE, SWEEP, VIDEO_COMMAND, flag_for, flags_of
from nst_cli.config.models import Config

SAMPLES = Path(__file__).resolve().parents[3] / "samples"

#: A value each kind of flag can take that differs from its default.
VALUES = {float: "3.5", int: "321", bool: None}
EXPECTED = {float: 3.5, int: 321}
CHOICES = {
    "color": "luminance", "optimizer": "adam", "pooling": "avg", "preset": "quality",
    "init": "noise", "device": "cpu",
}  # fmt: skip
TEXT = {"tile": ("128", 128), "output_depth": ("16", 16)}


def _lookup(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def _arguments(name: str) -> tuple[list[str], object]:
    flag = FLAGS[name]
    option = "--" + name.replace("_", "-")
    if flag.type is bool:
        return [option], True
    if name in CHOICES:
        return [option, CHOICES[name]], CHOICES[name]
    if name in TEXT:
        given, expected = TEXT[name]
        return [option, given], expected
    return [option, VALUES[flag.type]], EXPECTED[flag.type]


SCALARS = [n for n in FLAGS if n not in ("content", "style", "output")]


@pytest.mark.parametrize("command", [STYLIZE, VIDEO_COMMAND])
def test_every_flag_sets_its_key(command: str, tmp_path: Path) -> None:
    # Each of the command's flags, given alone, lands at its key in the resolved config.
    inputs = [str(SAMPLES / ("pan.mp4" if command == VIDEO_COMMAND else "car.png")),
              str(SAMPLES / "fluid.png")]  # fmt: skip
    for name in [n for n in flags_of(command) if n in SCALARS]:
        words, expected = _arguments(name)
        result = CliRunner().invoke(
            app, [command, *inputs, "-o", str(tmp_path / "out"), *words, "--print-config"]
        )
        assert result.exit_code == 0, (name, result.output)
        assert _lookup(yaml.safe_load(result.output), FLAGS[name].key) == expected, name


def test_the_commands_offer_the_tables_flags() -> None:
    # A flag named for a key in the table and not offered, or offered by a command the table
    # does not list, means a second declaration somewhere.
    group = typer.main.get_command(app)
    for command in (STYLIZE, VIDEO_COMMAND, SWEEP):
        offered = {p.name for p in group.commands[command].params}  # type: ignore[attr-defined]
        for name, flag in FLAGS.items():
            assert (name in offered) == (command in flag.commands or name == "output"), (
                command, name,
            )  # fmt: skip


def test_every_flag_names_a_config_key() -> None:
    defaults = Config().model_dump()
    for flag in FLAGS.values():
        _lookup(defaults, flag.key)  # KeyError: a flag for a key that is not there


def test_flag_for_a_key() -> None:
    assert flag_for("weights.style", STYLIZE) == "--style-weight"
    assert flag_for("weights.style", SWEEP) is None  # sweep sets it with --set
    assert flag_for("video.steps", VIDEO_COMMAND) == "--frame-steps"


def test_a_flags_spelling_in_a_config_names_the_key(tmp_path: Path) -> None:
    from nst_cli.config.resolve import resolve_config
    from nst_cli.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("style_weight: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'weights.style'"):
        resolve_config(path)
