"""Unit checks of the convergence callbacks (the end-to-end NaN test runs the real loop)."""

import math

from myllm_mc.train.callbacks import CallbackList, Control, StepRecord
from myllm_mc.train.diagnostics import (
    NONFINITE_EXIT,
    InitialLossCheck,
    LossSpikeDetector,
    NonFiniteGuard,
    initial_loss_message,
    robust_zscore,
)


def record(step, loss, skipped=False, grad_norm=1.0):
    return StepRecord(step=step, loss=loss, grad_norm=grad_norm, lr=1e-3, tokens=64, step_time=0.1, data_time=0.0,
                      consumed_samples=16 * step, skipped=skipped, extra={"global_batch_size": 16})


def test_initial_loss_near_ln_vocab_is_silent_and_far_warns():
    assert initial_loss_message(math.log(8192) + 0.3, 8192, 0.5) is None
    msg = initial_loss_message(12.0, 8192, 0.5)
    assert msg.startswith("step-0 loss 12.000 is +2.989 from ln(8192) = 9.011")
    warnings = []
    check = InitialLossCheck(8192, 0.5, warnings.append)
    check.on_step_end(None, record(1, 3.0), Control())
    check.on_step_end(None, record(2, 30.0), Control())       # only the first step is checked
    assert len(warnings) == 1 and "from ln(8192)" in warnings[0]
    resumed = InitialLossCheck(8192, 0.5, warnings.append)      # a resumed run starts past step 1: nothing to judge
    resumed.on_step_end(None, record(11, 3.0), Control())
    assert len(warnings) == 1


def test_robust_zscore_is_not_inflated_by_an_earlier_outlier():
    window = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 50.0, 2.0, 2.02, 1.98]
    assert robust_zscore(3.0, window) > 10          # a plain z-score would be ~ -0.1 here
    assert abs(robust_zscore(2.0, window)) < 0.5


def test_spike_detector_flags_the_spike_with_its_batch():
    warnings = []
    detector = LossSpikeDetector(window=20, threshold=6.0, warn=warnings.append)
    losses = [5.0 - 0.01 * i + 0.003 * (-1) ** i for i in range(30)]
    losses[25] = 9.0
    for i, loss in enumerate(losses, start=1):
        detector.on_step_end(None, record(i, loss), Control())
    assert [s["step"] for s in detector.spikes] == [26]
    assert detector.spikes[0]["first_sample"] == 16 * 25
    assert "loss spike at step 26" in warnings[0] and "batch starts at sample 400" in warnings[0]


def test_nonfinite_guard_counts_then_stops_with_message():
    guard = NonFiniteGuard(max_skipped=2, warn=lambda m: None)
    callbacks = CallbackList([guard])
    assert not NonFiniteGuard.is_finite(float("nan"), 1.0) and not NonFiniteGuard.is_finite(1.0, float("inf"))
    assert NonFiniteGuard.is_finite(1.0, None)
    for step in (3, 7):
        control = Control()
        callbacks.on_step_end(None, record(step, float("nan"), skipped=True), control)
        assert not control.stop
    control = Control()
    callbacks.on_step_end(None, record(9, float("nan"), skipped=True), control)
    assert control.stop and control.exit_code == NONFINITE_EXIT and not control.save
    assert "stopping at step 9: 3 non-finite steps (3, 7, 9)" in control.reason
    assert "last good checkpoint: none saved yet" in control.reason and "lower optimizer.lr" in control.reason
