"""What every label-map score shares: input checks, dense label ids and per-image contingency tables.

:func:`table_scores` turns label maps (B, H, W) into contingency tables (b, kt, kp), chunk of
images by chunk of images, and applies score functions to them; the scores live in
:mod:`~locseg.metrics.rand_index`, :mod:`~locseg.metrics.mutual_info` and
:mod:`~locseg.metrics.covering`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

# Memory bounds. Chunks split the batch into groups of whole images; results do not depend on them.
_MAX_PIXELS = 1 << 20  # pixels per chunk of images: buffers of a few MiB, reused across chunks
_MAX_TABLE = 1 << 22  # contingency cells per chunk of images
_MAX_DENSE_SPAN = 1 << 22  # label ranges up to this size are remapped by lookup, larger ones by sorting
_FEW_LABELS = 64  # a batch with at most this many distinct labels is not compacted per image

_NUMPY_TO_TORCH_INTS = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64)


# --------------------------------------------------------------------------- input checks


def as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """A tensor view of ``x`` (numpy arrays and nested sequences are converted, not copied if possible)."""
    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype} with shape {arr.shape}")
    if arr.dtype.kind in "iu" and arr.dtype.type not in _NUMPY_TO_TORCH_INTS:
        arr = arr.astype(np.int64)  # uint16/32/64: values keep their identity (uint64 wraps bijectively)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # read-only memory maps (load_split): torch wants a writable buffer
        arr = arr.copy()
    return torch.from_numpy(arr)


def check_pair(x: ArrayLike, y: ArrayLike, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors of the same (B, H, W) shape on one device, or a ``ValueError`` naming the shapes."""
    tx, ty = as_tensor(x, names[0]), as_tensor(y, names[1])
    for t, name in ((tx, names[0]), (ty, names[1])):
        if t.dim() != 3:
            raise ValueError(f"{name} must have shape (B, H, W), got shape {tuple(t.shape)} "
                             f"({names[0]} {tuple(tx.shape)}, {names[1]} {tuple(ty.shape)})")
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} have different batch sizes: {names[0]} "
                         f"{tuple(tx.shape)}, {names[1]} {tuple(ty.shape)}")
    if tx.shape != ty.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape (B, H, W), got "
                         f"{names[0]} {tuple(tx.shape)} and {names[1]} {tuple(ty.shape)}")
    if tx.device != ty.device:
        if not isinstance(y, torch.Tensor):
            ty = ty.to(tx.device)
        elif not isinstance(x, torch.Tensor):
            tx = tx.to(ty.device)
        else:
            raise ValueError(f"{names[0]} is on {tx.device} and {names[1]} on {ty.device} "
                             f"(shapes {tuple(tx.shape)})")
    return tx, ty


