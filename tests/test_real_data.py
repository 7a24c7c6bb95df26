"""The built-in real datasets: fetching them (installed package, `apt-get download`, a
download; every file checked) and cutting them into streams, on small files with the real
formats that the tests write (IDX for Fashion-MNIST, NannyML's wheel layout for ACS)."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import shutil
import struct
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from components.config import StreamParams
from components.data import fetch
from components.data.sources import build_stream
from components.errors import StreamError

TRAIN_PER_CLASS, TEST_PER_CLASS = 12, 4


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(folder: Path, seed: int = 0) -> dict[str, str]:
    """Four IDX files shaped like Fashion-MNIST's (28x28, labels 0-9, a train and a test
    set); each image's first pixel is its row number in its file, to trace where rows went."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, per_class in (("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        images = rng.integers(0, 256, size=(len(labels), 28, 28))
        images[:, 0, 0] = np.arange(len(labels))
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return {name: fetch.content_digest(folder / name) for name in fetch.FASHION_MNIST_FILES}


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over a folder: the 'usual download' without the internet."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


NO_PACKAGE = "slowfast-no-such-package"  # apt-get download fails at once: no such package


def test_installed_files_are_copied_checked_and_recorded(tmp_path):
    digests = fake_fashion_mnist(tmp_path / "installed")
    dest = tmp_path / "data" / "external" / "fashion-mnist"
    line = fetch.fetch_fashion_mnist(dest, installed=tmp_path / "installed", package=NO_PACKAGE,
                                     url="http://127.0.0.1:9/", expected=digests)
    assert line.startswith("fashion-mnist: 4 files from the installed Debian package") and "\n" not in line
    record = json.loads((dest / fetch.RECORD).read_text())
    assert record["sha256_of_content"] == digests and "installed" in record["from"]
    assert {p.name for p in dest.iterdir()} == {*digests, fetch.RECORD}
    again = fetch.fetch_fashion_mnist(dest, installed=tmp_path / "nowhere", package=NO_PACKAGE,
                                      url="http://127.0.0.1:9/", expected=digests)
    assert again == f"fashion-mnist: already in {dest}"


def test_without_the_package_the_files_are_downloaded_and_checked(tmp_path, served):
    mirror, url = served
    digests = fake_fashion_mnist(mirror)
    dest = tmp_path / "fm"
    line = fetch.fetch_fashion_mnist(dest, installed=tmp_path / "nowhere", package=NO_PACKAGE, url=url, expected=digests)
    assert line == f"fashion-mnist: 4 files from a download from {url} into {dest}"
    assert all(fetch.content_digest(dest / name) == d for name, d in digests.items())


def test_a_download_with_other_content_is_refused_and_nothing_is_left(tmp_path, served):
    mirror, url = served
    digests = fake_fashion_mnist(mirror)
    fake_fashion_mnist(mirror, seed=1)  # the mirror now serves other bytes under the same names
    dest = tmp_path / "external" / "fm"
    with pytest.raises(StreamError) as error:
        fetch.fetch_fashion_mnist(dest, installed=tmp_path / "nowhere", package=NO_PACKAGE, url=url, expected=digests)
    message = str(error.value)
    assert "\n" not in message and "does not have the expected content" in message
    assert "installed:" in message and "apt-get:" in message and "download:" in message
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no half-written folder


def test_a_failed_fetch_keeps_the_files_already_there(tmp_path):
    digests = fake_fashion_mnist(tmp_path / "installed")
    dest = tmp_path / "fm"
    fetch.fetch_fashion_mnist(dest, installed=tmp_path / "installed", package=NO_PACKAGE, url="http://127.0.0.1:9/",
                              expected=digests)
    other = fake_fashion_mnist(tmp_path / "other", seed=3)
    with pytest.raises(StreamError, match="could not get the files"):
        fetch.fetch_fashion_mnist(dest, installed=tmp_path / "installed", package=NO_PACKAGE,
                                  url="http://127.0.0.1:9/", expected=other)
    assert all(fetch.content_digest(dest / name) == d for name, d in digests.items())


