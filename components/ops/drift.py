"""Drift trigger: a river detector over the serving model's 0/1 errors.

The detector reads the errors on the window absorbed last (the reference: what the model
was adapted to) followed by the errors on the window that just arrived, in arrival order.
A change inside the new window's part is a drift: the loop may consolidate early.
"""

from __future__ import annotations

import numpy as np
from river import drift

from components.config import DriftTrigger


def build_detector(trigger: DriftTrigger) -> drift.ADWIN | drift.PageHinkley:
    if trigger.detector == "adwin":
        return drift.ADWIN(delta=trigger.delta)
    if trigger.detector == "page_hinkley":
        return drift.PageHinkley(delta=trigger.delta, threshold=trigger.threshold)
    raise ValueError(f"no detector for {trigger.detector!r}")


def detect_drift(reference_errors: np.ndarray, new_errors: np.ndarray, trigger: DriftTrigger) -> int | None:
    """Row of the new window where the detector first fires, or None (also when off)."""
    if trigger.detector == "off":
        return None
    detector = build_detector(trigger)
    for value in reference_errors:
        detector.update(float(value))
    for row, value in enumerate(new_errors):
        detector.update(float(value))
        if detector.drift_detected:
            return row
    return None
