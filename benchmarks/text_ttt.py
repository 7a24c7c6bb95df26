"""Learning while reading (issue 16): held-out bits per byte of the static slow model and of
each fast learner on the built-in text stream (the standard library's source and prose).

    python -m benchmarks.text_ttt [--steps N] [--docs K] [--doc-bytes B]

Pretrains the byte-level LM on window 0 (`--steps` Adam steps of 32 x 128 bytes, 1 thread),
then scores every window's held-out documents prequentially (each 128-byte segment scored
before any learner learns from it). Prints bpb per window and learner, the relative gain
over static, seconds per segment for scoring and for the fast update, the fast state's
bytes, and bpb by position in the document (the gain grows as a document is read). Writes
benchmarks/results/text_ttt.json. Numbers, no assertions."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from components.config import load_params
from components.text.corpus import build_windows
from components.text.fast import bits_per_byte, prequential
from components.text.learners import make_learner, parse_entry
from components.text.lm import ByteLM, pretrain_lm

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SEGMENT = 128
# The learners of params.yaml's `text.methods` (settings chosen on windows 1-3's training
# documents: benchmarks/text_settings.py), and two variants of dynamic_eval: one step per
# segment, and backpropagation through the whole segment (Krause et al.'s form).
_TEXT = load_params(REPO / "params.yaml").text
_VARIANTS = {"dynamic_eval-1step": {"steps": 1}, "dynamic_eval-segment": {"backprop": "segment"}}
LEARNERS = {
    **{entry: (lambda slow, e=entry: make_learner(parse_entry(e, _TEXT.methods[e]), slow, 0)) for entry in _TEXT.methods},
    **{name: (lambda slow, k=knobs: make_learner(parse_entry("dynamic_eval", {**_TEXT.methods.get("dynamic_eval", {}), **k}),
                                                 slow, 0)) for name, knobs in _VARIANTS.items()},
}


def pretrained_stream(steps: int, docs: int, doc_bytes: int) -> tuple[list, ByteLM, list[float]]:
    """The built-in text stream (`docs` held-out documents of up to `doc_bytes` per window)
    and the byte LM pretrained `steps` Adam steps on window 0: seed 0, 1 thread, as every
    text benchmark reads it."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    windows = build_windows(max_test_docs=docs, max_doc_bytes=doc_bytes)
    slow = ByteLM()
    losses = pretrain_lm(slow, windows[0].train_bytes, steps, generator=torch.Generator().manual_seed(0))
    return windows, slow.eval(), losses


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_ttt", description=__doc__)
    parser.add_argument("--steps", type=int, default=600, help="pretraining steps (default 600)")
    parser.add_argument("--docs", type=int, default=6, help="held-out documents per window (default 6)")
    parser.add_argument("--doc-bytes", type=int, default=4096, help="bytes read of each held-out document")
    args = parser.parse_args()
    began = time.perf_counter()
    windows, slow, losses = pretrained_stream(args.steps, args.docs, args.doc_bytes)
    pretrain_seconds = time.perf_counter() - began
    params = sum(p.numel() for p in slow.parameters())
    print(f"slow model: byte GRU LM, {params:,} parameters; pretrained {args.steps} steps on window 0 "
          f"({len(windows[0].train_bytes):,} bytes) in {pretrain_seconds:.0f} s, last loss {losses[-1] / 0.6931:.3f} bpb")
    out: dict = {"pretrain_seconds": pretrain_seconds, "parameters": params, "windows": {}}
    print(f"{'window':<16}{'learner':<14}{'bpb':>7}{'gain':>8}{'score ms':>10}{'learn ms':>10}{'state KiB':>11}")
    print(f"{'':<38}{'(per segment of ' + str(SEGMENT) + ' bytes)':>20}")
    for window in windows:
        row = out["windows"][window.name] = {}
        for name, make in LEARNERS.items():
            learner = make(slow)
            scores = prequential(learner, window.test, SEGMENT)
            segments = sum(len(s.segment_bpb) for s in scores)
            bpb = bits_per_byte(scores)
            row[name] = {"bpb": bpb, "score_ms_per_segment": 1000 * sum(s.score_seconds for s in scores) / segments,
                         "learn_ms_per_segment": 1000 * sum(s.learn_seconds for s in scores) / segments,
                         "state_bytes": learner.state_bytes(), "by_position": _by_position(scores)}
            gain = 1 - bpb / row["static"]["bpb"]
            print(f"{window.name:<16}{name:<14}{bpb:>7.3f}{gain:>8.1%}{row[name]['score_ms_per_segment']:>10.1f}"
                  f"{row[name]['learn_ms_per_segment']:>10.1f}{learner.state_bytes() / 1024:>11.1f}")
    # A learner that reuses the scoring pass (its graph) scores more slowly than the static
    # model; the update's cost is what it adds to a plain (static, no-graph) forward.
    plain = sum(out["windows"][w.name]["static"]["score_ms_per_segment"] for w in windows) / len(windows)
    for name in LEARNERS:
        rows = [out["windows"][w.name][name] for w in windows]
        score = sum(r["score_ms_per_segment"] for r in rows) / len(rows)
        learn = sum(r["learn_ms_per_segment"] for r in rows) / len(rows)
        added = (score + learn - plain) / plain
        out.setdefault("costs", {})[name] = {"score_ms": score, "learn_ms": learn, "plain_forward_ms": plain,
                                             "update_over_forward": added}
        print(f"{name}: scoring {SEGMENT / score * 1000:,.0f} bytes/s; an update adds {added:.1f}x a plain "
              f"forward over the same segment ({score:.1f} + {learn:.1f} ms vs {plain:.1f} ms; target <= 3x)")
    held_out = {n: sum(out["windows"][w.name][n]["bpb"] for w in windows[1:]) / (len(windows) - 1) for n in LEARNERS}
    out["mean_bpb_windows_1_on"] = held_out
    print(f"mean over windows 1-{len(windows) - 1}: " + ", ".join(f"{n} {v:.3f}" for n, v in held_out.items()))
    print(best_learners(held_out, out["costs"]))
    for name in LEARNERS:
        curve = out["windows"][windows[1].name][name]["by_position"]
        print(f"{windows[1].name} bpb by position (bytes {SEGMENT * 4} each), {name}: " + " ".join(f"{v:.2f}" for v in curve))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_ttt.json").write_text(json.dumps(out, indent=2) + "\n")


def best_learners(held_out: dict[str, float], costs: dict[str, dict], bound: float = 3.0) -> str:
    """The fast learner with the lowest mean bpb, and the one among those whose update costs
    at most `bound` x a plain forward (both targets met by one learner?)."""
    fast = [n for n in held_out if n != "static"]
    within = [n for n in fast if costs[n]["update_over_forward"] <= bound]

    def line(name: str) -> str:
        return (f"{name} {1 - held_out[name] / held_out['static']:.1%} below static at "
                f"{costs[name]['update_over_forward']:.1f}x a forward")

    best = min(fast, key=held_out.get)
    cheap = f"best within {bound:g}x: " + (line(min(within, key=held_out.get)) if within else "none")
    return f"best fast learner: {line(best)}; {cheap} (targets: >= 8% and <= {bound:g}x)"


def _by_position(scores: list, bucket: int = 4) -> list[float]:
    """Mean bpb of segments [k*bucket, (k+1)*bucket) over the documents that reach them."""
    longest = max(len(s.segment_bpb) for s in scores)
    out = []
    for start in range(0, longest, bucket):
        values = [v for s in scores for v in s.segment_bpb[start: start + bucket]]
        out.append(sum(values) / len(values))
    return out


if __name__ == "__main__":
    main()
