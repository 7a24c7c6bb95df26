"""A tabular concept-drift stream from river's synthetic generators.

Window k draws `rows_per_window` rows from concept `concepts[k]`. Where the concept changes,
the window comes from river's `ConceptDriftStream(old, new)` centred `drift_width` rows into
the window, so the new concept takes over within about 2 x drift_width rows (abrupt at
width 1). Each drift gets its own short ConceptDriftStream instead of one stream nested
over the whole sequence: river computes exp(4 * (position - t) / width), which overflows
once a drift lies more than ~177 widths ahead (why widths of 50 fail on long streams).
"""

from __future__ import annotations

import numpy as np

from components.config import StreamParams
from components.data.windowing import PreparedStream, windows_from_rows
from components.errors import ParamsError

CONCEPTS = {"agrawal": range(10), "sea": range(4)}


def _generator(kind: str, concept: int, noise: float, seed: int):
    from river.datasets import synth

    if kind == "agrawal":
        return synth.Agrawal(classification_function=concept, seed=seed, perturbation=noise, balance_classes=False)
    return synth.SEA(variant=concept, noise=noise, seed=seed)


def _window_rows(kind: str, previous: int | None, concept: int, rows: int, width: int, noise: float, seed: int) -> list:
    from river.datasets import synth

    if previous is None or previous == concept:
        source = _generator(kind, concept, noise, seed)
    else:
        source = synth.ConceptDriftStream(
            stream=_generator(kind, previous, noise, seed + 1), drift_stream=_generator(kind, concept, noise, seed + 2),
            position=width, width=width, seed=seed + 3,
        )
    return list(source.take(rows))


def river_stream(stream: StreamParams) -> PreparedStream:
    r = stream.river
    assert r is not None
    allowed = CONCEPTS[r.generator]
    for k, concept in enumerate(r.concepts):
        if concept not in allowed:
            raise ParamsError(f"params.yaml: stream.river.concepts.{k}: {r.generator} concepts are {allowed.start}..{allowed.stop - 1}, got {concept}")
    if r.drift_width > r.rows_per_window // 2:
        raise ParamsError(f"params.yaml: stream.river.drift_width: {r.drift_width} leaves no room in a window of {r.rows_per_window} rows (at most half)")
    xs, ys = [], []
    for k, concept in enumerate(r.concepts):
        previous = r.concepts[k - 1] if k else None
        rows = _window_rows(r.generator, previous, concept, r.rows_per_window, r.drift_width, r.noise, stream.seed + 10 * k)
        names = list(rows[0][0])
        xs.append(np.array([[float(x[name]) for name in names] for x, _ in rows], dtype=np.float32))
        ys.append(np.array([int(y) for _, y in rows], dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    ids = np.repeat(np.arange(len(r.concepts)), r.rows_per_window)
    prepared = windows_from_rows(x, y, ids, len(r.concepts), ["0", "1"], stream.test_fraction, stream.seed, stream.name, normalize=True)
    prepared.extra.update(features=[str(n) for n in names], drifts=[
        {"window": k, "from": r.concepts[k - 1], "to": c, "width": r.drift_width}
        for k, c in enumerate(r.concepts) if k and c != r.concepts[k - 1]
    ])
    return prepared
