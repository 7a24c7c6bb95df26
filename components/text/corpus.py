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
    """Windows of documents (held-out ones cut to `max_doc_bytes`). A document shorter than
    `min_bytes` (one segment) is one line naming it in your own corpus (`root` given); the
    built-in corpus (the standard library, full of short `__init__.py` files) leaves such
    documents out. A window with no held-out or no training document is one line naming it."""
    built_in = root is None
    root = root or stdlib_root()
    out = []
    for index, (name, source) in enumerate(windows):
        docs = _documents(source, root)
        short = [d for d in docs if len(d.data) < min_bytes]
        if short and not built_in:
            raise StreamError(f"{root / short[0].name}: {len(short[0].data)} bytes, shorter than one segment "
                              f"({min_bytes} bytes; {len(short)} such document(s) in window {index} ({name})); "
                              "remove them or lower text.segment")
        docs = [d for d in docs if len(d.data) >= min_bytes]
        test = [d for d in docs if held_out(d.name, test_share, seed)]
        if max_doc_bytes:  # evaluation cost: held-out documents are read up to this many bytes
            test = [Document(d.name, d.data[:max_doc_bytes]) for d in test]
        train = [d for d in docs if not held_out(d.name, test_share, seed)]
        if max_test_docs is not None:
            test = test[:max_test_docs]
        if not docs:
            raise StreamError(f"{root / source}: window {index} ({name}) has no document of at least {min_bytes} bytes")
        if not test or not train:
            missing = "held-out" if not test else "training"
            raise StreamError(f"{root / source}: window {index} ({name}) has no {missing} document "
                            f"({len(docs)} document(s), {test_share:.0%} held out); add documents or change the share")
        out.append(TextWindow(index, name, train, test))
    return out
