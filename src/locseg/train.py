"""Training, shared by every model (no model-specific branches).

:func:`train_step` is one optimisation step that scripts and tests can call; :func:`fit` trains
from a config and a dataset directory into a run directory: a short loop over ``train_step`` with
exact resume, Ctrl-C handling and logging (:class:`TrainLog`). Evaluation and inference live in
:mod:`locseg.inference`. No argument parsing here: the CLI builds the config.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint, distributed
from . import config as config_lib
from .config import Config
from .data import load_split, resolve_dataset
from .inference import diagnostics_on, evaluate, seeded_eval, to_tensor
from .models import build_model, num_slots
from .train_log import TrainLog, loss_values
from .types import ModelOutput, check_output

log = logging.getLogger(__name__)

# Keys that may change when a run is resumed: they set how long it runs, not what it computes.
RESUMABLE_KEYS = ("train.max_steps", "train.max_minutes", "train.eval_every", "train.checkpoint_every",
                  "train.log_every", "train.eval_images", "eval.batch_size")


class TrainingError(RuntimeError):
    """A run that cannot start or continue (bad run directory, config mismatch, repeated NaN)."""


@dataclass
class FitResult:
    step: int
    status: str  # "done" | "time" | "interrupted" | "stopped"
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    main: bool = True  # False on the ranks > 0 of a distributed run (they print nothing)


def seed_everything(seed: int) -> None:
    """Seed the generators locseg draws from (torch only: data order is a function of the step)."""
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a device that exists here, or a one-line ``ValueError``."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(name)!r}: use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(name)!r}: use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r} asked for, but CUDA is not available on this machine: use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(name)!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                         "device(s)")
    return dev


def isolated_rng(device: torch.device):
    """Random draws inside leave the global RNGs of the CPU and of ``device`` as they were."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def batch_indices(num: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The training batch of ``step``: a function of (seed, step) only, so resuming is exact."""
    per_epoch = max(1, num // batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return np.sort(perm[pos * batch_size:(pos + 1) * batch_size].numpy())


def lr_lambda(cfg: config_lib.TrainConfig):
    """Linear warm-up, then cosine decay to 5% of the base rate at ``max_steps`` (or constant)."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        if cfg.schedule == "constant":
            return warm
        progress = min(1.0, step / max(1, cfg.max_steps))
        return warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def make_optimizer(model: nn.Module, cfg: config_lib.TrainConfig) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- training


class _DeferredInterrupt:
    """While active, a first Ctrl-C only sets ``requested`` (the loop stops at the end of the step it
    is in, so the checkpoint is exact); a second one raises ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press Ctrl-C again to stop at once)")


def _check_resume(saved: Config, cfg: Config) -> None:
    changes = [line for line in config_lib.diff(saved, cfg) if line.split(":")[0] not in RESUMABLE_KEYS]
    if changes:
        raise TrainingError("cannot resume: the config differs from the checkpoint's:\n  " + "\n  ".join(changes))


class _UpdateGuard:
    """Wraps the parameter update of a step; ``hit`` tells that a Ctrl-C landed inside it (the
    parameters are then half-updated and no exact checkpoint can be written)."""

    def __init__(self) -> None:
        self.hit = False

    def __enter__(self) -> _UpdateGuard:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        self.hit = kind is KeyboardInterrupt
        return False


def train_step(model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, grad_clip: float = 0.0,
               amp: bool = False, update: contextlib.AbstractContextManager | None = None) -> ModelOutput | None:
    """One optimisation step on a batch: forward, backward, gradient clipping, update.

    Args:
        model: any model of :mod:`locseg.models` in training mode, or one wrapped in
            ``DistributedDataParallel`` (then every rank skips a step when any rank's loss is NaN/Inf).
        x: (B, 3, H, W) images in [0, 1] on the model's device.
        optimizer: its optimizer.
        scheduler: stepped after the optimizer when given.
        grad_clip: max global gradient norm (0 = off).
        amp: bfloat16 autocast on CUDA (ignored elsewhere).
        update: optional context entered around ``optimizer.step()`` and ``scheduler.step()``.

    Returns:
        the model's output, or None when its loss is NaN/Inf: the gradients are cleared and the
        parameters left as they were.
    """
    with autocast(x.device, amp):
        out = model(x)
    loss = out.loss.float()
    optimizer.zero_grad(set_to_none=True)
    if not distributed.all_finite(loss, sync=isinstance(model, DistributedDataParallel)):
        return None
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    with update or contextlib.nullcontext():
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return out


