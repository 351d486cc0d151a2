"""The Typer options made from the flag table (`config.flags.FLAGS`), and what they give a
command: the values it reads itself and the overrides for the config.

A command names the table's flags by declaring one parameter, `flags: FlagValues`; the
decorator puts the table's options for that command there (so `--help` lists them in place)
and hands the command their values in one object."""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nst_cli.cli.options import complete_from, default_help
from nst_cli.config.flags import FLAGS, Flag, flags_of


class FlagValues:
    """The values of a command's table flags, by Python name (None: not given)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def get(self, name: str) -> Any:
        return self._values.get(name)

    def overrides(self, **replaced: Any) -> dict[str, Any]:
        """Dotted config keys -> the values given, with `replaced` (by flag name) in place of
        the flags' own: a command that read `content` from a positional argument passes it."""
        values = {**self._values, **replaced}
        return {FLAGS[name].key: _plain(v) for name, v in values.items() if v is not None}


#: The `flags` parameter's default (the decorator gives every call its own values).
NO_FLAGS = FlagValues({})


def config_flags(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Put the table's options for `command` where the function declares `flags`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("flags")
        names = flags_of(command)
        made = [
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                annotation=_option(name, FLAGS[name]),
            )
            for name in names
        ]  # fmt: skip
        params[at : at + 1] = made

        @functools.wraps(func)
        def command_function(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            return func(**kwargs, flags=FlagValues(given))

        command_function.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command_function.__annotations__ = {p.name: p.annotation for p in params} | {
            "return": signature.return_annotation
        }
        return command_function

    return decorate


def _option(name: str, flag: Flag) -> Any:
    """The Typer option of one table entry: its type (an Enum of a closed list of choices),
    spellings, help with the model's default, panel, metavar and completion."""
    kind: Any = flag.type
    if flag.choices and not flag.open_choices:
        kind = _choice_enum(name, flag.choices)
    info = typer.Option(
        *flag.decls,
        help=flag.help + (default_help(flag.key) if flag.show_default else ""),
        rich_help_panel=flag.panel,
        metavar=flag.metavar,
        autocompletion=complete_from(flag.choices) if flag.open_choices else None,
        show_default=not (flag.decls and "/" in flag.decls[0]),
    )
    return Annotated[kind | None, info]


def _choice_enum(name: str, choices: tuple[str, ...]) -> Any:
    """A closed list of choices as the Enum Typer checks and lists (`[lbfgs|adam]`)."""
    return enum.Enum(name.title().replace("_", ""), {c: c for c in choices}, type=str)


def _plain(value: Any) -> Any:
    """A flag's value as the config reads it: an Enum's text, a path's."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value
