"""The slow model: built-in image CNN, and the user's own model through a factory, with the
contract each method needs checked when the model is built."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from components.config import load_params
from components.errors import ParamsError
from components.models import adaptable_layers, build_model
from tests.conftest import TINY_PARAMS, write_params

NET = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, in_features, num_classes, width):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def features(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.features(x))


def build(in_features, num_classes, width=16):
    return Tiny(in_features, num_classes, width)


def plain(in_features, num_classes):
    return nn.Sequential(nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, num_classes))


def wrong(in_features, num_classes):
    return nn.Linear(in_features, 3)
'''


@pytest.fixture
def project(tmp_path, tiny_root):
    """A project with the user's own model package and the tiny stream."""
    (tmp_path / "custom_models").mkdir()
    (tmp_path / "custom_models" / "__init__.py").write_text("")
    (tmp_path / "custom_models" / "tiny.py").write_text(NET)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "streams").symlink_to(tiny_root / "data" / "streams", target_is_directory=True)
    (tmp_path / "data" / "raw").mkdir()
    return tmp_path


def _params(root, **model):
    params = copy.deepcopy(TINY_PARAMS)
    params["model"] = model
    write_params(root, params)
    return load_params(root / "params.yaml")


def test_a_users_factory_builds_their_model_with_its_kwargs(project):
    p = _params(project, kind="custom", factory="custom_models.tiny:build", kwargs={"width": 12})
    model = build_model(p.model, 40, 10, root=project)
    assert type(model).__name__ == "Tiny" and model.head.in_features == 12
    assert model(torch.zeros(3, 40)).shape == (3, 10)


def test_a_model_without_a_part_a_method_needs_is_refused_in_one_line_naming_both(project):
    from components.methods import load_method
    from components.workspace import open_workspace

    _params(project, kind="custom", factory="custom_models.tiny:plain")
    workspace = open_workspace("params.yaml", project)
    load_method(workspace, "finetune", seed=0, untrained_slow=True)  # needs logits only
    with pytest.raises(ParamsError) as error:
        load_method(workspace, "slca", seed=0, untrained_slow=True)
    message = str(error.value)
    assert "\n" not in message and "slca" in message and "features(x)" in message and "custom_models.tiny:plain" in message


@pytest.mark.parametrize(("factory", "expected"), [
    ("custom_models.tiny:nothere", "no function 'nothere'"),
    ("custom_models.absent:build", "cannot import"),
    ("custom_models.tiny:wrong", "returns shape [2, 3] for 2 rows; expected [2, 10]"),
])
def test_a_bad_factory_ends_with_one_line(project, factory, expected):
    p = _params(project, kind="custom", factory=factory)
    with pytest.raises(ParamsError) as error:
        build_model(p.model, 40, 10, root=project)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_factory_syntax_and_kind_are_checked_with_the_params():
    with pytest.raises(ParamsError, match="model.factory"):
        load_params_from({"kind": "custom"})
    with pytest.raises(ParamsError, match="model.factory"):
        load_params_from({"kind": "custom", "factory": "../evil:run"})
    with pytest.raises(ParamsError, match="model.factory"):  # only the project's custom_models/ package
        load_params_from({"kind": "custom", "factory": "json:loads"})
    with pytest.raises(ParamsError, match="pretrain.epochs"):  # nothing to keep without a checkpoint
        load_params_from({"kind": "cnn1d"}, epochs=0)


def load_params_from(model: dict, epochs: int = 3):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        params = copy.deepcopy(TINY_PARAMS)
        params["model"] = model
        params["pretrain"] = {**params["pretrain"], "epochs": epochs}
        write_params(Path(tmp), params)
        return load_params(Path(tmp) / "params.yaml")


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_a_checkpoint_starts_the_slow_model_and_zero_epochs_keep_it(project, fmt):
    from components.pretraining import pretrain_slow_model
    from components.workspace import open_workspace

    trained = build_model(_params(project, kind="custom", factory="custom_models.tiny:build").model, 40, 10, root=project)
    with torch.no_grad():
        for tensor in trained.state_dict().values():
            tensor.add_(0.5)
    path = project / "data" / "raw" / f"slow.{fmt}"
    if fmt == "pt":
        torch.save(trained.state_dict(), path)
    else:
        from safetensors.torch import save_file
        save_file(trained.state_dict(), str(path))
    params = copy.deepcopy(TINY_PARAMS)
    params["model"] = {"kind": "custom", "factory": "custom_models.tiny:build", "checkpoint": f"data/raw/slow.{fmt}"}
    params["pretrain"] = {**params["pretrain"], "epochs": 0}
    write_params(project, params)
    workspace = open_workspace("params.yaml", project)
    model, losses = pretrain_slow_model(workspace.params, workspace.stream, root=project)
    assert losses == []
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_checkpoint_outside_data_raw_or_of_another_shape_is_refused(project, tmp_path_factory):
    from components.pretraining import pretrain_slow_model
    from components.workspace import open_workspace

    elsewhere = tmp_path_factory.mktemp("elsewhere") / "slow.pt"
    torch.save({"w": torch.zeros(1)}, elsewhere)
    (project / "data" / "raw" / "other.pt").write_bytes(elsewhere.read_bytes())
    for checkpoint, expected in ((str(elsewhere), "data/raw"), ("data/raw/other.pt", "does not fit")):
        params = copy.deepcopy(TINY_PARAMS)
        params["model"] = {"kind": "custom", "factory": "custom_models.tiny:build", "checkpoint": checkpoint}
        write_params(project, params)
        workspace = open_workspace("params.yaml", project)
        with pytest.raises(ParamsError) as error:
            pretrain_slow_model(workspace.params, workspace.stream, root=project)
        assert expected in str(error.value) and "\n" not in str(error.value)