def fit(cfg: Config, data_dir: str | Path, run_dir: str | Path, device: str = "cpu", resume: bool = False,
        progress: bool = True, stop_at: int | None = None) -> FitResult:
    """Train ``cfg.model`` on ``data_dir``'s train split; write checkpoints, logs and figures.

    Args:
        cfg: resolved config (saved as ``run_dir/config.yaml`` and in every checkpoint).
        data_dir: dataset directory with a ``train`` split (and ``test`` for periodic evaluation).
        run_dir: output folder; ``run_dir/checkpoint.pt`` is the latest checkpoint.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        resume: continue from ``run_dir/checkpoint.pt`` (refused if the config differs).
        progress: show a tqdm progress bar.
        stop_at: stop (and checkpoint) after this step without changing the schedule.

    Ctrl-C (SIGINT) ends the run after the current step with status ``interrupted`` and a
    checkpoint from which ``resume`` continues bit-exactly; a second Ctrl-C stops at once. The run
    directory is locked (``run_dir/.lock``) while the run lasts, so a second run into it is refused,
    and a run that fails before its first checkpoint removes the directory it created. The first
    step of every run checks the model's output contract (:func:`locseg.types.check_output`).

    Started by torchrun (``WORLD_SIZE`` > 1), or inside an initialised process group, the run is
    data-parallel (:mod:`locseg.distributed`): ``train.batch_size`` is the global batch, split evenly
    over the ranks; rank 0 alone locks the run directory, logs, evaluates and writes checkpoints;
    every rank resumes from the checkpoint rank 0 reads; all ranks stop at the same step on Ctrl-C
    or the time cap. A group this function joined is left when it returns or fails.

    Returns:
        the final step, why the run ended, and the last evaluation metrics (on rank 0).
    """
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    with distributed.process_group(dev) as here:
        return _fit(cfg, data_dir, run_dir, distributed.rank_device(dev, here), resume, progress, stop_at, here)


def _from_main(here: distributed.World, fn: Any) -> Any:
    """``fn()`` run on rank 0 and its result given to every rank; when it fails there, every rank
    raises (rank 0 its own exception, the others a :class:`TrainingError` quoting it)."""
    result, error = None, None
    if here.main:
        try:
            result = fn()
        except Exception as e:
            error = e
    if here.distributed:
        result, message = distributed.broadcast((result, None if error is None else str(error)), here)
        if message is not None and error is None:
            raise TrainingError(f"rank 0 failed: {message}")
    if error is not None:
        raise error
    return result


def _lock_run_dir(run_dir: Path, resume: bool) -> tuple[Any, bool]:
    """Create and lock ``run_dir``; refuse a run that would clobber or miss a checkpoint.

    Returns:
        the open lock file (closing it releases the lock) and whether the directory was created.
    """
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = (run_dir / ".lock").open("a")
    except OSError as e:
        raise TrainingError(f"cannot create run directory {run_dir}: {e.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise TrainingError(f"{run_dir} is in use by another locseg train; wait for it to end or choose another "
                            "--out") from None
    ckpt_path = run_dir / "checkpoint.pt"
    error = None
    if resume and not ckpt_path.exists():
        error = f"nothing to resume: {ckpt_path} does not exist"
    if not resume and ckpt_path.exists():
        error = f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
    if error is not None:
        lock.close()
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise TrainingError(error)
    return lock, created