def check_labels(true: ArrayLike, pred: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated integer label maps (B, H, W) (any integer or bool dtype, unchanged)."""
    t, p = check_pair(true, pred, ("true", "pred"))
    for x, name in ((t, "true"), (p, "pred")):
        if x.is_floating_point() or x.is_complex():
            raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype} with shape "
                             f"{tuple(x.shape)}; turn soft masks into labels with masks_to_labels()")
    return t, p


def check_binary(x: torch.Tensor, name: str) -> torch.Tensor:
    """A bool (B, H, W) tensor from a bool or integer 0/1 map."""
    if x.dtype == torch.bool:
        return x
    if x.is_floating_point() or x.is_complex():
        raise ValueError(f"{name} must be a binary map (bool or integer 0/1), got dtype {x.dtype} with "
                         f"shape {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > 1):
        raise ValueError(f"{name} must be a binary map with values 0/1, got values in "
                         f"[{int(x.min())}, {int(x.max())}] with shape {tuple(x.shape)}")
    return x.bool()


# --------------------------------------------------------------------------- contingency tables


def dense_ids(x: torch.Tensor, ignore_index: int | None = None) -> tuple[torch.Tensor, int, int | None]:
    """Remap labels (b, N) to ids in [0, k) so that per-image tables stay small.

    Returns the ids (b, N), k, and the id of ``ignore_index``: -1 when no pixel can have it, None when
    ids are dense per image (then the ignored pixels must be found from the labels). Small
    non-negative labels are their own ids (no copy). Otherwise ids are shared by the batch when it
    has few distinct labels, and dense per image when it has many (k = the largest number of
    distinct labels in one image); label values of any size go through a sort.
    """
    b = x.shape[0]
    lo, hi = (int(v) for v in torch.aminmax(x))
    if lo >= 0 and hi < _MAX_DENSE_SPAN:  # the common case: small non-negative labels, used as they are
        ids, k, shift = x, hi + 1, 0
    elif hi - lo < _MAX_DENSE_SPAN:
        ids, k, shift = (x.long() - lo).to(torch.int32), hi - lo + 1, lo
    else:  # huge label values: sort once
        values, ids = torch.unique(x, return_inverse=True)  # (U,), (b, N)
        k, shift = values.numel(), None
    if k <= _FEW_LABELS:
        if ignore_index is None:
            return ids, k, -1
        if shift is not None:
            row = ignore_index - shift
            return ids, k, (row if 0 <= row < k else -1)
        pos = int(torch.searchsorted(values, ignore_index))
        return ids, k, (pos if pos < k and int(values[pos]) == ignore_index else -1)
    ids = ids.long()
    rows = torch.arange(b, device=x.device).unsqueeze(1)  # (b, 1)
    if b * k <= _MAX_DENSE_SPAN:  # per-image presence table, then a cumulative-sum lookup
        present = torch.zeros(b, k, dtype=torch.bool, device=x.device)  # (b, k)
        present[rows, ids] = True
        lut = present.cumsum(1, dtype=torch.int32) - 1  # (b, k)
        return lut.gather(1, ids), int(present.sum(1).max()), None
    keys, inverse = torch.unique(rows * k + ids, return_inverse=True)  # sorted by image, then label
    first = torch.searchsorted(keys, torch.arange(b, device=x.device) * k)  # (b,) first key of each image
    per_image = torch.bincount(keys // k, minlength=b)  # (b,)
    return (inverse - first.unsqueeze(1)).to(torch.int32), int(per_image.max()), None


def contingency(t_ids: torch.Tensor, p_ids: torch.Tensor, kt: int, kp: int, ignore_row: int | None,
                 ignored: torch.Tensor | None, work: dict[torch.dtype, torch.Tensor]) -> torch.Tensor:
    """Per-image contingency tables (b, kt, kp) int64 from ids (b, N).

    Pixels are left out through ``ignore_row`` (the true id whose row is cleared; -1 for none) or,
    when it is None, through the mask ``ignored`` (b, N). ``work`` caches index buffers by dtype, so
    that the chunks of one call reuse their memory instead of faulting in fresh pages.
    """
    b, n = t_ids.shape
    cells = b * kt * kp
    wide = cells >= 2**31 - 1 or (t_ids.dtype == torch.int64 and p_ids.dtype == torch.int64)
    dtype = torch.int64 if wide else torch.int32
    if dtype not in work or work[dtype].numel() < b * n:
        work[dtype] = torch.empty(b * n, dtype=dtype, device=t_ids.device)
    index = work[dtype][:b * n].view(b, n)  # (b, N)
    if t_ids.dtype == p_ids.dtype == dtype:
        torch.add(p_ids, t_ids, alpha=kp, out=index)  # t * kp + p
    else:  # narrower ids: widen while adding (an add in their own dtype could overflow)
        index.copy_(p_ids)
        index.add_(t_ids, alpha=kp)
    index += torch.arange(b, device=t_ids.device, dtype=dtype).unsqueeze(1) * (kt * kp)  # + image * kt * kp
    if ignore_row is None and ignored is not None:
        index.masked_fill_(ignored, cells)  # ignored pixels land in one extra bin, dropped below
    counts = torch.bincount(index.view(-1), minlength=cells + 1)[:cells]  # (b * kt * kp,)
    table = counts.view(b, kt, kp)
    if ignore_row is not None and ignore_row >= 0:
        table[:, ignore_row] = 0  # exactly the pixels whose true label is ignore_index
    return table


def _ignored(true: torch.Tensor, ignore_index: int | None) -> torch.Tensor | None:
    """The pixels (b, N) whose true label is ``ignore_index`` (None when no pixel can be)."""
    if ignore_index is None:
        return None
    info = torch.iinfo(true.dtype)
    if not info.min <= ignore_index <= info.max:  # e.g. -1 in uint8 labels: comparing would wrap
        return None
    return true == ignore_index


def table_scores(true: ArrayLike, pred: ArrayLike, ignore_index: int | None,
                  fns: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Apply each ``fns[name]`` (tables (b, kt, kp) -> scores (b,)) to all images; returns (B,) each."""
    t, p = check_labels(true, pred)
    B, H, W = t.shape
    N = H * W
    if B == 0 or N == 0:
        return {name: torch.full((B,), math.nan, dtype=torch.float64, device=t.device) for name in fns}
    t, p = t.reshape(B, N), p.reshape(B, N)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if p.dtype == torch.bool:
        p = p.to(torch.uint8)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in fns}
    work: dict[torch.dtype, torch.Tensor] = {}
    step = max(1, _MAX_PIXELS // N)
    for start in range(0, B, step):  # chunks of images, to bound memory
        tc, pc = t[start:start + step], p[start:start + step]  # (b, N)
        t_ids, kt, ignore_row = dense_ids(tc, ignore_index)
        p_ids, kp, _ = dense_ids(pc)
        ignored = _ignored(tc, ignore_index) if ignore_row is None else None  # (b, N) or None
        sub = max(1, _MAX_TABLE // (kt * kp))
        for s in range(0, tc.shape[0], sub):
            table = contingency(t_ids[s:s + sub], p_ids[s:s + sub], kt, kp, ignore_row,
                                 None if ignored is None else ignored[s:s + sub], work)  # (b, kt, kp)
            for name, fn in fns.items():
                out[name].append(fn(table))
    return {name: torch.cat(parts) for name, parts in out.items()}
