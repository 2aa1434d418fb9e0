"""Training and evaluation loops, shared by every model (no model-specific branches).

``fit`` trains from a config and a dataset directory into a run directory; ``evaluate`` scores a
model on a split with the paper's metrics. No argument parsing here: the CLI builds the config.
"""

from __future__ import annotations

import contextlib
import csv
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
from scipy.optimize import linear_sum_assignment
from torch import nn

from . import checkpoint, metrics
from . import config as config_lib
from .config import Config
from .data import load_split, resolve_dataset
from .models import build_model
from .models.networks import resize_images
from .types import ModelOutput

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


def to_tensor(images: np.ndarray, device: torch.device | str, size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, size, size) in [0, 1] on ``device``."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(device)  # (B, H, W, 3) a writable copy
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    return resize_images(x, size)


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


# --------------------------------------------------------------------------- evaluation


def location_error(true_centres: np.ndarray, visible: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    """Sum of distances between true object centres and their matched predicted slot centres.

    Args:
        true_centres: (B, M, 2) normalised (y, x), NaN for absent objects.
        visible: (B, M) bool.
        pred: (B, K', 2) predicted centres of the object slots (background slot excluded).

    Returns:
        (sum of distances over matched objects, number of matched objects). Matching is the
        Hungarian assignment minimising total distance, per image.
    """
    total, count = 0.0, 0
    for t, v, p in zip(true_centres, visible, pred, strict=True):
        t = t[v & np.isfinite(t).all(-1)]  # (M', 2)
        if len(t) == 0:
            continue
        dist = np.linalg.norm(t[:, None, :] - p[None, :, :], axis=-1)  # (M', K')
        rows, cols = linear_sum_assignment(dist)
        total += float(dist[rows, cols].sum())
        count += len(rows)
    return total, count


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device: torch.device | str, size: int,
            batch_size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Run a model on uint8 images (N, H, W, 3) resized to ``size``: masks (N, K, size, size) and
    locations (N, K, 2). The module's random draws (GMM start) are seeded, so results repeat."""
    was_training = model.training
    model.eval()
    masks, locations = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start:start + batch_size], device, size)
            out: ModelOutput = model(x)
            masks.append(out.masks[:, :, 0].float().cpu())
            locations.append(out.locations.float().cpu())
    model.train(was_training)
    return {"masks": torch.cat(masks).numpy(), "locations": torch.cat(locations).numpy()}


def evaluate(model: nn.Module, split: dict[str, Any], device: torch.device | str, size: int,
             num_images: int | None = None, batch_size: int = 64, seed: int = 0) -> dict[str, float]:
    """Score a model on a dataset split with the metrics its labels allow.

    Returns ``fg_ari`` (ARI ignoring background pixels), ``ari``, ``msc``, ``sc``, ``ami``
    (foreground AMI), ``location_error`` (mean distance, normalised units, between true object
    centres and Hungarian-matched object-slot centres) and ``num_images``; with ``meta["iou"]`` set,
    also ``iou`` of the foreground (1 - background slot mask) against ``labels > 0``: ReDO's rule
    (``redo``, the better of the two assignments) or plain IoU at 0.5 (``foreground``). Images where a score is
    undefined (e.g. no foreground pixel) are left out of its mean; ``*_defined`` counts the rest.
    """
    if num_images is not None and num_images < 1:
        raise ValueError(f"the number of images to evaluate must be >= 1, got {num_images}")
    n = len(split["images"]) if num_images is None else min(num_images, len(split["images"]))
    pred = predict(model, split["images"][:n], device, size, batch_size, seed)
    result: dict[str, float] = {"num_images": float(n)}
    if "labels" not in split:
        log.warning("this split has no labels: only the number of images is reported, no scores")
        return result
    true = np.asarray(split["labels"][:n]).astype(np.int64)  # (N, H, W)
    masks = torch.from_numpy(pred["masks"])  # (N, K, s, s)
    if masks.shape[-2:] != true.shape[-2:]:
        masks = torch.nn.functional.interpolate(masks, size=true.shape[-2:], mode="bilinear", align_corners=False)
    labels = metrics.masks_to_labels(masks)  # (N, H, W)
    fg = metrics.label_scores(true, labels, ignore_index=0)  # ari, ami, msc, sc over foreground pixels
    scores = {"fg_ari": fg["ari"], "ari": metrics.ari(true, labels), "ami": fg["ami"], "msc": fg["msc"],
              "sc": fg["sc"]}
    for name, values in scores.items():
        summary = metrics.aggregate(values)  # undefined (NaN) images left out of the mean, counted
        result[name] = summary.mean
        result[f"{name}_defined"] = float(summary.n_defined)
    iou_rule = split.get("meta", {}).get("iou")  # "redo" (Flowers) | "foreground" (image folders with masks)
    if iou_rule in ("redo", "foreground"):
        fg_prob = 1.0 - masks[:, 0]  # (N, H, W) everything but the background slot
        values = (metrics.redo_iou(true > 0, fg_prob) if iou_rule == "redo"
                  else metrics.iou(true > 0, fg_prob >= 0.5))
        summary = metrics.aggregate(values)
        result["iou"], result["iou_defined"] = summary.mean, float(summary.n_defined)
    if "centres" in split and "visibility" in split:
        total, count = location_error(np.asarray(split["centres"][:n]), np.asarray(split["visibility"][:n]),
                                      pred["locations"][:, 1:])
        result["location_error"] = total / count if count else float("nan")
    return result