def _fit(cfg: Config, data_dir: str | Path, run_dir: Path, dev: torch.device, resume: bool, progress: bool,
         stop_at: int | None, here: distributed.World) -> FitResult:
    lock, created = None, False

    def take() -> None:
        nonlocal lock, created
        lock, created = _lock_run_dir(run_dir, resume)

    _from_main(here, take)  # rank 0 owns the run directory; a refusal there stops every rank
    try:
        return _Run(cfg, data_dir, run_dir, dev, resume, progress, here).train(stop_at)
    except BaseException:
        if here.main and created and not (run_dir / "checkpoint.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping: leave no empty run directory
        raise
    finally:
        if lock is not None:
            lock.close()  # releases the lock


class _Run:
    """The state of one training run inside a locked run directory: data, model, optimizer, clock."""

    def __init__(self, cfg: Config, data_dir: str | Path, run_dir: Path, dev: torch.device, resume: bool,
                 progress: bool, here: distributed.World):
        tc, self.world = cfg.train, here
        if tc.batch_size % here.size:
            raise TrainingError(f"train.batch_size={tc.batch_size} is the global batch and must split evenly over "
                                f"{here.size} processes: use a multiple of {here.size}")
        if tc.num_threads > 0:
            torch.set_num_threads(tc.num_threads)
        if not here.main:
            distributed.barrier(here)  # rank 0 converts a raw layout first; the others then find it
        data_dir = resolve_dataset(data_dir, cfg.data.image_size, progress and here.main)  # converted once
        if here.main:
            distributed.barrier(here)
        self.train_split = load_split(data_dir, "train")
        self.test_split = load_split(data_dir, "test") if (Path(data_dir) / "test").is_dir() else None
        if self.test_split is None:
            log.warning("%s has no test split: periodic and final evaluation are skipped", data_dir)
        found = self.train_split.get("meta", {}).get("dataset")
        if found is not None and found != cfg.data.dataset:
            log.warning("data.dataset is %s but %s holds %s", cfg.data.dataset, data_dir, found)
        self.cfg, self.run_dir, self.dev, self.size = cfg, run_dir, dev, cfg.data.image_size
        self.progress = progress and here.main

        seed_everything(tc.seed)
        self.model = build_model(cfg.model, self.size).to(dev)  # the same initial weights on every rank
        if here.rank:
            torch.manual_seed(tc.seed * 1_000_003 + here.rank)  # each rank its own VAE and GMM draws
        self.optimizer = make_optimizer(self.model, tc)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(tc))
        self.step, self.elapsed_before = 0, 0.0
        if resume:  # rank 0 reads the checkpoint and hands it to every rank
            payload = _from_main(here, lambda: checkpoint.load(run_dir / "checkpoint.pt", map_location="cpu"))
            _check_resume(payload["config"], cfg)
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.scheduler.lr_lambdas = [lr_lambda(tc)]  # max_steps may have been extended
            self.step = int(payload["step"])
            self.elapsed_before = float(payload["extra"].get("elapsed_s", 0.0))
            ranks_rng = payload["extra"].get("rank_rng")
            if here.distributed and ranks_rng is not None and len(ranks_rng) == here.size:
                checkpoint.set_rng_state(ranks_rng[here.rank])
            elif here.main:
                checkpoint.set_rng_state(payload["rng"])
            else:  # the checkpoint came from a different number of processes: draws cannot continue exactly
                torch.manual_seed((tc.seed * 1_000_003 + here.rank) * 1_000_003 + self.step)
            log.info("resumed %s at step %d", run_dir, self.step)
        # DDP averages the gradients over the ranks during backward; the parameters stay in self.model
        self.net: nn.Module = self.model
        if here.distributed:
            self.net = DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if here.main:
            config_lib.save(cfg, run_dir / "config.yaml")
        self.start, self.eval_seconds = time.perf_counter(), 0.0

    def seconds(self) -> float:
        """Wall-clock seconds spent training in this run, evaluations and figures excluded."""
        return time.perf_counter() - self.start - self.eval_seconds + self.elapsed_before

    def save(self) -> None:
        """Rank 0 writes the checkpoint, with every rank's RNG state (a collective under DDP)."""
        extra: dict[str, Any] = {"elapsed_s": self.seconds()}
        if self.world.distributed:
            extra["rank_rng"] = distributed.gather(checkpoint.rng_state(), self.world)
        if self.world.main:
            checkpoint.save(self.run_dir / "checkpoint.pt", model=self.model, cfg=self.cfg, step=self.step,
                            optimizer=self.optimizer, scheduler=self.scheduler, extra=extra)

    def evaluate(self, log_: TrainLog) -> dict[str, float]:
        """Scores on the test split, diagnostics and a slot figure; logged to ``eval.csv``."""
        from . import viz

        if self.test_split is None or not self.world.main:
            return {}
        t0, tc, split = time.perf_counter(), self.cfg.train, self.test_split
        scores = evaluate(self.model, split, self.dev, self.size, tc.eval_images, self.cfg.eval.batch_size, tc.seed)
        if "labels" in split:
            scores.update(diagnostics_on(self.model, split, self.dev, self.size, min(tc.eval_images, 64), tc.seed))
        log_.eval(self.step, scores, self.seconds())
        sample = to_tensor(split["images"][:8], self.dev, self.size)
        with torch.no_grad(), seeded_eval(self.model, tc.seed):
            viz.slot_figure(sample, self.model(sample), self.run_dir / "figures" / f"step{self.step:07d}.png")
        self.eval_seconds += time.perf_counter() - t0
        return scores

    def check_contract(self, out: ModelOutput, batch: int) -> None:
        atol = 1e-2 if self.cfg.train.amp and self.dev.type == "cuda" else 1e-4  # bfloat16 masks
        try:
            check_output(out, batch, num_slots(self.cfg.model), self.size, self.size, atol=atol)
        except AssertionError as e:
            raise TrainingError(f"{self.cfg.model.name} breaks the output contract: {e}") from None

    def train(self, stop_at: int | None) -> FitResult:
        from tqdm.auto import tqdm

        tc, model, here = self.cfg.train, self.model, self.world
        log_ = TrainLog(self.run_dir) if here.main else None
        model.train()
        bad_steps, status, last_scores, checked = 0, "done", {}, False
        end_step = tc.max_steps if stop_at is None else min(stop_at, tc.max_steps)
        # a wall-clock cap makes max_steps a bound, not a length: show the count and rate without an ETA
        bar = tqdm(total=None if tc.max_minutes else end_step, initial=self.step, disable=not self.progress,
                   desc="train", dynamic_ncols=True)
        # A checkpoint must hold the RNG state of the step it names: the forward pass draws from it (VAE
        # sampling, GMM start), so a step cut short restores the state it started from.
        rng_at_step, guard = None, _UpdateGuard()
        interrupt = _DeferredInterrupt().install()
        try:
            while self.step < end_step:
                time_up = bool(tc.max_minutes) and (self.seconds() - self.elapsed_before) / 60.0 >= tc.max_minutes
                interrupted, time_up = distributed.any_rank([interrupt.requested, time_up], here)  # all stop at once
                if interrupted:
                    status = "interrupted"
                    break
                if time_up:
                    status = "time"
                    break
                rng_at_step = checkpoint.rng_state()
                idx = batch_indices(len(self.train_split["images"]), tc.batch_size, self.step, tc.seed)
                idx = distributed.rank_slice(idx, here)  # this rank's share of the global batch
                x = to_tensor(self.train_split["images"][idx], self.dev, self.size)  # (B / ranks, 3, size, size)
                out = train_step(self.net, x, self.optimizer, self.scheduler, tc.grad_clip, tc.amp, guard)
                if out is None:
                    bad_steps += 1
                    log.warning("step %d: loss is not finite; step skipped (%d in a row)", self.step, bad_steps)
                    if bad_steps >= tc.max_bad_steps:
                        raise TrainingError(f"{bad_steps} consecutive non-finite losses at step {self.step}; lower "
                                            "train.lr or check the data")
                    self.step, rng_at_step = self.step + 1, None
                    continue
                if not checked:
                    self.check_contract(out, len(idx))
                    checked = True
                bad_steps, self.step, rng_at_step = 0, self.step + 1, None
                bar.update(1)
                if log_ is not None:
                    log_.count(len(idx) * here.size)  # images/s of every rank together
                if self.step % tc.log_every == 0 or self.step == end_step:
                    losses = distributed.mean_over_ranks(loss_values(out), here)  # the global batch's mean
                    if log_ is not None:
                        row = log_.train(self.step, losses, self.scheduler.get_last_lr()[0], self.seconds())
                        bar.set_postfix(loss=f"{row['loss']:.1f}", img_s=f"{row['img_per_s']:.0f}")
                if tc.eval_every and self.step % tc.eval_every == 0 and self.step < end_step and log_ is not None:
                    with isolated_rng(self.dev):  # evaluation and figures leave training's random stream alone
                        last_scores = self.evaluate(log_)
                    log_.restart_meter()
                    log_.scalars("eval", last_scores, self.step)
                if tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            if guard.hit:
                log.warning("interrupted during the parameter update of step %d: no checkpoint saved", self.step)
                raise
            if here.distributed:  # a second Ctrl-C: the other ranks may be inside a collective; no save
                log.warning("interrupted at once at step %d: no checkpoint saved under DDP", self.step)
                raise
            status = "interrupted"
            if rng_at_step is not None:
                checkpoint.set_rng_state(rng_at_step)
            log.warning("interrupted at step %d; saving a checkpoint", self.step)
        finally:
            interrupt.restore()
            bar.close()
        if status == "done" and stop_at is not None and self.step < tc.max_steps:
            status = "stopped"
        self.save()
        if status != "interrupted":  # rank 0 scores; every rank gets the scores and leaves fit with it
            last_scores = _from_main(here, lambda: self.evaluate(log_))  # log_ exists on rank 0, where it runs
        if log_ is not None:
            log_.close()
        return FitResult(step=self.step, status=status, run_dir=self.run_dir, metrics=last_scores, main=here.main)
