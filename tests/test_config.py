import pytest

from components.config import load_params
from components.errors import ParamsError
from components.methods import parse_method_config

from tests.conftest import tiny_params, write_params


def test_repository_params_are_valid_and_every_method_entry_parses():
    from tests.conftest import REPO

    params = load_params(REPO / "params.yaml")
    assert {"finetune", "lora", "distill", "joint"} <= set(params.methods)
    for entry, raw in params.methods.items():
        parse_method_config(entry, raw)


def test_wrong_type_gives_one_line_naming_file_and_key(tmp_path):
    bad = tiny_params()
    bad["pretrain"] = {**bad["pretrain"], "epochs": "many"}
    write_params(tmp_path, bad)
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert "params.yaml" in message and "pretrain.epochs" in message and "'many'" in message


def test_unknown_key_and_unknown_method_are_refused():
    with pytest.raises(ParamsError, match="methods.lora.rnak"):
        parse_method_config("lora", {"rnak": 3})
    with pytest.raises(ParamsError, match="unknown method 'lorra'.*known methods"):
        parse_method_config("lorra", {})
    assert parse_method_config("lora-r8", {"method": "lora", "rank": 8}).rank == 8


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "params.yaml")


def test_missing_method_entry_lists_the_entries():
    from components.methods import entry_config

    with pytest.raises(ParamsError, match=r"no entry 'lora'; entries: \['finetune'\]"):
        entry_config({"finetune": {}}, "lora")
