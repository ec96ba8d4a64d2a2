"""The loss curves' smoothing (TensorBoard's EMA, switchable on the figure) and clean log ticks."""
import pytest

from kdapp.ui import plots


def test_ema_is_tensorboards_debiased_average():
    assert plots.ema([4.0, 2.0, None, 1.0], weight=0.5) == pytest.approx([4.0, (1.0 + 1.0) / 0.75, None,
                                                                          ((0.5 * 2.0 + 0.5) ) / 0.875])
    assert plots.ema([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])  # no pull towards 0 at the start


def test_log_ticks_are_a_clean_ladder():
    assert plots.log_ticks([0.03, 0.9])["ticktext"] == ["0.05", "0.1", "0.2", "0.5"]
    assert plots.log_ticks([0.001, 20.0])["ticktext"] == ["0.001", "0.01", "0.1", "1", "10"]  # powers of ten alone
    assert plots.log_ticks([0.3, 0.45])["ticktext"] == ["0.3", "0.45"]


def test_the_loss_figure_has_smoothed_curves_and_a_raw_switch():
    steps = list(range(1, 51))
    noisy = [1.0 / s + (0.2 if s % 2 else 0.0) for s in steps]
    snapshot = {"id": "r1", "config": {"loss": "kd"},
                "curves": {"step": steps, "loss": noisy, "soft": noisy, "hard": noisy, "feature": [None] * 50,
                           "baseline": noisy}}
    fig = plots.loss_figure(snapshot).to_plotly_json()
    raw, smooth = fig["data"][:4], fig["data"][4:]
    assert len(smooth) == 4 and all(t["opacity"] == 0.25 for t in raw) and smooth[0]["y"] == plots.ema(noisy)
    labels = [b["label"] for b in fig["layout"]["updatemenus"][0]["buttons"]]
    assert labels == ["smoothed (EMA 0.9)", "raw"]
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["yaxis"]["tickvals"]


def test_a_long_run_is_drawn_with_few_points_and_smoothed_on_all_of_them():
    """The page redraws the live loss chart every second: a 1,000-step run is drawn with at most
    MAX_POINTS + 1 points per curve, the last step always among them, its EMA taken over every step."""
    steps = list(range(1, 1001))
    noisy = [1.0 / s + (0.2 if s % 2 else 0.0) for s in steps]
    snapshot = {"id": "r1", "config": {"loss": "kd"},
                "curves": {"step": steps, "loss": noisy, "soft": noisy, "hard": noisy, "feature": [None] * 1000,
                           "baseline": noisy}}
    fig = plots.loss_figure(snapshot).to_plotly_json()
    assert all(len(t["x"]) <= plots.MAX_POINTS + 1 and list(t["x"])[-1] == 1000 for t in fig["data"])
    smooth = fig["data"][4]
    full = plots.ema(noisy)
    assert list(smooth["y"]) == [full[x - 1] for x in smooth["x"]]  # thinned after smoothing, not before


@pytest.mark.parametrize("last, step", [(3, 1), (10, 1), (20, 2), (40, 5), (100, 10), (250, 50)])
def test_the_epoch_axis_has_about_ten_whole_epoch_ticks_and_no_padding(last, step):
    epochs = list(range(1, last + 1))
    snapshot = {"id": "x", "config": {"loss": "kd"},
                "accuracy": {"epoch": epochs, "teacher": [0.99] * last, "student": [0.9] * last, "baseline": [0.8] * last}}
    axis = plots.accuracy_figure(snapshot).layout.xaxis
    assert axis.dtick == step and last / step <= 10
    assert 0.5 < axis.range[0] < 1 and last < axis.range[1] < last + 0.5
