"""Config files and overrides: defaults, type checks, and errors that name the fix."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from workbench.config import DEFAULTS, load_config, parse_value
from workbench.errors import ConfigError


def write(tmp_path, text, name="exp.py"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_names_override_defaults_and_name_defaults_to_stem(tmp_path):
    path = write(tmp_path, "import math\nbatch_size = 32\n_private = 3\nruns = [dict(algorithm='sgd', lr=0.1)]\n",
                 name="my_exp.py")
    config = load_config(path)
    assert config["batch_size"] == 32
    assert config["name"] == "my_exp"
    assert config["epochs"] == DEFAULTS["epochs"]
    assert "math" not in config and "_private" not in config


def test_overrides_are_literals_type_checked_and_split_on_first_equals(tmp_path):
    path = write(tmp_path, "runs = [dict(algorithm='sgd')]\n")
    config = load_config(path, ["epochs=3", "save_every=5", "seeds=[1, 2]", "name=a=b", "max_steps=None",
                                "model_args={'hidden': [4, 4]}", "target=97.5"])
    assert config["epochs"] == 3
    assert config["save_every"] == 5.0 and isinstance(config["save_every"], float)  # int stands for float
    assert config["seeds"] == [1, 2]
    assert config["name"] == "a=b"
    assert config["max_steps"] is None
    assert config["model_args"] == {"hidden": [4, 4]}
    assert config["target"] == 97.5


def test_unknown_name_suggests_the_closest(tmp_path):
    path = write(tmp_path, "bach_size = 3\nruns = [dict(algorithm='sgd')]\n")
    with pytest.raises(ConfigError, match="bach_size.*Did you mean 'batch_size'"):
        load_config(path)
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        load_config(write(tmp_path, "runs = [dict(algorithm='sgd')]\n", "ok.py"), ["epoch=2"])


@pytest.mark.parametrize("override, message", [
    ("epochs=abc", "epochs must be int"),
    ("epochs=2.5", "epochs must be int"),
    ("batch_size=True", "batch_size must be int"),
    ("lr", "not of the form key=value"),
    ("epochs=0", "positive integer"),
    ("dtype=float16", "dtype must be one of"),
])
def test_bad_overrides_name_the_problem(tmp_path, override, message):
    path = write(tmp_path, "runs = [dict(algorithm='sgd')]\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, [override])


def test_missing_file_lists_known_configs(tmp_path):
    (tmp_path / "default.py").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="does not exist.*Did you mean 'default.py'"):
        load_config(tmp_path / "defualt.py")


def test_empty_runs_and_unstoppable_configs_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="runs.*empty"):
        load_config(write(tmp_path, "epochs = 1\n"))
    with pytest.raises(ConfigError, match="nothing would stop"):
        load_config(write(tmp_path, "runs = [dict(algorithm='sgd')]\n"), ["epochs=None"])


def test_a_failing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="failed to run.*ZeroDivisionError"):
        load_config(write(tmp_path, "x = 1 / 0\n"))


def test_parse_value_falls_back_to_string():
    assert parse_value("adamw") == "adamw"
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value(" 3 ") == 3


def test_the_readme_table_of_config_names_is_the_spec():
    from workbench.config import FIELDS, markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, "regenerate it: python -m workbench.config"
    assert all(f"`{field.name}`" in markdown_table() for field in FIELDS)


def test_every_field_is_documented_and_its_default_passes_its_own_check():
    from workbench.config import FIELDS, Config

    for field in FIELDS:
        assert field.help.strip(), field.name
        assert field.coerce(copy.deepcopy(field.default), "the defaults") == field.default, field.name
    config = Config.of({"runs": [dict(algorithm="sgd")]})
    assert config.epochs == 1 and config["workers"] == "auto"
    with pytest.raises(AttributeError, match="read-only"):
        config.epochs = 3
    assert config.replace(epochs=3).epochs == 3 and config.epochs == 1
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        config.replace(epochs=0)
