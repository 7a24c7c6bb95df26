"""Make a built-in real dataset's files present under data/external/ (the `fetch` stage).

Nothing here may need the internet when the data is on the machine: each dataset is looked
for where a system package installs it, then fetched with the system's package tools, and
only then downloaded. Every file is checked against the SHA-256 of its content (of the
uncompressed bytes, so a recompressed copy from another mirror still matches), and the
folder is written whole or not at all. `fetch` returns one line that says where the data
came from; the record (`FETCHED.json`) keeps it with the digests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from components.errors import StreamError

RECORD = "FETCHED.json"

FASHION_MNIST_DIR = "fashion-mnist"
# SHA-256 of each file's uncompressed IDX bytes (Zalando's release, as Debian ships it).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"  # Debian: IDX files under /usr/share/datasets/fashion-mnist
FASHION_MNIST_INSTALLED = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = os.environ.get(
    "SLOWFAST_FASHION_MNIST_URL", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
)  # Zalando's own mirror; the variable points at another one

ACS_DIR = "acs-employment-ma"
ACS_FILE = "employment.parquet"
ACS_WHEEL = "nannyml==0.13.1"  # ships the table; fetched with `pip download --no-deps`, never installed
ACS_MEMBERS = {  # inside the wheel
    "reference": "nannyml/datasets/data/employment_MA_reference.pq",
    "analysis": "nannyml/datasets/data/employment_MA_analysis.pq",
    "analysis_target": "nannyml/datasets/data/employment_MA_analysis_target.pq",
}
ACS_FEATURES = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR",
                "DEYE", "DREM", "SEX", "RAC1P"]  # folktables' ACSEmployment features
ACS_LABEL = "employed"


def content_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, of its uncompressed bytes when it is gzipped."""
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError) as error:
        raise StreamError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    return digest.hexdigest()


def _verified(folder: Path, expected: Mapping[str, str]) -> str | None:
    """None when `folder` holds every expected file with its digest, else what is wrong."""
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if content_digest(path) != want:
            return f"{path} does not have the expected content (SHA-256 of its data differs)"
    return None