def diagnostics_on(model: nn.Module, split: dict[str, Any], device: torch.device | str, size: int, num: int,
                   seed: int = 0) -> dict[str, float]:
    """:func:`locseg.diagnostics.diagnose` on the first ``num`` labelled images of a split."""
    from .diagnostics import diagnose

    x = to_tensor(split["images"][:num], device, size)  # (N, 3, size, size)
    labels = torch.from_numpy(np.asarray(split["labels"][:num]).astype(np.int64)).to(device)  # (N, H, W)
    if labels.shape[-2:] != (size, size):
        labels = torch.nn.functional.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")
        labels = labels[:, 0].long()
    return {f"diag_{k}": v for k, v in diagnose(model, x, labels, seed).items()}


# --------------------------------------------------------------------------- training


class _CsvLog:
    """Append-only CSV of scalars; the header is fixed by the first row written."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with path.open() as f:
                self.fields = next(csv.reader(f), None)

    def write(self, row: dict[str, float]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


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


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _check_resume(saved: Config, cfg: Config) -> None:
    changes = [line for line in config_lib.diff(saved, cfg) if line.split(":")[0] not in RESUMABLE_KEYS]
    if changes:
        raise TrainingError("cannot resume: the config differs from the checkpoint's:\n  " + "\n  ".join(changes))


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
    and a run that fails before its first checkpoint removes the directory it created.

    Returns:
        the final step, why the run ended, and the last evaluation metrics.
    """
    run_dir = Path(run_dir)
    dev = resolve_device(device)
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
    try:
        if resume and not ckpt_path.exists():
            raise TrainingError(f"nothing to resume: {ckpt_path} does not exist")
        if not resume and ckpt_path.exists():
            raise TrainingError(f"{run_dir} already holds a run; pass --resume to continue it or choose another "
                                "--out")
        return _train(cfg, data_dir, run_dir, dev, resume, progress, stop_at)
    except BaseException:
        if created and not ckpt_path.exists():  # nothing worth keeping: leave no empty run directory
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.close()  # releases the lock