def test_the_image_cnn_reads_rows_as_images_and_lora_adapts_its_convolutions(project):
    from components.methods import load_method
    from components.protocol import absorb_window
    from components.workspace import open_workspace

    p = _params(project, kind="cnn2d", channels=4, hidden=16, image_shape=[1, 5, 8])
    model = build_model(p.model, 40, 10)
    assert any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert model(torch.zeros(2, 40)).shape == (2, 10) and model.features(torch.zeros(2, 40)).shape == (2, 16)
    modules = dict(model.named_modules())
    assert [n for n in adaptable_layers(model) if isinstance(modules[n], nn.Conv2d)]  # LoRA targets them
    workspace = open_workspace("params.yaml", project)
    method = load_method(workspace, "lora", seed=0, untrained_slow=True)
    result = absorb_window(method, workspace.stream, 1)
    assert result.report.fast_state_bytes > 0
    assert len(result.accuracies) == workspace.stream.num_windows


def test_the_image_cnn_needs_a_shape_that_matches_the_rows():
    p = load_params_from({"kind": "cnn2d"})
    assert build_model(p.model, 64, 10)(torch.zeros(1, 64)).shape == (1, 10)  # 8 x 8, one channel
    with pytest.raises(ParamsError, match="model.image_shape"):
        build_model(p.model, 40, 10)  # not a square
    deeper = build_model(load_params_from({"kind": "cnn2d", "depth": 3, "channels": 4}).model, 784, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deeper.modules()) == 3
    assert deeper(torch.zeros(2, 784)).shape == (2, 10)  # 28 -> 14 -> 7 -> 3
    with pytest.raises(ParamsError, match=r"model.depth: 4 pooling blocks shrink a 8 x 8 image to nothing"):
        build_model(load_params_from({"kind": "cnn2d", "depth": 4}).model, 64, 10)
    shaped = load_params_from({"kind": "cnn2d", "image_shape": [3, 4, 4]})
    with pytest.raises(ParamsError, match=r"3 x 4 x 4 = 48 values per row; the stream has 40"):
        build_model(shaped.model, 40, 10)


def test_a_custom_model_goes_through_the_pipeline_and_its_registered_model_loads(prefect_api_url, tmp_path, mlflow_store):
    """README "Your own model": the example factory, started from a checkpoint under data/raw,
    pretrained, adapted by methods that need its parts, registered and loaded back without
    its code (a torch.export archive), with pickle refused."""
    import shutil

    import mlflow
    import numpy as np

    from components.layout import REPO_ROOT
    from flows.compare import compare_flow
    from flows.prepare import prepare_flow
    from flows.pretrain import pretrain_flow
    from flows.stream import methods_flow

    shutil.copytree(REPO_ROOT / "custom_models", tmp_path / "custom_models")
    params = copy.deepcopy(TINY_PARAMS)
    params["model"] = {"kind": "custom", "factory": "custom_models.example:residual_mlp", "kwargs": {"width": 24, "blocks": 1}}
    params["methods"] = {m: params["methods"][m] for m in ("replay", "slca", "error_memory")}
    write_params(tmp_path, params)
    prepare_flow(root=str(tmp_path))
    pretrain_flow(root=str(tmp_path))
    first = torch.load(tmp_path / "models" / "slow" / "model.pt", weights_only=True)
    (tmp_path / "data" / "raw").mkdir(parents=True, exist_ok=True)
    torch.save(first, tmp_path / "data" / "raw" / "slow.pt")  # the user's trained model, as a checkpoint
    params["model"]["checkpoint"] = "data/raw/slow.pt"
    params["pretrain"] = {**params["pretrain"], "epochs": 0}
    write_params(tmp_path, params)
    pretrain_flow(root=str(tmp_path))
    kept = torch.load(tmp_path / "models" / "slow" / "model.pt", weights_only=True)
    assert all(torch.equal(kept[k], first[k]) for k in first)  # epochs 0: the checkpoint as it is

    methods_flow(root=str(tmp_path))
    compared = compare_flow(root=str(tmp_path))
    assert set(compared["order"]) == {"replay", "slca", "error_memory"}
    mlflow.set_tracking_uri(mlflow_store)
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    try:
        model = mlflow.pyfunc.load_model("models:/slowfast-tiny-classinc@champion")
        out = np.asarray(model.predict(np.zeros((3, 40), dtype=np.float32)))
    finally:
        del os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"]
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # and in a fresh interpreter that cannot import this project (isolated, elsewhere): the
    # version carries no code, and needs none
    version = mlflow.artifacts.download_artifacts("models:/slowfast-tiny-classinc@champion", dst_path=str(tmp_path / "v"))
    assert (Path(version) / "data" / "model.pt2").is_file() and not (Path(version) / "code").exists()
    load = ("import mlflow, numpy as np; mlflow.set_tracking_uri(%r); "
            "m = mlflow.pyfunc.load_model('models:/slowfast-tiny-classinc@champion'); "
            "import importlib.util; assert importlib.util.find_spec('components') is None; "
            "print(np.asarray(m.predict(np.zeros((3, 40), dtype=np.float32))).tolist())") % mlflow_store
    done = subprocess.run([sys.executable, "-I", "-c", load], cwd=tmp_path.parent, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
                               "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.array(json.loads(done.stdout.strip().splitlines()[-1])), out, rtol=1e-6)
