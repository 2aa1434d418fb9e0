"""Data-parallel training: two CPU processes (gloo) compute what one process computes on the combined
batch, and a run interrupted under DDP resumes to the same parameters.

Exact equality needs a forward pass that draws no random numbers: the paper's VAE samples z and the
"paper" GMM start draws mu_2, and N ranks draw those for their shares of the batch from N streams
where one process draws them for the whole batch from one. The test therefore trains the skip
auto-encoder (``arch=skip_ae``: no sampling, KL 0) with the deterministic ``window`` GMM start; every
other part of the model (localization module per rank, Eq. 1, Adam, gradient clipping) is the same.
"""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from locseg import checkpoint, distributed
from locseg import config as config_lib
from locseg.train import fit

DETERMINISTIC = ["model.segmenter.arch=skip_ae", "model.segmenter.gamma=0",
                 "model.segmenter.localization.gmm_init=window"]
TINY = ["train.batch_size=8", "train.log_every=1", "train.eval_every=0", "train.checkpoint_every=0",
        "train.warmup_steps=2", "data.image_size=32", "model.segmenter.num_slots=3",
        "model.segmenter.channels=[4,8]", "train.max_steps=4", *DETERMINISTIC]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, data: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        cfg = config_lib.load(overrides=TINY)
        first = fit(cfg, data, f"{out}/ddp", progress=False, stop_at=2)
        assert first.step == 2 and first.main == (rank == 0)
        resumed = fit(cfg, data, f"{out}/ddp", progress=False, resume=True)
        assert resumed.step == 4
        scores: list = [None, None]
        dist.all_gather_object(scores, resumed.metrics)
        assert scores[0] and scores[0] == scores[1]  # every rank leaves fit with rank 0's scores
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_on_the_combined_batch_and_resume(tiny_data, tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tiny_data), str(tmp_path)), nprocs=2, join=True)
    single = fit(config_lib.load(overrides=TINY), tiny_data, tmp_path / "single", progress=False)
    assert single.step == 4
    a = checkpoint.load(tmp_path / "single" / "checkpoint.pt")
    b = checkpoint.load(tmp_path / "ddp" / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.allclose(value, b["model"][key], rtol=0, atol=1e-5), key
    assert len(b["extra"]["rank_rng"]) == 2  # every rank's random state, for an exact resume
    rows = (tmp_path / "ddp" / "train.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4  # rank 0 alone logs, across both sessions
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    single_losses = [float(r.split(",")[1]) for r in (tmp_path / "single" / "train.csv").read_text().split()[1:]]
    assert np.allclose(losses, single_losses, rtol=1e-5)  # logged loss: the mean over the global batch


def test_rank_slices_are_disjoint_and_cover_the_batch():
    idx = np.arange(12)
    shares = [distributed.rank_slice(idx, distributed.World(rank=r, size=3)) for r in range(3)]
    assert np.array_equal(np.concatenate(shares), idx)
    with pytest.raises(ValueError, match="multiple of 5"):
        distributed.rank_slice(idx, distributed.World(rank=0, size=5))


def test_backend_follows_the_device():
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
