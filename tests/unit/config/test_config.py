"""Config loading, validation and override precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from nst_cli.config.choices import DEFAULT_STYLE_LAYERS
from nst_cli.config.loading import dump_yaml
from nst_cli.config.models import Config
from nst_cli.config.overrides import parse_set_option
from nst_cli.config.resolve import resolve_config
from nst_cli.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = Config()
    assert config.layers.content == {"relu4_2": 1.0}
    assert config.layers.style == DEFAULT_STYLE_LAYERS
    assert config.optimizer.name == "lbfgs" and config.optimizer.effective_lr == 1.0
    assert config.model.weights == "caffe" and config.model.pooling == "max"
    assert config.init == "content" and config.device == "auto"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "configs"
    sub.mkdir()
    path = write(sub, "content: ../img/a.png\nstyle: b.jpg\n")
    config = resolve_config(path)
    assert config.content == sub / "../img/a.png"
    assert config.style == sub / "b.jpg"
    assert config.output == Path("outputs") / "c"


def test_no_config_file_output_named_after_images() -> None:
    config = resolve_config(None, overrides={"content": "photos/cat.jpg", "style": "art/waves.png"})
    assert config.output == Path("outputs/cat_waves")


def test_precedence_file_then_set_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "steps: 10\nweights:\n  style: 5\n")
    config = resolve_config(path, ["steps=20", "weights.style=1e5"], {"steps": 30})
    assert config.steps == 30
    assert config.weights.style == 1e5
    assert config.weights.content == 1.0  # untouched default


def test_set_parses_yaml_values() -> None:
    assert parse_set_option("layers.style={relu1_1: 2}") == ("layers.style", {"relu1_1": 2})
    assert parse_set_option("optimizer.name=adam") == ("optimizer.name", "adam")
    config = resolve_config(None, ["layers.style={relu1_1: 2, relu3_1: 0.5}", "weights.tv=1e-3"])
    assert config.layers.style == {"relu1_1": 2.0, "relu3_1": 0.5}
    assert config.weights.tv == pytest.approx(1e-3)


def test_one_layers_weight_set_keeps_the_rest_of_the_table(tmp_path: Path) -> None:
    """`--set layers.style.relu5_1=0.25` changes that weight in the table in force: the
    default's when the config has none, the file's when it has one."""
    config = resolve_config(None, ["layers.style.relu5_1=0.25"])
    assert config.layers.style == {
        "relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 0.25,
    }  # fmt: skip
    assert resolve_config(None, ["layers.content.relu5_2=0.5"]).layers.content == {
        "relu4_2": 1.0, "relu5_2": 0.5,
    }  # fmt: skip
    path = tmp_path / "layers.yaml"
    path.write_text("layers:\n  style: {relu1_1: 1, relu3_1: 1}\n")
    own = resolve_config(path, ["layers.style.relu3_1=0.5"])
    assert own.layers.style == {"relu1_1": 1.0, "relu3_1": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [1\n", "not valid YAML at line"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("stesp: 3\n", "stesp: unknown key (did you mean 'steps'?)"),
        ("weights:\n  stlye: 3\n", "weights.stlye: unknown key (did you mean 'style'?)"),
        ('"[": 1\n', "[: unknown key (valid keys: preset,"),  # looks like a union form's name
        ('style:\n  - path: a.png\n    "x[0]": 1\n', "style[0].x[0]: unknown key"),
        ("steps: many\n", "steps: Input should be a valid integer"),
        ("steps: 0\n", "steps: Input should be greater than 0"),
        ("resolution: -5\n", "resolution: Input should be greater than 0"),
        ("weights:\n  style: .nan\n", "weights.style: must be a finite number"),
        ("weights:\n  content: .inf\n", "weights.content: must be a finite number"),
        ("layers:\n  style: {relu9_9: 1}\n", "unknown VGG19 layer 'relu9_9'"),
        ("layers:\n  style: {}\n", "layers.style: needs at least one layer"),
        ("device: gpu\n", "'gpu' is not a device"),
        ("optimizer:\n  name: sgd\n", "optimizer.name"),
        ("optimizer:\n  lr: 0\n", "optimizer.lr: must be positive"),
        ("model:\n  weights: imagenet\n", "not a weight source"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("nokey", "expected key.path=value"),
        ("=3", "empty key"),
        ("steps.deep=1", "steps: Input should be a valid integer, or a list of them"),
        ("weights.style.x=1", "weights.style: Input should be a valid number"),
        ("weights.style=abc", "weights.style: Input should be a valid number, unable to parse"),
        ("colour=1", "colour: unknown key"),
    ],
)
def test_bad_set_items(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_config(None, [item])


def test_missing_and_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_config(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ConfigError, match="bin.yaml: not a text file; expected a YAML config"):
        resolve_config(binary)


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert resolve_config(write(tmp_path, "")).steps == Config().steps


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = resolve_config(
        None, ["weights.style=123", "optimizer.name=adam"], {"content": "a.png"}
    )
    text = dump_yaml({**config.to_yaml_dict(), "run": {"status": "completed"}})
    again = resolve_config(write(tmp_path, text, "again.yaml"))
    assert again.weights.style == 123 and again.optimizer.name == "adam"
    assert yaml.safe_load(text)["run"]["status"] == "completed"


def test_set_below_a_single_value_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "steps: 5\n")
    with pytest.raises(ConfigError, match="'steps' is a single value, not a section"):
        resolve_config(path, ["steps.x=1"])


def _billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    previous = "a"
    for i in range(1, levels):
        name = chr(ord("a") + i)
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text + f"sweep: {{weights.style: *{previous}}}\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.write_text("x: 1\n" + "#" * 2_000_000), "too large for a config"),
        (lambda p: p.write_text(_billion_laughs()), "expands to over 100,000 values"),
        (lambda p: p.write_text("[" * 5000 + "]" * 5000), "nested over 50 levels"),
    ],
)
def test_config_reading_is_bounded(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "hostile.yaml"
    make(path)
    with pytest.raises(ConfigError, match=message):
        resolve_config(path)
    from nst_cli.config.loading import read_sweep_section

    if message != "not a regular file":
        with pytest.raises(ConfigError, match=message):
            read_sweep_section(path)


def test_dev_zero_is_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve_config("/dev/zero")


def test_small_aliases_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &w {relu1_1: 1.0, relu3_1: 2.0}\nlayers:\n  style: *w\n")
    with pytest.raises(ConfigError, match="base: unknown key"):
        resolve_config(path)  # the alias expanded fine; the unknown top-level key is the error
    path = write(tmp_path, "layers:\n  style: &w {relu1_1: 1.0}\n  content: *w\n")
    assert resolve_config(path).layers.content == {"relu1_1": 1.0}


def test_auto_precondition_is_the_pyramid_first_a_light_one_later_and_none_with_masks() -> None:
    plain = Config(content="a.png", style="s.png", scales=[256, 362, 512])
    assert [plain.preconditioner(i) for i in (0, 1, 2)] == [
        "pyramid",
        "light-pyramid",
        "light-pyramid",
    ]
    masked = Config(
        content="a.png", style=["s.png", "t.png"], masks={"m.png": 0, "n.png": 1}, scales=[256]
    )
    assert [masked.preconditioner(i) for i in (0, 1)] == ["none", "none"]
    light = Config(content="a.png", style="s.png", optimizer={"precondition": "light-pyramid"})
    assert light.preconditioner(0) == "light-pyramid"
    chosen = Config(content="a.png", style="s.png", optimizer={"precondition": "none"})
    assert chosen.preconditioner(0) == "none"


def test_a_bad_entry_in_a_style_list_is_named_in_the_configs_own_words(tmp_path) -> None:
    from nst_cli.config.resolve import resolve_config
    from nst_cli.errors import ConfigError

    cases = {
        "[a.png, {path: b.png, weight: abc}]": "style[1].weight: Input should be a valid number",
        "[a.png, 5]": "style[1].path: Input is not a valid path (got 5)",
        "[a.png, {path: b.png, wieght: 2}]": "style[1].wieght: unknown key (did you mean 'weight'?)",
    }
    for value, expected in cases.items():
        config = tmp_path / "c.yaml"
        config.write_text(f"content: c.png\nstyle: {value}\n")
        with pytest.raises(ConfigError) as caught:
            resolve_config(config)
        message = str(caught.value)
        assert expected in message, message
        assert "lax-or-strict" not in message and "list[StyleImage]" not in message


def test_a_yaml_alias_inside_itself_is_one_line(tmp_path: Path) -> None:
    """`a: &a [*a]` loads as a list that holds itself: walking it raised RecursionError."""
    for text in ("steps: &a [*a]\n", "a: &a {b: *a}\nsteps: 3\n"):
        config = tmp_path / "loop.yaml"
        config.write_text(text)
        with pytest.raises(ConfigError, match="refers to the value it is inside"):
            resolve_config(config)


def test_resolution_has_an_upper_bound_and_a_long_number_is_cut_short() -> None:
    with pytest.raises(ConfigError) as error:
        resolve_config(None, [f"resolution={'9' * 300}"])
    message = str(error.value)
    assert "less than or equal to 65535" in message and len(message) < 200
    assert resolve_config(None, ["resolution=65535"]).resolution == 65535


def test_protect_off_is_read_as_yaml_writes_it() -> None:
    # YAML 1.1 reads a bare `off` as false; `protect: off` (a file, or --set) means off.
    from nst_cli.config.resolve import resolve_config

    config = resolve_config(None, ["protect=off"], {"content": "a.png", "style": "b.png"})
    assert config.protect == "off"