def test_a_debian_package_is_unpacked_without_root(tmp_path):
    digests = fake_fashion_mnist(tmp_path / "pkg" / "usr" / "share" / "datasets" / "fashion-mnist")
    (tmp_path / "pkg" / "DEBIAN").mkdir()
    (tmp_path / "pkg" / "DEBIAN" / "control").write_text(
        "Package: fake-fashion-mnist\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n")
    built = subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tmp_path / "pkg"), str(tmp_path / "f.deb")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    fetch.extract_deb(tmp_path / "f.deb", tmp_path / "x")
    unpacked = tmp_path / "x" / "usr" / "share" / "datasets" / "fashion-mnist"
    assert all(fetch.content_digest(unpacked / name) == d for name, d in digests.items())
    with pytest.raises(StreamError, match="dpkg -x failed"):
        fetch.extract_deb(tmp_path / "pkg" / "DEBIAN" / "control", tmp_path / "y")


def _fm(root: Path, **block) -> tuple[list, object]:
    stream = StreamParams.model_validate({"name": "fm", "source": "fashion-mnist", "seed": 5,
                                          "fashion_mnist": {"train_per_class": 6, "test_per_class": 2, **block}})
    prepared = build_stream(stream, root)
    return list(prepared.windows), prepared


@pytest.fixture
def fm_root(tmp_path) -> Path:
    fake_fashion_mnist(tmp_path / "data" / "external" / "fashion-mnist")
    return tmp_path


