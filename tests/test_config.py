import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ({"source": "table"}, "stream: source 'table' needs a `table:` block"),
        ({"source": "table", "table": {"path": "t.csv", "window": {"rows": 10, "column": "w"}}},
         "stream.table.window: set exactly one of column, timestamp (+ length), rows, classes; got ['column', 'rows']"),
        ({"source": "table", "table": {"path": "t.csv", "window": {"timestamp": "ts"}}},
         "stream.table.window: timestamp and length go together"),
        ({"source": "kafka"}, "stream.source: Input should be"),
    ],
)
def test_stream_source_blocks_are_checked(tmp_path, stream, expected):
    write_params(tmp_path, tiny_params(stream=stream))
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_source_aliases_and_defaults(tmp_path):
    write_params(tmp_path, tiny_params(stream={"source": "mnist1d-classinc"}))
    assert load_params(tmp_path / "params.yaml").stream.source == "mnist1d-classinc"
    write_params(tmp_path, tiny_params(stream={"source": "river-drift"}))
    assert load_params(tmp_path / "params.yaml").stream.river.generator == "agrawal"


def _second_opinions(raw: dict, model: type, where: str) -> list[str]:
    """Keys of `raw` whose value differs from the pydantic default of `model`."""
    out = []
    for key, value in raw.items():
        field = model.model_fields[key]
        annotation = field.annotation
        nested = getattr(annotation, "model_fields", None) if isinstance(annotation, type) else None
        if isinstance(value, dict) and nested is not None:
            out += _second_opinions(value, annotation, f"{where}.{key}")
            continue
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump()
        if value != default:
            out.append(f"{where}.{key}: params.yaml {value!r}, Python {default!r}")
    return out


def test_params_yaml_and_the_python_defaults_are_one_set():
    """The pydantic Configs hold the defaults; the committed params.yaml shows knobs at those
    same values (for DVC to track and users to see), never a second opinion."""
    import yaml

    from components.config import Params
    from components.methods import method_type
    from tests.conftest import REPO

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    methods = raw.pop("methods")
    stream = raw.pop("stream")
    for choice in ("methods", "stream"):  # like methods: and stream:, the project's own choice, not a default
        raw["tune"].pop(choice)
    raw["text"].pop("methods")
    differ = _second_opinions(raw, Params, "")
    differ += _second_opinions({k: v for k, v in stream.items()}, Params.model_fields["stream"].annotation, ".stream")
    for entry, block in methods.items():
        differ += _second_opinions(block, method_type(entry, block).Config, f".methods.{entry}")
    assert not differ, "; ".join(differ)


@pytest.mark.parametrize(("block", "key", "value"), [
    ("pretrain", "epochs", True), ("pretrain", "epochs", 2.5), ("pretrain", "lr", "fast"), ("evaluation", "prequential", "yes"),
])
def test_types_are_strict(tmp_path, block, key, value):
    bad = tiny_params()
    bad[block] = {**bad.get(block, {}), key: value}
    write_params(tmp_path, bad)
    with pytest.raises(ParamsError, match=rf"{block}\.{key}: Input should be a valid"):
        load_params(tmp_path / "params.yaml")


def test_a_method_block_with_a_bool_for_a_number_is_refused_when_the_workspace_opens(tmp_path):
    from components.workspace import open_workspace

    bad = tiny_params()
    bad["methods"]["replay"] = {"epochs": True}
    write_params(tmp_path, bad)
    with pytest.raises(ParamsError, match=r"methods\.replay\.epochs: Input should be a valid integer"):
        open_workspace("params.yaml", tmp_path)


def test_yaml_11_off_from_dvc_exp_run_means_off(tmp_path):
    """`dvc exp run -S` writes `detector: off` unquoted, which YAML 1.1 reads as false."""
    params = tiny_params()
    params["ops"] = {"drift": {"detector": False}}
    write_params(tmp_path, params)
    assert load_params(tmp_path / "params.yaml").ops.drift.detector == "off"


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "no CUDA GPU is available here"), ("banana", "'banana' is not a device"), ("mps", "not supported"),
])
def test_a_device_that_is_not_there_is_one_line(device, message):
    import torch

    from components.runtime import pick_device

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ParamsError, match=message):
        pick_device(device)


@pytest.mark.parametrize("how", ["flows", "prefect_env.sh"])
def test_no_usage_telemetry_leaves_the_machine(how):
    """MLflow reports usage from every client and server unless told not to, and it reads
    DO_NOT_TRACK=1 (what prefect_env.sh exports) as "no". A stage (it imports `flows`) and
    anything started after `source scripts/prefect_env.sh` (./run.sh's MLflow server) have it off."""
    repo = Path(__file__).resolve().parents[1]
    check = "import mlflow.telemetry.utils as t; print(t.is_telemetry_disabled())"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DO_NOT_TRACK": "1"}  # no CI markers
    if how == "flows":
        command = [sys.executable, "-c", f"import flows; {check}"]
    else:
        command = ["bash", "-c", f'source scripts/prefect_env.sh && "{sys.executable}" -c "{check}"']
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
