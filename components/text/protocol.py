"""One text unit (an entry x a seed over the text stream): the inner fast loop and the outer
slow loop, measured in bits per byte (bpb: lower is better).

For each window k >= 1:
- *before*: the slow model as it stands scores window k's held-out documents (R[k-1, k]);
- *fast*: a fresh fast learner on that slow model reads the same documents prequentially
  (each segment scored, then learned from); what it learned there is dropped, so held-out
  documents never reach the slow model;
- *consolidation*: another fresh fast learner reads the first `consolidate_bytes` of the
  window's training documents, interleaved with `replay_bytes` of earlier windows' training
  text (window 0 included: replay), and the slow model moves `consolidation` of the way
  toward what it holds;
- *after*: the slow model scores every window's held-out documents: row k of R.

R[i, j] (bpb on window j's held-out documents after window i; row 0 = the pretrained
model) gives: `final_bpb` = mean_j R[T, j]; `forgetting_bpb` = mean_{j<T} (R[T, j] -
min_{l<T} R[l, j]) (how much worse than its best earlier value: > 0 forgotten, < 0 better than ever); `retention_bpb` = R[T, 0] -
R[0, 0] (> 0: the pretrain split got worse); `transfer_bpb` = mean_k (R[k, k] - R[k-1, k])
(< 0: consolidating a window helped on its own held-out documents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest

import numpy as np

from components.comparison import aggregate_seeds
from components.text.corpus import Document, TextWindow
from components.text.fast import DocumentScore, Static, bits_per_byte, prequential
from components.text.learners import consolidate, make_learner, parse_entry
from components.text.lm import ByteLM

# Metrics of a text unit and which way is better: every one of them lower, except `gain`.
LOWER_IS_BETTER = {"bpb_fast": True, "bpb_static": True, "gain": False, "final_bpb": True, "forgetting_bpb": True,
                   "retention_bpb": True, "transfer_bpb": True}


@dataclass
class TextUnitResult:
    matrix: np.ndarray  # R in bpb
    windows: list[dict] = field(default_factory=list)  # per window k >= 1: before, fast, gain, timings
    by_position: list[float] = field(default_factory=list)  # fast bpb by segment index, over every window
    static_by_position: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def score_windows(model: ByteLM, windows: list[TextWindow], segment: int) -> list[float]:
    learner = Static(model)
    return [bits_per_byte(prequential(learner, w.test, segment)) for w in windows]


def run_text_unit(
    slow: ByteLM, windows: list[TextWindow], entry: str, raw: dict, seed: int, segment: int, share: float,
    consolidate_bytes: int, on_window: Callable[[dict], None] | None = None, replay_bytes: int = 0,
) -> TextUnitResult:
    """`slow` is changed in place (consolidation); see the module docstring for the loop."""
    config = parse_entry(entry, raw)
    rows = [score_windows(slow, windows, segment)]
    result = TextUnitResult(np.zeros(0))
    fast_scores: list[DocumentScore] = []
    static_scores: list[DocumentScore] = []
    state_bytes = 0
    for k in range(1, len(windows)):
        static = prequential(Static(slow), windows[k].test, segment)
        learner = make_learner(config, slow, seed * 1000 + k)
        fast = prequential(learner, windows[k].test, segment)
        state_bytes = max(state_bytes, learner.state_bytes())
        reader = make_learner(config, slow, seed * 1000 + k)
        if config.learner != "static":
            prequential(reader, [consolidation_text(windows, k, consolidate_bytes, replay_bytes, 8 * segment)], segment)
        consolidate(slow, reader, share)
        rows.append(score_windows(slow, windows, segment))
        segments = sum(len(s.segment_bpb) for s in fast)
        record = {
            "window": k, "name": windows[k].name, "bpb_static": bits_per_byte(static), "bpb_fast": bits_per_byte(fast),
            "score_ms_per_segment": 1000 * sum(s.score_seconds for s in fast) / segments,
            "learn_ms_per_segment": 1000 * sum(s.learn_seconds for s in fast) / segments,
        }
        record["gain"] = 1 - record["bpb_fast"] / record["bpb_static"]
        result.windows.append(record)
        fast_scores += fast
        static_scores += static
        if on_window is not None:
            on_window(record)
    result.matrix = np.array(rows)
    result.by_position = _by_position(fast_scores)
    result.static_by_position = _by_position(static_scores)
    result.metrics = summarize_bpb(result.matrix, result.windows) | {"fast_state_bytes": float(state_bytes)}
    return result


def consolidation_text(windows: list[TextWindow], k: int, fresh_bytes: int, replay_bytes: int, chunk: int) -> Document:
    """What the fast learner reads before consolidating window k: the first `fresh_bytes` of
    its training text and `replay_bytes` of earlier windows' (an equal share each, from their
    start), cut into `chunk`-byte pieces spread evenly through each other, so that the newest
    window does not simply come last."""
    def pieces(text: bytes) -> list[bytes]:
        return [text[i: i + chunk] for i in range(0, len(text), chunk)]

    fresh = pieces(windows[k].train_bytes[:fresh_bytes])
    earlier = [pieces(w.train_bytes[: replay_bytes // k]) for w in windows[:k]] if replay_bytes else []
    replay = [p for round_ in zip_longest(*earlier) for p in round_ if p is not None]  # round robin over windows
    order = sorted([((i + 0.5) / len(fresh), 0, p) for i, p in enumerate(fresh)]
                   + [((i + 0.5) / len(replay), 1, p) for i, p in enumerate(replay)], key=lambda t: t[:2])
    return Document(f"{windows[k].name}/consolidation", b"".join(p for *_, p in order))


def summarize_bpb(matrix: np.ndarray, windows: list[dict]) -> dict[str, float]:
    r = np.asarray(matrix, dtype=float)
    last = len(r) - 1
    static = float(np.mean([w["bpb_static"] for w in windows]))
    fast = float(np.mean([w["bpb_fast"] for w in windows]))
    return {
        "bpb_static": static, "bpb_fast": fast, "gain": 1 - fast / static,
        "final_bpb": float(r[last].mean()),
        "forgetting_bpb": float(np.mean([r[last, j] - r[:last, j].min() for j in range(last)])),
        "retention_bpb": float(r[last, 0] - r[0, 0]),
        "transfer_bpb": float(np.mean([r[k, k] - r[k - 1, k] for k in range(1, last + 1)])),
    }


def summarize_seeds(records: list[dict]) -> dict:
    """One entry's line in the comparison: mean and std over its seeds' records of every
    metric, the mean R matrix, and the first seed's position curves."""
    stats = aggregate_seeds([{k: r[k] for k in LOWER_IS_BETTER} for r in records])
    return {"learner": records[0]["learner"], "seeds": [r["seed"] for r in records], **stats,
            "matrix_mean": np.mean([r["matrix"] for r in records], axis=0).tolist(),
            "by_position": records[0]["by_position"], "static_by_position": records[0]["static_by_position"],
            "fast_state_bytes": records[0]["fast_state_bytes"]}


def _by_position(scores: list[DocumentScore]) -> list[float]:
    """Mean bpb of the k-th segment over the documents that reach it."""
    longest = max(len(s.segment_bpb) for s in scores)
    return [float(np.mean([s.segment_bpb[k] for s in scores if len(s.segment_bpb) > k])) for k in range(longest)]


def build_slow(width: int, hidden: int, state: dict | None = None) -> ByteLM:
    model = ByteLM(width, hidden)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()