def test_split_fashion_mnist_takes_train_rows_from_the_training_set_and_test_rows_from_the_test_set(fm_root):
    windows, prepared = _fm(fm_root)
    assert [w.classes for w in windows] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert prepared.class_names[0] == "tshirt-top" and prepared.class_names[9] == "ankle-boot"
    folder = fm_root / "data" / "external" / "fashion-mnist"
    from components.data.idx_source import read_idx

    train_labels, test_labels = read_idx(folder / "train-labels-idx1-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    for w in windows:
        assert w.x_train.shape == (12, 784) and w.x_test.shape == (4, 784)
        assert np.bincount(w.y_train, minlength=10)[w.classes].tolist() == [6, 6]
        rows = np.rint(w.x_train[:, 0] * 255).astype(int)  # first pixel = row in the training file
        assert (train_labels[rows] == w.y_train).all()
        assert (test_labels[np.rint(w.x_test[:, 0] * 255).astype(int)] == w.y_test).all()
        assert 0.0 <= w.x_train.min() and w.x_train.max() <= 1.0
    again, _ = _fm(fm_root)
    assert all((a.x_train == b.x_train).all() for a, b in zip(windows, again))


def test_permuted_fashion_mnist_draws_disjoint_rows_and_permutes_pixels_after_window_0(fm_root):
    windows, prepared = _fm(fm_root, variant="permuted", windows=2, train_per_class=5)
    assert [w.classes for w in windows] == [list(range(10))] * 2
    rows0 = np.rint(windows[0].x_train[:, 0] * 255).astype(int)
    assert sorted(np.unique(rows0)) == sorted(rows0)  # window 0 unpermuted: pixel 0 is the row number
    from components.data.idx_source import read_idx

    folder = fm_root / "data" / "external" / "fashion-mnist"
    images, labels = read_idx(folder / "train-images-idx3-ubyte.gz"), read_idx(folder / "train-labels-idx1-ubyte.gz")
    by_pixels = {np.sort(image.ravel()).tobytes(): int(label) for image, label in zip(images, labels)}
    rows1 = np.rint(windows[1].x_train * 255).astype(np.uint8)
    assert [by_pixels[np.sort(r).tobytes()] for r in rows1] == windows[1].y_train.tolist()  # the same images' pixels
    raw = {image.ravel().tobytes() for image in images}
    assert all(r.tobytes() in raw for r in np.rint(windows[0].x_train * 255).astype(np.uint8))  # as in the file
    assert not any(r.tobytes() in raw for r in rows1)  # permuted
    assert prepared.extra["fashion_mnist"]["variant"] == "permuted"


def test_rotated_fashion_mnist_rotates_each_window_by_its_angle(fm_root):
    windows, _ = _fm(fm_root, variant="rotated", rotations=[0.0, 90.0], train_per_class=5)
    assert len(windows) == 2
    image = windows[1].x_test[0].reshape(28, 28)
    assert image.shape == (28, 28) and 0.0 <= image.min() and image.max() <= 1.0 + 1e-6


def test_fashion_mnist_bad_input_is_one_line(fm_root, tmp_path):
    with pytest.raises(StreamError, match="has 12 rows left, 13 asked"):
        _fm(fm_root, train_per_class=13)
    with pytest.raises(StreamError, match="has 2 rows left, 5 asked"):
        _fm(fm_root, variant="permuted", windows=3, train_per_class=5)  # 12 per class cannot fill 3 x 5
    with pytest.raises(StreamError, match="window_classes: non-empty groups of distinct class indices 0-9"):
        _fm(fm_root, window_classes=[[0, 1], [1, 2]])
    empty = tmp_path / "empty"
    with pytest.raises(StreamError, match=r"fashion-mnist: not found; the fetch stage fills it"):
        _fm(empty)


def _fake_nannyml_wheel(folder: Path, rows_per_year: int = 40) -> Path:
    """A wheel named and laid out like nannyml 0.13.1 holding small tables with its schema
    (categorical codes, NannyML's own prediction columns, the analysis labels apart)."""
    rng = np.random.default_rng(0)

    def part(years: list[int], start: int) -> pl.DataFrame:
        n = rows_per_year * len(years)
        columns = {"id": np.arange(start, start + n), "AGEP": rng.integers(16, 90, n).astype(float)}
        for name in fetch.ACS_FEATURES[1:]:
            columns[name] = [str(v) for v in rng.integers(1, 5, n)]
        frame = pl.DataFrame(columns).with_columns([pl.col(c).cast(pl.Categorical) for c in fetch.ACS_FEATURES[1:]])
        return frame.with_columns(pl.Series("employed", rng.integers(0, 2, n)), pl.Series("year", np.repeat(years, rows_per_year)),
                                  pl.Series("prediction", rng.integers(0, 2, n)), pl.Series("predicted_probability", rng.random(n)))

    reference, analysis = part([2015], 0), part([2016, 2017, 2018], 10_000)
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "nannyml-0.13.1-py3-none-any.whl"
    tables = {"reference": reference, "analysis": analysis.drop("employed"), "analysis_target": analysis.select("id", "employed")}
    with zipfile.ZipFile(wheel, "w") as archive:
        for key, member in fetch.ACS_MEMBERS.items():
            buffer = io.BytesIO()
            tables[key].write_parquet(buffer)
            archive.writestr(member, buffer.getvalue())
        info = "nannyml-0.13.1.dist-info"
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: nannyml\nVersion: 0.13.1\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_acs_comes_from_the_nannyml_wheel_without_installing_it_and_cuts_by_year(tmp_path):
    index = tmp_path / "index"
    _fake_nannyml_wheel(index)
    dest = tmp_path / "data" / "external" / fetch.ACS_DIR
    line = fetch.fetch_acs(dest, pip_args=("--no-index", "--find-links", str(index)))
    assert line == f"acs-employment: 160 rows from nannyml-0.13.1-py3-none-any.whl (pip download --no-deps) into {dest}"
    table = pl.read_parquet(dest / fetch.ACS_FILE)
    assert table.columns == [*fetch.ACS_FEATURES, "year", "employed"]  # no prediction columns: they leak the label
    assert table["employed"].null_count() == 0 and sorted(table["year"].unique()) == [2015, 2016, 2017, 2018]
    import importlib.util

    assert importlib.util.find_spec("nannyml") is None

    stream = StreamParams.model_validate({"name": "acs", "source": "acs-employment", "test_fraction": 0.25,
                                          "acs": {"rows_per_year": 20}})
    prepared = build_stream(stream, tmp_path)
    windows = list(prepared.windows)
    assert len(windows) == 4 and all(len(w.y_train) == 15 and len(w.y_test) == 5 for w in windows)
    assert prepared.class_names == ["not-employed", "employed"] and windows[0].x_train.shape[1] == 16
    assert abs(float(windows[0].x_train.mean())) < 1e-5  # standardized with window 0's training rows
    with pytest.raises(StreamError, match=r"stream.acs.years: \[2019\] not in employment.parquet"):
        build_stream(StreamParams.model_validate({"name": "a", "source": "acs-employment",
                                                  "acs": {"years": [2015, 2019]}}), tmp_path)
    with pytest.raises(StreamError, match="rows_per_year: 41 rows asked, year 2015 has 40"):
        build_stream(StreamParams.model_validate({"name": "a", "source": "acs-employment",
                                                  "acs": {"rows_per_year": 41}}), tmp_path)


def test_acs_without_the_wheel_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "index").mkdir()
    dest = tmp_path / "external" / fetch.ACS_DIR
    with pytest.raises(StreamError, match=r"^acs-employment: pip download nannyml==0.13.1 failed: ") as error:
        fetch.fetch_acs(dest, pip_args=("--no-index", "--find-links", str(tmp_path / "index")))
    assert "\n" not in str(error.value)
    assert list((tmp_path / "external").iterdir()) == []


