"""The crash-safety of the checkpoint directory, without a model (the kill -9 test drives the real loop)."""

import os
import signal

from myllm_mc.checkpoint import store
from myllm_mc.train.signals import PREEMPTED_EXIT, PreemptionHandler


def _save(root, step):
    tmp = store.prepare_tmp(root, step)
    (tmp / "shard.bin").write_bytes(b"x" * 10)
    return store.commit(root, step, {"step": step})


def test_commit_publishes_and_latest_points_to_newest(tmp_path):
    _save(tmp_path, 10)
    final = _save(tmp_path, 20)
    assert final.name == "step_0000020" and store.find_latest(tmp_path) == final
    assert store.read_meta(final)["step"] == 20
    assert not list(tmp_path.glob(".tmp-*"))


def test_interrupted_save_never_hides_the_last_good_checkpoint(tmp_path):
    good = _save(tmp_path, 10)
    tmp = store.prepare_tmp(tmp_path, 20)            # a save that dies here: files half written, no commit
    (tmp / "shard.bin").write_bytes(b"partial")
    assert store.find_latest(tmp_path) == good
    (tmp_path / "latest").write_text("step_0000020\n")   # even a pointer to an incomplete dir is not trusted
    assert store.find_latest(tmp_path) == good
    store.prepare_tmp(tmp_path, 30)                  # the next save clears stale temporaries
    assert not (tmp_path / ".tmp-step_0000020").exists()


def test_prune_keeps_last_n_and_latest(tmp_path):
    for step in (10, 20, 30, 40):
        _save(tmp_path, step)
    removed = store.prune(tmp_path, keep_last=2)
    assert [p.name for p in removed] == ["step_0000010", "step_0000020"]
    assert [p.name for p in store.list_complete(tmp_path)] == ["step_0000030", "step_0000040"]


def test_preemption_handler_sets_flag_on_term_and_usr1():
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        handler = PreemptionHandler().install()
        try:
            assert not handler.should_stop()
            os.kill(os.getpid(), sig)
            assert handler.should_stop() and handler.signal_name == sig.name
            assert handler.should_stop(all_reduce_max=lambda flag: max(flag, 0))
        finally:
            handler.uninstall()
    assert PreemptionHandler().should_stop(all_reduce_max=lambda flag: max(flag, 1))   # another rank got one
    assert PREEMPTED_EXIT == 75