def _publish(staged: Path, dest: Path, record: dict) -> None:
    """Move a complete, verified folder into place (the old one goes only once the new is whole)."""
    (staged / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    staged.chmod(0o755)  # mkdtemp makes it private; the data is for every user of the checkout
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staged.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def extract_deb(deb: Path, into: Path) -> None:
    """The files of a .deb under `into`, with `dpkg -x` (no root needed)."""
    done = subprocess.run(["dpkg", "-x", str(deb), str(into)], capture_output=True, text=True)
    if done.returncode != 0:
        raise StreamError(f"{deb}: dpkg -x failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")


def _copy_verified(folder: Path, expected: Mapping[str, str], into: Path, where: str = "") -> None:
    """Copy the expected files of `folder` into `into`, once every one has its digest."""
    problem = _verified(folder, expected)
    if problem:
        raise StreamError(f"{where}{problem}")
    for name in expected:
        shutil.copyfile(folder / name, into / name)


def _from_installed(installed: Path, expected: Mapping[str, str], into: Path) -> str:
    _copy_verified(installed, expected, into)
    return f"the installed Debian package ({installed})"


def _from_package(package: str, inside: str, expected: Mapping[str, str], into: Path) -> str:
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise StreamError("apt-get or dpkg not found")
    with tempfile.TemporaryDirectory(prefix="slowfast-deb-") as tmp:
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, timeout=600)
        debs = sorted(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            raise StreamError(f"apt-get download {package}: {(done.stderr.strip().splitlines() or ['no .deb'])[-1]}")
        extract_deb(debs[0], Path(tmp) / "x")
        _copy_verified(Path(tmp) / "x" / inside.lstrip("/"), expected, into, where=f"{debs[0].name}: ")
        return f"the Debian package {package} ({debs[0].name}, apt-get download + dpkg -x)"


def _from_url(url: str, expected: Mapping[str, str], into: Path) -> str:
    for name in expected:
        source = url.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(source, timeout=60) as response, (into / name).open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            raise StreamError(f"{source}: {getattr(error, 'reason', error)}") from None
    problem = _verified(into, expected)
    if problem:
        raise StreamError(f"download from {url}: {problem}")
    return f"a download from {url}"


def fetch_fashion_mnist(
    dest: Path,
    installed: Path = FASHION_MNIST_INSTALLED,
    package: str = FASHION_MNIST_PACKAGE,
    url: str = FASHION_MNIST_URL,
    expected: Mapping[str, str] = FASHION_MNIST_FILES,
) -> str:
    """Fashion-MNIST's four IDX files in `dest`: copied from the installed Debian package, else
    from the package fetched with `apt-get download`, else downloaded from `url`."""
    tries: list[tuple[str, Callable[[Path], str]]] = [
        ("installed", lambda into: _from_installed(installed, expected, into)),
        ("apt-get", lambda into: _from_package(package, str(FASHION_MNIST_INSTALLED), expected, into)),
        ("download", lambda into: _from_url(url, expected, into)),
    ]
    return _first_that_works("fashion-mnist", dest, tries, expected)


def _first_that_works(name: str, dest: Path, tries: list[tuple[str, Callable[[Path], str]]],
                      expected: Mapping[str, str]) -> str:
    if _verified(dest, expected) is None:
        return f"{name}: already in {dest}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for how, attempt in tries:
        staged = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
        try:
            origin = attempt(staged)
        except (StreamError, OSError, subprocess.SubprocessError) as error:
            shutil.rmtree(staged, ignore_errors=True)
            failures.append(f"{how}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
            continue
        _publish(staged, dest, {"dataset": name, "from": origin, "sha256_of_content": dict(expected)})
        return f"{name}: {len(expected)} files from {origin} into {dest}"
    raise StreamError(f"{name}: could not get the files ({'; '.join(failures)}); put them in {dest} by hand")


def acs_table_from_wheel(wheel: Path, out: Path) -> int:
    """The Massachusetts ACS employment table (every year, features + year + label) as one
    parquet file, from NannyML's wheel; returns its rows. NannyML's own model outputs
    (`prediction`, `predicted_probability`) are left out: they would leak the label."""
    import polars as pl

    try:
        archive = zipfile.ZipFile(wheel)
        frames = {k: pl.read_parquet(archive.read(member)) for k, member in ACS_MEMBERS.items()}
    except (OSError, KeyError, zipfile.BadZipFile, pl.exceptions.PolarsError) as error:
        raise StreamError(f"{wheel}: not the wheel expected ({type(error).__name__}: {error})") from None
    analysis = frames["analysis"].join(frames["analysis_target"], on="id", how="left")
    columns = [*ACS_FEATURES, "year", ACS_LABEL]
    for part, frame in (("reference", frames["reference"]), ("analysis", analysis)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise StreamError(f"{wheel}: {part} table lacks columns {missing}")
    table = pl.concat([f.select(columns) for f in (frames["reference"], analysis)]).with_columns(
        [pl.col(c).cast(pl.String).cast(pl.Float32) for c in ACS_FEATURES if c != "AGEP"]
        + [pl.col("AGEP").cast(pl.Float32), pl.col("year").cast(pl.Int32), pl.col(ACS_LABEL).cast(pl.Int8)]
    )  # category codes are numbers in ACS (education is ordinal); kept as numbers, then standardized
    if table[ACS_LABEL].null_count():
        raise StreamError(f"{wheel}: {table[ACS_LABEL].null_count()} rows without a label")
    table.write_parquet(out)
    return table.height


def fetch_acs(dest: Path, pip_args: tuple[str, ...] = ()) -> str:
    """The ACS table in `dest`, from `pip download --no-deps nannyml==0.13.1` (not installed)."""
    if (dest / ACS_FILE).is_file() and (dest / RECORD).is_file():
        return f"acs-employment: already in {dest}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".acs-", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="slowfast-wheel-") as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                       "--disable-pip-version-check", "-q", "-d", tmp, *pip_args, ACS_WHEEL]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            wheels = sorted(Path(tmp).glob("nannyml-*.whl"))
            if done.returncode != 0 or not wheels:
                errors = [line for line in done.stderr.splitlines() if "ERROR" in line] or ["no wheel"]
                raise StreamError(f"acs-employment: pip download {ACS_WHEEL} failed: {errors[-1].strip()}")
            rows = acs_table_from_wheel(wheels[0], staged / ACS_FILE)
            wheel_digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        origin = f"{wheels[0].name} (pip download --no-deps)"
        _publish(staged, dest, {"dataset": "acs-employment", "from": origin, "wheel_sha256": wheel_digest,
                                "rows": rows, "sha256_of_content": {ACS_FILE: content_digest(staged / ACS_FILE)}})
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return f"acs-employment: {rows} rows from {origin} into {dest}"


FETCHED_SOURCES = ("fashion-mnist", "acs-employment")  # the sources that read files from data/external/


def fetch_for_stream(source: str, external: Path) -> str:
    """Fetch what `stream.source` reads from data/external/ and say where it came from, in one
    line. The folder always holds SOURCE.json (the stage's output exists for every source)."""
    if source == "fashion-mnist":
        line = fetch_fashion_mnist(external / FASHION_MNIST_DIR)
    elif source == "acs-employment":
        line = fetch_acs(external / ACS_DIR)
    else:
        line = f"nothing to fetch: stream.source {source!r} needs no files from data/external/"
    external.mkdir(parents=True, exist_ok=True)
    (external / "SOURCE.json").write_text(json.dumps({"source": source, "fetched": line}, indent=2) + "\n")
    return line