def test_sources_that_read_nothing_external_fetch_nothing(tmp_path):
    line = fetch.fetch_for_stream("mnist1d", tmp_path / "external")
    assert line == "nothing to fetch: stream.source 'mnist1d' needs no files from data/external/"
    assert json.loads((tmp_path / "external" / "SOURCE.json").read_text())["source"] == "mnist1d"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian)")
def test_the_real_fashion_mnist_package_is_fetched_with_apt_get_download(tmp_path):
    """The real package, the real digests: the path a machine without it installed takes."""
    dest = tmp_path / "fm"
    try:
        line = fetch.fetch_fashion_mnist(dest, installed=tmp_path / "nowhere", url="http://127.0.0.1:9/")
    except StreamError as error:
        if "apt-get:" in str(error) and ("Temporary failure" in str(error) or "Unable to fetch" in str(error)):
            pytest.skip(f"no Debian mirror reachable: {error}")
        raise
    assert "the Debian package dataset-fashion-mnist" in line and "apt-get download + dpkg -x" in line
    from components.data.idx_source import read_idx

    assert read_idx(dest / "train-images-idx3-ubyte.gz").shape == (60000, 28, 28)


def test_split_fashion_mnist_runs_through_the_pipeline_on_the_real_images(prefect_api_url, tmp_path, mlflow_store):
    """fetch -> prepare -> pretrain (cnn2d) -> methods -> compare on real Fashion-MNIST (the
    installed Debian package in CI, else `apt-get download`), and the champion classifies
    real images as the ten named classes."""
    import copy

    import mlflow

    from components.data.idx_source import read_idx
    from flows.compare import compare_flow
    from flows.fetch import fetch_flow
    from flows.prepare import prepare_flow
    from flows.pretrain import pretrain_flow
    from flows.stream import methods_flow
    from tests.conftest import TINY_PARAMS, write_params

    params = copy.deepcopy(TINY_PARAMS)
    params["stream"] = {"name": "split-fmnist", "source": "fashion-mnist", "test_fraction": 0.25,
                        "fashion_mnist": {"train_per_class": 60, "test_per_class": 20,
                                          "window_classes": [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9]]}}
    params["model"] = {"kind": "cnn2d", "channels": 8, "hidden": 32}
    params["pretrain"] = {**params["pretrain"], "epochs": 10}
    params["methods"] = {"replay": {"epochs": 5, "lr": 0.003, "buffer_size": 200},
                         **{m: params["methods"][m] for m in ("lora", "slca")}}
    write_params(tmp_path, params)
    line = fetch_flow(root=str(tmp_path))
    assert line.startswith("fashion-mnist: 4 files from ") and line.endswith(" into data/external/fashion-mnist")
    prepared = prepare_flow(root=str(tmp_path))
    assert prepared["num_windows"] == 3
    manifest = json.loads((tmp_path / "data" / "streams" / "split-fmnist" / "stream.json").read_text())
    assert manifest["class_names"][9] == "ankle-boot" and manifest["fashion_mnist"]["variant"] == "split"
    pretrain_flow(root=str(tmp_path))
    methods_flow(root=str(tmp_path))
    compared = compare_flow(root=str(tmp_path))
    assert set(compared["order"]) == {"replay", "lora", "slca"}
    metrics = json.loads((tmp_path / "results" / "metrics" / "replay.json").read_text())
    assert 0.3 < metrics["acc"] <= 1.0  # real images, ten classes: well above chance after replay

    folder = tmp_path / "data" / "external" / "fashion-mnist"
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")[:8].reshape(8, -1).astype(np.float32) / 255.0
    mlflow.set_tracking_uri(mlflow_store)
    model = mlflow.pyfunc.load_model("models:/slowfast-split-fmnist@champion")
    probabilities = np.asarray(model.predict(images))
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.metadata.metadata["class_names"][0] == "tshirt-top"


