"""Choose a text learner's settings honestly: score a grid of them on the *training*
documents of windows 1-3 of the built-in text stream (never the held-out ones the stage and
`benchmarks.text_ttt` report), prequentially, against the static model.

    python -m benchmarks.text_settings dynamic_eval '{"backprop": "step"}' \
        --grid '{"lr": [0.2, 0.3, 0.5], "steps": [1, 2], "decay": [0.003, 0.01, 0.03]}'

Pretrains the byte LM as `benchmarks.text_ttt` does (`--steps`, seed 0, 1 thread), reads
`--docs` training documents of up to `--doc-bytes` bytes per window, and prints every
setting's mean bpb over the windows, its gain over static, and the milliseconds per segment
that scoring and learning took. Writes benchmarks/results/text_settings_<learner>.json.
Numbers, no assertions."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from benchmarks.text_ttt import RESULTS, SEGMENT, pretrained_stream
from components.text.corpus import Document
from components.text.fast import bits_per_byte, prequential
from components.text.learners import make_learner, parse_entry
from components.text.lm import ByteLM


def score(slow: ByteLM, learner: str, knobs: dict, windows: list[list[Document]]) -> dict:
    bpb, score_s, learn_s, segments = [], 0.0, 0.0, 0
    for documents in windows:
        scores = prequential(make_learner(parse_entry(learner, knobs), slow, 0), documents, SEGMENT)
        bpb.append(bits_per_byte(scores))
        score_s += sum(s.score_seconds for s in scores)
        learn_s += sum(s.learn_seconds for s in scores)
        segments += sum(len(s.segment_bpb) for s in scores)
    return {"bpb": sum(bpb) / len(bpb), "by_window": bpb, "score_ms": 1000 * score_s / segments,
            "learn_ms": 1000 * learn_s / segments}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_settings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("learner", help="static, dynamic_eval, ttt_lora or neural_memory")
    parser.add_argument("fixed", nargs="?", default="{}", help="knobs every setting shares (JSON)")
    parser.add_argument("--grid", default="{}", help="knob -> list of values (JSON); every combination is scored")
    parser.add_argument("--steps", type=int, default=600, help="pretraining steps (default 600)")
    parser.add_argument("--docs", type=int, default=6, help="training documents read per window (default 6)")
    parser.add_argument("--doc-bytes", type=int, default=4096, help="bytes read of each (default 4096)")
    args = parser.parse_args()
    fixed, grid = json.loads(args.fixed), json.loads(args.grid)
    windows, slow, _ = pretrained_stream(args.steps, args.docs, args.doc_bytes)
    reading = [[Document(d.name, d.data[: args.doc_bytes]) for d in w.train[: args.docs]] for w in windows[1:]]
    static = score(slow, "static", {}, reading)
    print(f"static: {static['bpb']:.4f} bpb on windows 1-{len(windows) - 1}'s training documents "
          f"({args.docs} per window, up to {args.doc_bytes} bytes each), {static['score_ms']:.1f} ms per segment")
    rows = []
    for values in itertools.product(*grid.values()):
        knobs = fixed | dict(zip(grid, values))
        began = time.perf_counter()
        row = {"knobs": knobs, **score(slow, args.learner, knobs, reading)}
        row["gain"] = 1 - row["bpb"] / static["bpb"]
        row["update_over_forward"] = (row["score_ms"] + row["learn_ms"] - static["score_ms"]) / static["score_ms"]
        rows.append(row)
        print(f"{json.dumps(knobs):<60} {row['bpb']:.4f} bpb  gain {row['gain']:6.2%}  update "
              f"{row['update_over_forward']:.1f}x a forward  ({time.perf_counter() - began:.0f} s)")
    best = min(rows, key=lambda r: r["bpb"]) if rows else None
    if best:
        print(f"lowest bpb: {json.dumps(best['knobs'])} (gain {best['gain']:.2%})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"text_settings_{args.learner}.json").write_text(
        json.dumps({"static": static, "settings": rows, "args": vars(args)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
