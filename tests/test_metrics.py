import numpy as np
import pytest

from components.metrics import average_accuracy, backward_transfer, forgetting, forward_transfer, summarize

# Rows: slow model, after window 1, after window 2. Columns: windows 0, 1, 2.
R = np.array(
    [
        [0.90, 0.10, 0.20],
        [0.60, 0.80, 0.30],
        [0.70, 0.50, 0.90],
    ]
)


def test_acc_is_mean_of_last_row():
    assert average_accuracy(R) == pytest.approx((0.70 + 0.50 + 0.90) / 3)


def test_bwt_compares_with_accuracy_right_after_learning():
    # j=0: 0.70-0.90, j=1: 0.50-0.80
    assert backward_transfer(R) == pytest.approx(((0.70 - 0.90) + (0.50 - 0.80)) / 2)


def test_forgetting_compares_with_best_accuracy_and_differs_from_minus_bwt():
    # Window 0 dropped to 0.60 then recovered to 0.70: max over l<2 of R[l, 0] is 0.90.
    # Window 1: max(0.10, 0.80) - 0.50.
    assert forgetting(R) == pytest.approx(((0.90 - 0.70) + (0.80 - 0.50)) / 2)
    other = np.array([[0.5, 0.0], [0.9, 0.8]])  # learning window 1 *raised* window 0
    assert backward_transfer(other) == pytest.approx(0.4)
    assert forgetting(other) == pytest.approx(-0.4)
    lifted = np.array([[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.7, 0.8, 0.9]])
    assert forgetting(lifted) == pytest.approx(((0.9 - 0.7) + (0.8 - 0.8)) / 2)
    assert backward_transfer(lifted) == pytest.approx(((0.7 - 0.5) + (0.8 - 0.8)) / 2)  # +0.1
    assert forgetting(lifted) == pytest.approx(0.1)  # while -BWT is -0.1


def test_fwt_compares_with_the_untouched_slow_model():
    # j=1: R[0,1]-b[1] = 0; j=2: R[1,2]-b[2] = 0.30-0.20
    assert forward_transfer(R) == pytest.approx((0.0 + 0.10) / 2)


def test_summary_has_every_metric_and_rejects_bad_shapes():
    assert set(summarize(R)) == {"acc", "bwt", "fwt", "forgetting"}
    with pytest.raises(ValueError, match="square"):
        summarize(np.ones((2, 3)))


def test_a_heatmap_stays_bounded_whatever_the_number_of_windows(tmp_path):
    """A stream cut by day can have hundreds of windows; the figure must stay openable."""
    import numpy as np
    from PIL import Image

    from components.plots import accuracy_heatmap

    for windows in (4, 210):
        path = accuracy_heatmap(np.random.default_rng(0).random((windows + 1, windows + 1)), "t", tmp_path / f"h{windows}.png")
        with Image.open(path) as image:
            width, height = image.size
        assert width * height <= 1300 * 1100, (windows, image.size)