def _river(root: Path, **spec) -> tuple[list, object]:
    extra = spec.pop("stream", {})
    stream = StreamParams.model_validate({"name": "r", "source": "river-dataset", "test_fraction": 0.25,
                                          "river_dataset": spec, **extra})
    prepared = build_stream(stream, root)
    return list(prepared.windows), prepared


def test_river_bundled_image_segments_cut_by_rows_or_by_classes(tmp_path):
    windows, prepared = _river(tmp_path, name="ImageSegments", window={"rows": 462})
    assert len(windows) == 5 and prepared.class_names == ["brickface", "cement", "foliage", "grass", "path", "sky", "window"]
    assert windows[0].x_train.shape[1] == 18 and sum(len(w.y_train) + len(w.y_test) for w in windows) == 2310
    groups = {"pretrain_classes": ["brickface", "cement", "foliage"], "window_classes": [["grass", "path"], ["sky", "window"]]}
    windows, _ = _river(tmp_path, name="ImageSegments", window={"classes": True}, stream=groups)
    assert [w.classes for w in windows] == [[0, 1, 2], [3, 4], [5, 6]]
    assert not (tmp_path / "data").exists()  # a bundled dataset touches nothing of the project's
    with pytest.raises(StreamError, match=r"cut by `rows` or `classes`"):
        _river(tmp_path, name="Shuttle", window={"column": "x"})


def test_river_elec2_and_insects_are_read_from_data_raw_in_their_own_schema(tmp_path):
    rng = np.random.default_rng(0)
    elec = tmp_path / "data" / "raw" / "river" / "Elec2" / "electricity.csv"
    elec.parent.mkdir(parents=True)
    lines = ["date,day,period,nswprice,nswdemand,vicprice,vicdemand,transfer,class"]
    lines += [f"0.{i:04d},{i % 7 + 1},{(i % 48) / 48:.6f},{rng.random():.6f},{rng.random():.6f},0.003467,0.422915,0.414912,"
              f"{'UP' if rng.random() < 0.5 else 'DOWN'}" for i in range(80)]
    elec.write_text("\n".join(lines) + "\n")
    windows, prepared = _river(tmp_path, name="Elec2", window={"rows": 20})
    assert len(windows) == 4 and prepared.class_names == ["False", "True"] and windows[0].x_train.shape == (15, 8)
    assert prepared.extra["river_dataset"]["read_from"] == "data/raw/river/Elec2/electricity.csv"

    insects = tmp_path / "data" / "raw" / "river" / "Insects" / "abrupt_balanced.csv"
    insects.parent.mkdir(parents=True)
    kinds = ["ae-aegypti-female", "ae-aegypti-male", "cx-quinq-female"]
    insects.write_text("".join(",".join(f"{v:.4f}" for v in rng.random(33)) + f",{kinds[i % 3]}\n" for i in range(60)))
    windows, prepared = _river(tmp_path, name="Insects", window={"rows": 30})
    assert prepared.class_names == kinds and windows[0].x_train.shape[1] == 33 and len(windows) == 2

    insects.write_text("1.0,2.0,UP\n" * 10)  # not Insects' 33 features
    with pytest.raises(StreamError, match=r"^data/raw/river/Insects/abrupt_balanced.csv: "):
        _river(tmp_path, name="Insects", window={"rows": 5})


def test_a_river_dataset_that_must_be_downloaded_says_how_and_downloads_nothing(tmp_path):
    with pytest.raises(StreamError) as error:
        _river(tmp_path, name="Elec2")
    message = str(error.value)
    assert message.startswith("data/raw/river/Elec2/electricity.csv: not found; river's Elec2 is downloaded")
    assert "Elec2().download()" in message and "dvc add data/raw/river" in message and "\n" not in message
    assert not (tmp_path / "data").exists()
