"""The built-in text stream, offline on every machine: the Python standard library's own
source and its English prose (`pydoc_data.topics`), cut into windows that differ in style.

Window 0 (the slow model's pretrain split) is the standard library's top-level modules: a
broad mix of Python. Each later window is one package family (asyncio, email) or the prose.
Documents are files (or prose topics); a fixed, name-hashed share of each window's documents
is held out for evaluation, so the split does not depend on the order files are listed in.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.errors import StreamError

# (window name, where its documents come from); "topics" is pydoc_data's English prose.
DEFAULT_WINDOWS: tuple[tuple[str, str], ...] = (
    ("stdlib-modules", "*.py"), ("asyncio", "asyncio/*.py"), ("email", "email/*.py"), ("prose", "topics"),
)


@dataclass(frozen=True)
class Document:
    name: str  # where it came from, e.g. "asyncio/tasks.py" or "topics/for"
    data: bytes


@dataclass(frozen=True)
class TextWindow:
    index: int
    name: str
    train: list[Document]
    test: list[Document]

    @property
    def train_bytes(self) -> bytes:
        """The training documents joined (a 0 byte between documents)."""
        return b"\x00".join(d.data for d in self.train)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _documents(source: str, root: Path) -> list[Document]:
    if source == "topics":
        from pydoc_data.topics import topics

        return [Document(f"topics/{name}", text.encode("utf-8")) for name, text in sorted(topics.items())]
    paths = sorted(p for p in root.glob(source) if p.is_file())
    for path in paths:  # links followed: a file outside the corpus folder is refused unread
        if not path.resolve().is_relative_to(root.resolve()):
            raise StreamError(f"{path}: leads outside {root} (to {path.resolve()}); copy the file into {root}")
    try:
        return [Document(p.relative_to(root).as_posix(), p.read_bytes()) for p in paths]
    except OSError as error:
        raise StreamError(f"{error.filename}: cannot read ({error.strerror})") from None


def held_out(name: str, share: float, seed: int) -> bool:
    """Whether a document is held out: a hash of its name and the seed, not its position."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def build_windows(
    windows: tuple[tuple[str, str], ...] = DEFAULT_WINDOWS, root: Path | None = None, test_share: float = 0.2,
    seed: int = 0, min_bytes: int = 256, max_test_docs: int | None = None, max_doc_bytes: int | None = None,
) -> list[TextWindow]:
    """Windows of documents (held-out ones cut to `max_doc_bytes`), each window the files a
    glob under `root` matches (the standard library's by default). A document shorter than
    `min_bytes` (one segment) is one line naming it in your own corpus (`root` given); the
    built-in corpus (the standard library, full of short `__init__.py` files) leaves such
    documents out. A window with no held-out or no training document is one line naming it."""
    built_in = root is None
    root = root or stdlib_root()
    named = [(name, str(root / source), _documents(source, root)) for name, source in windows]
    return split_windows(named, test_share, seed, min_bytes, max_test_docs, max_doc_bytes, drop_short=built_in,
                         locate=lambda where, document: str(root / document.name))