def _train(cfg: Config, data_dir: str | Path, run_dir: Path, dev: torch.device, resume: bool, progress: bool,
           stop_at: int | None) -> FitResult:
    """The body of :func:`fit`, run while the run directory is locked."""
    from tqdm.auto import tqdm

    from . import viz

    ckpt_path = run_dir / "checkpoint.pt"
    tc = cfg.train
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    data_dir = resolve_dataset(data_dir, cfg.data.image_size, progress)  # raw layouts: converted once
    train_split = load_split(data_dir, "train")
    test_split = load_split(data_dir, "test") if (Path(data_dir) / "test").is_dir() else None
    if test_split is None:
        log.warning("%s has no test split: periodic and final evaluation are skipped", data_dir)
    size = cfg.data.image_size

    seed_everything(tc.seed)
    model = build_model(cfg.model, size).to(dev)
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tc))
    step = 0
    if resume:
        payload = checkpoint.load(ckpt_path, map_location=dev)
        _check_resume(payload["config"], cfg)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scheduler.lr_lambdas = [lr_lambda(tc)]  # max_steps may have been extended
        step = int(payload["step"])
        checkpoint.set_rng_state(payload["rng"])
        log.info("resumed %s at step %d", run_dir, step)
    config_lib.save(cfg, run_dir / "config.yaml")

    def save_checkpoint() -> None:
        checkpoint.save(ckpt_path, model=model, cfg=cfg, step=step, optimizer=optimizer, scheduler=scheduler,
                        extra={"elapsed_s": train_seconds()})

    def train_seconds() -> float:
        """Wall-clock seconds spent training in this run, evaluations and figures excluded."""
        return time.perf_counter() - start - eval_seconds[0] + elapsed_before

    def run_eval() -> dict[str, float]:
        if test_split is None:
            return {}
        t0 = time.perf_counter()
        scores = evaluate(model, test_split, dev, size, tc.eval_images, cfg.eval.batch_size, tc.seed)
        if "labels" in test_split:
            scores.update(diagnostics_on(model, test_split, dev, size, min(tc.eval_images, 64), tc.seed))
        eval_log.write({"step": step, "elapsed_s": train_seconds(), **scores})
        sample = to_tensor(test_split["images"][:8], dev, size)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            model.eval()
            viz.slot_figure(sample, model(sample), run_dir / "figures" / f"step{step:07d}.png")
            model.train()
        eval_seconds[0] += time.perf_counter() - t0
        return scores

    train_log, eval_log = _CsvLog(run_dir / "train.csv"), _CsvLog(run_dir / "eval.csv")
    elapsed_before = float(payload["extra"].get("elapsed_s", 0.0)) if resume else 0.0
    writer = _tensorboard(run_dir)
    model.train()
    start, eval_seconds = time.perf_counter(), [0.0]
    bad_steps, status, last_scores = 0, "done", {}
    end_step = tc.max_steps if stop_at is None else min(stop_at, tc.max_steps)
    # a wall-clock cap makes max_steps a bound, not a length: show the count and rate without an ETA
    bar = tqdm(total=None if tc.max_minutes else end_step, initial=step, disable=not progress, desc="train",
               dynamic_ncols=True)
    images_seen, window_start = 0, time.perf_counter()
    # A checkpoint must hold the RNG state of the step it names: the forward pass draws from it (VAE
    # sampling, GMM start), so a step cut short restores the state it started from.
    rng_at_step, updating = None, False
    interrupt = _DeferredInterrupt().install()
    try:
        while step < end_step:
            if interrupt.requested:
                status = "interrupted"
                break
            if tc.max_minutes and (train_seconds() - elapsed_before) / 60.0 >= tc.max_minutes:
                status = "time"
                break
            rng_at_step = checkpoint.rng_state()
            idx = batch_indices(len(train_split["images"]), tc.batch_size, step, tc.seed)
            x = to_tensor(train_split["images"][idx], dev, size)
            with autocast(dev, tc.amp):
                out = model(x)
            loss = out.loss.float()
            if not torch.isfinite(loss):
                bad_steps += 1
                log.warning("step %d: loss is %s; step skipped (%d in a row)", step, loss.item(), bad_steps)
                optimizer.zero_grad(set_to_none=True)
                if bad_steps >= tc.max_bad_steps:
                    raise TrainingError(f"{bad_steps} consecutive non-finite losses at step {step}; lower "
                                        "train.lr or check the data")
                step, rng_at_step = step + 1, None
                continue
            bad_steps = 0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            updating = True  # from here the parameters change until the step is counted
            optimizer.step()
            scheduler.step()
            step += 1
            rng_at_step, updating = None, False
            images_seen += len(idx)
            bar.update(1)
            if step % tc.log_every == 0 or step == end_step:
                now = time.perf_counter()
                ips = images_seen / max(now - window_start, 1e-9)
                images_seen, window_start = 0, now
                row = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in out.terms.items()},
                       "lr": scheduler.get_last_lr()[0], "img_per_s": ips,
                       "elapsed_s": train_seconds()}
                train_log.write(row)
                if writer is not None:
                    for k, v in row.items():
                        if k != "step":
                            writer.add_scalar(f"train/{k}", v, step)
                bar.set_postfix(loss=f"{row['loss']:.1f}", img_s=f"{ips:.0f}")
            if tc.eval_every and step % tc.eval_every == 0 and step < end_step:
                with isolated_rng(dev):  # evaluation and figures leave training's random stream alone
                    last_scores = run_eval()
                images_seen, window_start = 0, time.perf_counter()
                if writer is not None:
                    for k, v in last_scores.items():
                        writer.add_scalar(f"eval/{k}", v, step)
            if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                save_checkpoint()
    except KeyboardInterrupt:
        if updating:
            log.warning("interrupted during the parameter update of step %d: no checkpoint saved", step)
            raise
        status = "interrupted"
        if rng_at_step is not None:
            checkpoint.set_rng_state(rng_at_step)
        log.warning("interrupted at step %d; saving a checkpoint", step)
    finally:
        interrupt.restore()
        bar.close()
    if status == "done" and stop_at is not None and step < tc.max_steps:
        status = "stopped"
    save_checkpoint()
    if status != "interrupted":
        last_scores = run_eval()
    if writer is not None:
        writer.close()
    return FitResult(step=step, status=status, run_dir=run_dir, metrics=last_scores)
