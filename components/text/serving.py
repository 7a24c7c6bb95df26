"""A text entry as it is served: the slow byte LM as the stream left it (after its last
consolidation) with the entry's fast learner, reading each document it is given the way
the held-out documents were read: prequentially, every segment scored before the learner
learns from it. Each document starts from a fresh learner on the same slow weights, so an
answer does not depend on what else was in the request, or in earlier ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from components.errors import SlowfastError
from components.text.corpus import Document
from components.text.fast import Static, bits_per_byte, prequential
from components.text.learners import TextConfig, make_learner, parse_entry
from components.text.protocol import build_slow

COLUMNS = ("bytes", "bpb_static", "bpb_fast", "gain")  # one row per document, in this order


@dataclass(frozen=True)
class TextReader:
    slow: nn.Module
    config: TextConfig
    segment: int
    seed: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any], state: dict) -> "TextReader":
        """`spec` as `spec_of` writes it; `state` the slow model's weights."""
        config = parse_entry(spec["entry"], spec["method"], "the served model's spec")
        return cls(build_slow(spec["width"], spec["hidden"], state), config, spec["segment"], spec["seed"])

    def read(self, texts: list[str | bytes]) -> list[dict[str, float]]:
        """bytes, bpb of the slow model alone, bpb with the fast learner reading, and the gain."""
        rows = []
        for i, text in enumerate(texts):
            data = text.encode() if isinstance(text, str) else bytes(text)
            if not data:
                raise SlowfastError(f"row {i}: empty text (a document needs at least one byte)")
            document = [Document(f"request/{i}", data)]
            static = bits_per_byte(prequential(Static(self.slow), document, self.segment))
            fast = bits_per_byte(prequential(make_learner(self.config, self.slow, self.seed), document, self.segment))
            rows.append({"bytes": float(len(data)), "bpb_static": static, "bpb_fast": fast, "gain": 1 - fast / static})
        return rows


def spec_of(entry: str, method: dict[str, Any], width: int, hidden: int, segment: int, seed: int) -> dict[str, Any]:
    """What a served model needs besides the weights (plain JSON)."""
    return {"entry": entry, "method": dict(method or {}), "width": width, "hidden": hidden, "segment": segment,
            "seed": seed}