def file_order_documents(glob: str, count: int, root: Path) -> list[tuple[str, str, list[Document]]]:
    """The files `glob` matches under `root`, sorted by path, cut into `count` consecutive
    windows of (nearly) equal count: part0 (window 0, the pretrain split), part1, ..."""
    docs = _documents(glob, root)
    if len(docs) < count:
        raise StreamError(f"{root / glob}: {len(docs)} file(s) for {count} windows (text.file_order.windows); "
                          "each window needs files")
    bounds = [len(docs) * k // count for k in range(count + 1)]
    return [(f"part{k}", f"{root / glob} (files {bounds[k] + 1}-{bounds[k + 1]} of {len(docs)})",
             docs[bounds[k]: bounds[k + 1]]) for k in range(count)]


def split_windows(
    named: list[tuple[str, str, list[Document]]], test_share: float, seed: int, min_bytes: int,
    max_test_docs: int | None = None, max_doc_bytes: int | None = None, drop_short: bool = False,
    locate: Callable[[str, Document], str] = lambda where, document: f"{where}: {document.name}",
) -> list[TextWindow]:
    """(window name, where its documents came from, its documents) -> windows with their
    held-out documents chosen by name (`held_out`); `locate` names a document in an error."""
    out = []
    for index, (name, where, docs) in enumerate(named):
        short = [d for d in docs if len(d.data) < min_bytes]
        if short and not drop_short:
            raise StreamError(f"{locate(where, short[0])}: {len(short[0].data)} bytes, shorter than one "
                              f"segment ({min_bytes} bytes; {len(short)} such document(s) in window {index} ({name})); "
                              "remove them or lower text.segment")
        docs = [d for d in docs if len(d.data) >= min_bytes]
        test = [d for d in docs if held_out(d.name, test_share, seed)]
        if max_doc_bytes:  # evaluation cost: held-out documents are read up to this many bytes
            test = [Document(d.name, d.data[:max_doc_bytes]) for d in test]
        train = [d for d in docs if not held_out(d.name, test_share, seed)]
        if max_test_docs is not None:
            test = test[:max_test_docs]
        if not docs:
            raise StreamError(f"{where}: window {index} ({name}) has no document of at least {min_bytes} bytes")
        if not test or not train:
            missing = "held-out" if not test else "training"
            raise StreamError(f"{where}: window {index} ({name}) has no {missing} document "
                              f"({len(docs)} document(s), {test_share:.0%} held out); add documents or change the share")
        out.append(TextWindow(index, name, train, test))
    return out


def table_documents(path: Path, text_column: str, window_column: str, name_column: str = "",
                    inside: Path | None = None) -> list[tuple[str, str, list[Document]]]:
    """Your own corpus as a table (parquet or CSV): one document per row, UTF-8 encoded;
    windows by `window_column`'s values in sorted order, each named by its value. Documents
    are named by `name_column` (unique) or their row number, and ordered by name within a
    window. Read with polars."""
    import polars as pl

    if inside is not None and not path.resolve().is_relative_to(inside.resolve()):
        raise StreamError(f"{path}: leads outside {inside} (to {path.resolve()}); copy the file into {inside}")
    try:
        table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=0)
    except FileNotFoundError:
        raise StreamError(f"{path}: not found (text.table.path)") from None
    except (OSError, pl.exceptions.PolarsError) as error:
        raise StreamError(f"{path}: cannot read as {path.suffix[1:]} ({str(error).splitlines()[0]})") from None
    for role, column in (("text_column", text_column), ("window_column", window_column), ("name_column", name_column)):
        if column and column not in table.columns:
            raise StreamError(f"{path}: no column {column!r} (text.table.{role}); columns: {table.columns}")
    if table.schema[text_column] != pl.String:
        raise StreamError(f"{path}: column {text_column!r} holds {table.schema[text_column]}, expected text (strings)")
    for column in (text_column, window_column, *([name_column] if name_column else [])):
        if (nulls := table[column].null_count()) > 0:
            row = table.with_row_index()[column].is_null().arg_true()[0]
            raise StreamError(f"{path}: column {column!r} is empty in {nulls} row(s), the first row {row}")
    names = table[name_column].cast(pl.String) if name_column else pl.Series([f"row{i}" for i in range(len(table))])
    if name_column and (dup := names.is_duplicated()).any():
        raise StreamError(f"{path}: column {name_column!r} names {names.filter(dup)[0]!r} more than once; "
                          "document names must be unique (they choose the held-out documents)")
    windows = table[window_column]
    out = []
    for value in windows.unique().sort().to_list():
        label = str(value)
        if not is_plain_window_name(label):
            raise StreamError(f"{path}: column {window_column!r} holds {label!r}, not a plain window name (letters, "
                              "digits, '.', '_', '-')")
        rows = (windows == value).arg_true().to_list()
        # sorted by name, as files are by path: the rows' order changes nothing
        docs = sorted((Document(f"{label}/{names[i]}", table[text_column][i].encode("utf-8")) for i in rows),
                      key=lambda d: d.name)
        out.append((label, f"{path} ({window_column} = {label})", docs))
    if len(out) < 2:
        raise StreamError(f"{path}: column {window_column!r} has {len(out)} value(s); need at least two windows "
                          "(window 0 pretrains)")
    return out


def is_plain_window_name(name: str) -> bool:
    """A window's name becomes a CSV header, a log line and a plot label."""
    return bool(name) and len(name) <= 64 and all(c.isalnum() or c in "._-" for c in name) and name[0].isalnum()
