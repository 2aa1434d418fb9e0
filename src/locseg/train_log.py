"""The scalars of a training run: ``train.csv``, ``eval.csv``, TensorBoard when installed, and the
images/s meter of the progress bar (used by :func:`locseg.train.fit`)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from .types import ModelOutput


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


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class TrainLog:
    """The scalars of one run: ``train.csv``, ``eval.csv``, TensorBoard (when installed) and the
    images/s meter shown on the progress bar."""

    def __init__(self, run_dir: Path):
        self.train_csv, self.eval_csv = _CsvLog(run_dir / "train.csv"), _CsvLog(run_dir / "eval.csv")
        self.writer = _tensorboard(run_dir)
        self.restart_meter()

    def restart_meter(self) -> None:
        """Start counting images/s afresh (after an evaluation, which is not training time)."""
        self.images, self.since = 0, time.perf_counter()

    def count(self, images: int) -> None:
        self.images += images

    def train(self, step: int, losses: dict[str, float], lr: float, elapsed_s: float) -> dict[str, float]:
        """Write one row of ``train.csv`` (loss and its terms as :func:`loss_values` gives them, lr,
        images/s since the last row)."""
        now = time.perf_counter()
        ips = self.images / max(now - self.since, 1e-9)
        self.images, self.since = 0, now
        row = {"step": step, **losses, "lr": lr, "img_per_s": ips, "elapsed_s": elapsed_s}
        self.train_csv.write(row)
        self.scalars("train", row, step)
        return row

    def eval(self, step: int, scores: dict[str, float], elapsed_s: float) -> None:
        self.eval_csv.write({"step": step, "elapsed_s": elapsed_s, **scores})

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if k != "step":
                    self.writer.add_scalar(f"{group}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def loss_values(out: ModelOutput) -> dict[str, float]:
    """The loss and its named terms of one step as floats (one row of ``train.csv``)."""
    return {"loss": out.loss.item(), **{k: v.item() for k, v in out.terms.items()}}
