"""The trainer: exact resume, refusal of a changed config, NaN handling, every config runs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from locseg import checkpoint
from locseg import config as config_lib
from locseg import train as train_lib
from locseg.train import TrainingError, fit

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
TINY = ["train.batch_size=4", "train.log_every=1", "train.eval_every=0", "train.eval_images=4",
        "train.checkpoint_every=0", "train.warmup_steps=2", "data.image_size=32"]
TINY_SEG = ["model.segmenter.num_slots=3", "model.segmenter.latent_dim=4", "model.segmenter.channels=[4,8]"]


def tiny_cfg(*extra: str):
    return config_lib.load(overrides=[*TINY, *TINY_SEG, *extra])


def test_resume_is_bit_exact(tiny_data, tmp_path):
    cfg = tiny_cfg("train.max_steps=6")
    straight = fit(cfg, tiny_data, tmp_path / "a", progress=False)
    assert straight.status == "done" and straight.step == 6
    first = fit(cfg, tiny_data, tmp_path / "b", progress=False, stop_at=3)
    assert first.status == "stopped" and first.step == 3
    resumed = fit(cfg, tiny_data, tmp_path / "b", progress=False, resume=True)
    assert resumed.step == 6
    a = checkpoint.load(tmp_path / "a" / "checkpoint.pt")["model"]
    b = checkpoint.load(tmp_path / "b" / "checkpoint.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "b" / "config.yaml").exists()
    rows = (tmp_path / "b" / "train.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6  # header + one row per step across both sessions


def test_resume_with_changed_config_is_refused(tiny_data, tmp_path):
    fit(tiny_cfg("train.max_steps=1"), tiny_data, tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"train.lr: 0.001 -> 0.01"):
        fit(tiny_cfg("train.max_steps=2", "train.lr=0.01"), tiny_data, tmp_path, progress=False, resume=True)
    # a longer run is allowed
    assert fit(tiny_cfg("train.max_steps=2"), tiny_data, tmp_path, progress=False, resume=True).step == 2


def test_existing_run_needs_resume(tiny_data, tmp_path):
    fit(tiny_cfg("train.max_steps=1"), tiny_data, tmp_path, progress=False)
    with pytest.raises(TrainingError, match="--resume"):
        fit(tiny_cfg("train.max_steps=1"), tiny_data, tmp_path, progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        fit(tiny_cfg("train.max_steps=1"), tiny_data, tmp_path / "new", progress=False, resume=True)


def test_nan_loss_is_skipped_then_stops(tiny_data, tmp_path, monkeypatch):
    real = train_lib.to_tensor
    calls = {"n": 0}

    def poisoned(images, device, size):
        calls["n"] += 1
        x = real(images, device, size)
        return x * float("nan") if calls["n"] == 2 else x

    monkeypatch.setattr(train_lib, "to_tensor", poisoned)
    result = fit(tiny_cfg("train.max_steps=3"), tiny_data, tmp_path / "one", progress=False)
    assert result.step == 3  # the poisoned step was skipped, the run went on
    params = checkpoint.load(tmp_path / "one" / "checkpoint.pt")["model"]
    assert all(torch.isfinite(v).all() for v in params.values() if v.is_floating_point())

    monkeypatch.setattr(train_lib, "to_tensor", lambda images, device, size: real(images, device, size) * float("nan"))
    with pytest.raises(TrainingError, match="consecutive non-finite"):
        fit(tiny_cfg("train.max_steps=10", "train.max_bad_steps=3"), tiny_data, tmp_path / "two", progress=False)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_runs_one_step(path, tiny_data, tmp_path):
    cfg = config_lib.load(path, [*TINY, "train.max_steps=1", "model.monet.unet_channels=4",
                                 "model.monet.vae_channels=4", "model.monet.unet_blocks=3",
                                 "model.segmenter.channels=[4,8]"])
    result = fit(cfg, tiny_data, tmp_path, progress=False)
    assert result.step == 1
    assert np.isfinite(result.metrics["fg_ari"]) or result.metrics["fg_ari_defined"] == 0


def test_batches_depend_only_on_seed_and_step():
    a = train_lib.batch_indices(100, 8, 17, 0)
    assert np.array_equal(a, train_lib.batch_indices(100, 8, 17, 0))
    assert not np.array_equal(a, train_lib.batch_indices(100, 8, 17, 1))
    epoch = np.concatenate([train_lib.batch_indices(100, 10, s, 0) for s in range(10)])
    assert sorted(epoch.tolist()) == list(range(100))


def test_ctrl_c_saves_a_checkpoint_and_resumes(tiny_data, tmp_path, monkeypatch):
    real = train_lib.to_tensor
    calls = {"n": 0}

    def interrupted(images, device, size):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(images, device, size)

    monkeypatch.setattr(train_lib, "to_tensor", interrupted)
    result = fit(tiny_cfg("train.max_steps=5"), tiny_data, tmp_path, progress=False)
    assert result.status == "interrupted" and result.step == 2
    assert checkpoint.load(tmp_path / "checkpoint.pt")["step"] == 2
    monkeypatch.setattr(train_lib, "to_tensor", real)
    assert fit(tiny_cfg("train.max_steps=5"), tiny_data, tmp_path, progress=False, resume=True).step == 5


@pytest.mark.parametrize("how", ["sigint", "raise"])
def test_resume_after_ctrl_c_mid_step_is_bit_exact(how, tiny_data, tmp_path, monkeypatch):
    """Ctrl-C lands inside a forward pass, after its random draws (VAE sampling, GMM start): a first
    one finishes the step, a second one (here: KeyboardInterrupt raised there) abandons it. Either
    way the resumed run repeats the uninterrupted run's losses bit for bit, periodic evaluation included."""
    import csv
    import os
    import signal

    cfg = tiny_cfg("train.max_steps=6", "train.eval_every=3")
    fit(cfg, tiny_data, tmp_path / "straight", progress=False)
    real = train_lib.build_model

    def interrupted_in_forward(model_cfg, size):
        model = real(model_cfg, size)
        calls = []

        def hook(module, inputs, output):
            calls.extend([1] if module.training else [])  # evaluation's forward passes do not count
            if len(calls) == 5 and module.training:  # the forward pass of step index 4
                if how == "sigint":
                    os.kill(os.getpid(), signal.SIGINT)
                else:
                    raise KeyboardInterrupt

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_lib, "build_model", interrupted_in_forward)
    first = fit(cfg, tiny_data, tmp_path / "cut", progress=False)
    assert first.status == "interrupted" and first.step == (5 if how == "sigint" else 4)
    monkeypatch.setattr(train_lib, "build_model", real)
    assert fit(cfg, tiny_data, tmp_path / "cut", progress=False, resume=True).step == 6

    def losses(run):
        with (run / "train.csv").open() as f:
            return [(row["step"], row["loss"]) for row in csv.DictReader(f)]

    assert losses(tmp_path / "cut") == losses(tmp_path / "straight")
