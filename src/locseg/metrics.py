"""Segmentation scores, one per image, batched and vectorised in torch.

Every label-map score takes integer label maps ``true`` and ``pred`` of shape (B, H, W), as torch
tensors or numpy arrays of any integer (or bool) dtype, and returns a float64 tensor of shape (B,)
on the inputs' device: one score per image. Labels are arbitrary integers; they are remapped per
batch, so that label values such as 10**12 cost nothing. Per-image contingency tables come from a
single ``torch.bincount`` over a combined (image, true label, predicted label) index; there is no
Python loop over images or pixels (only over chunks of images, to bound memory).

Protocols of the paper and its peers:

- Multi-dSprites (paper Table 1, MONet, IODINE, Slot Attention): foreground ARI,
  ``ari(true, pred, ignore_index=0)``.
- Montezuma's Revenge (Neural-EM's evaluation): ``ami(true, pred, ignore_index=0)``.
- Flowers (ReDO): ``redo_iou(true_fg, pred_fg)``.
- GENESIS: ``segmentation_covering(true, pred, ignore_index, weighted=False)`` is mSC,
  ``weighted=True`` is SC.

``ignore_index`` always refers to the *true* label: pixels whose true label equals it are left out
of the image entirely (from the true and from the predicted segments). An image with no pixel left
has no defined score and gets NaN; ``aggregate`` leaves NaN images out of the mean and counts them.

Example:
    >>> import torch
    >>> true = torch.tensor([[[0, 1, 1], [0, 2, 2]]])  # (1, 2, 3): background 0, objects 1 and 2
    >>> pred = torch.tensor([[[5, 7, 7], [7, 3, 3]]])  # predicted labels need not match
    >>> ari(true, pred, ignore_index=0).tolist()  # foreground ARI: the objects are found exactly
    [1.0]
    >>> round(ari(true, pred).item(), 4)  # with the background: one background pixel is wrong
    0.4444
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

# Memory bounds. Chunks split the batch into groups of whole images; results do not depend on them.
_MAX_PIXELS = 1 << 20  # pixels per chunk of images: buffers of a few MiB, reused across chunks
_MAX_TABLE = 1 << 22  # contingency cells per chunk of images
_MAX_DENSE_SPAN = 1 << 22  # label ranges up to this size are remapped by lookup, larger ones by sorting
_FEW_LABELS = 64  # a batch with at most this many distinct labels is not compacted per image
_EMI_CHUNK = 1 << 17  # expected-mutual-information terms per step (1 MiB temporaries stay in cache)
# EMI terms whose hypergeometric tail probability is below exp(-_EMI_TAIL) are skipped: each skipped
# tail changes the EMI by less than 1e-34 * log(N) (see _expected_mutual_info).
_EMI_TAIL = 80.0

_EPS = float(np.finfo(np.float64).eps)
_NUMPY_TO_TORCH_INTS = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64)


# --------------------------------------------------------------------------- input checks


def _to_tensor(x: ArrayLike, name: str) -> torch.Tensor:
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


def _check_pair(x: ArrayLike, y: ArrayLike, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors of the same (B, H, W) shape on one device, or a ``ValueError`` naming the shapes."""
    tx, ty = _to_tensor(x, names[0]), _to_tensor(y, names[1])
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


def _check_labels(true: ArrayLike, pred: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated integer label maps (B, H, W) (any integer or bool dtype, unchanged)."""
    t, p = _check_pair(true, pred, ("true", "pred"))
    for x, name in ((t, "true"), (p, "pred")):
        if x.is_floating_point() or x.is_complex():
            raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype} with shape "
                             f"{tuple(x.shape)}; turn soft masks into labels with masks_to_labels()")
    return t, p


def _check_binary(x: torch.Tensor, name: str) -> torch.Tensor:
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


def _dense_ids(x: torch.Tensor, ignore_index: int | None = None) -> tuple[torch.Tensor, int, int | None]:
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


def _contingency(t_ids: torch.Tensor, p_ids: torch.Tensor, kt: int, kp: int, ignore_row: int | None,
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


def _table_scores(true: ArrayLike, pred: ArrayLike, ignore_index: int | None,
                  fns: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Apply each ``fns[name]`` (tables (b, kt, kp) -> scores (b,)) to all images; returns (B,) each."""
    t, p = _check_labels(true, pred)
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
        t_ids, kt, ignore_row = _dense_ids(tc, ignore_index)
        p_ids, kp, _ = _dense_ids(pc)
        ignored = _ignored(tc, ignore_index) if ignore_row is None else None  # (b, N) or None
        sub = max(1, _MAX_TABLE // (kt * kp))
        for s in range(0, tc.shape[0], sub):
            table = _contingency(t_ids[s:s + sub], p_ids[s:s + sub], kt, kp, ignore_row,
                                 None if ignored is None else ignored[s:s + sub], work)  # (b, kt, kp)
            for name, fn in fns.items():
                out[name].append(fn(table))
    return {name: torch.cat(parts) for name, parts in out.items()}


# --------------------------------------------------------------------------- scores from tables


def _ari_from_table(table: torch.Tensor) -> torch.Tensor:
    """ARI (b,) float64 from contingency tables (b, kt, kp) int64.

    With pair counts x = sum C(n_ij, 2), s_a = sum C(a_i, 2), s_b = sum C(b_j, 2) and m = C(N, 2),
    ARI = (x - s_a s_b / m) / ((s_a + s_b) / 2 - s_a s_b / m) (Hubert & Arabie 1985), computed as
    2 (x m - s_a s_b) / (s_a (m - s_b) + s_b (m - s_a)): the denominator is a sum of non-negative
    terms, zero only when the two partitions are identical. Products are exact int64 while m < 2^31
    (N < 65,536 pixels per image), float64 beyond.
    """
    a = table.sum(2)  # (b, kt)
    b = table.sum(1)  # (b, kp)
    total = a.sum(1)  # (b,)
    x = (table * (table - 1) // 2).sum((1, 2))  # (b,)
    s_a = (a * (a - 1) // 2).sum(1)  # (b,)
    s_b = (b * (b - 1) // 2).sum(1)  # (b,)
    m = total * (total - 1) // 2  # (b,)
    if int(m.max()) >= 2**31:  # int64 products could overflow
        x, s_a, s_b, m = x.double(), s_a.double(), s_b.double(), m.double()
    numerator = (x * m - s_a * s_b).double()  # (b,)
    denominator = (s_a * (m - s_b) + s_b * (m - s_a)).double()  # (b,)
    score = 2.0 * numerator / denominator  # (b,)
    score = torch.where(denominator > 0, score, torch.ones_like(score))  # identical partitions
    return torch.where(total > 0, score, torch.full_like(score, math.nan))


def _entropy(counts: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Entropy (b,) in nats of the cluster sizes ``counts`` (b, k) float64 with sums ``total`` (b,)."""
    p = counts / total.unsqueeze(1)  # (b, k)
    return -torch.where(counts > 0, p * torch.log(p), torch.zeros_like(p)).sum(1)  # (b,)


def _mutual_info(table: torch.Tensor, a: torch.Tensor, b: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Mutual information (b,) in nats from tables (b, kt, kp) and marginals, all float64."""
    nonzero = table > 0  # (b, kt, kp)
    one = torch.ones_like(table)
    log_ratio = (torch.log(torch.where(nonzero, table, one)) + torch.log(total)[:, None, None]
                 - torch.log(a.clamp_min(1)).unsqueeze(2) - torch.log(b.clamp_min(1)).unsqueeze(1))
    terms = torch.where(nonzero, table / total[:, None, None] * log_ratio, torch.zeros_like(table))
    return terms.sum((1, 2)).clamp_min(0.0)  # (b,)


def _lookup(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` for a 1-D ``values`` and an index of any shape (faster than advanced indexing)."""
    return values.index_select(0, index.reshape(-1)).view(index.shape)


def _expected_mutual_info(a: torch.Tensor, b: torch.Tensor, total: torch.Tensor,
                          tail: float | None = _EMI_TAIL) -> torch.Tensor:
    """Expected mutual information (b,) of two random labelings with the given cluster sizes.

    EMI = sum_ij sum_n (n / N) log(N n / (a_i b_j)) P(n; N, a_i, b_j), where n = n_ij runs over
    [max(1, a_i + b_j - N), min(a_i, b_j)] and P is the hypergeometric probability
    a_i! b_j! (N - a_i)! (N - b_j)! / (N! n! (a_i - n)! (b_j - n)! (N - a_i - b_j + n)!)
    (Vinh, Epps & Bailey 2010, eq. 24a). The pairs (image, i, j) of all images are flattened and
    sorted by their number of n values; a chunk of pairs with similar counts is one (pairs, n) grid.

    With ``tail`` = L, n is restricted to mean +- t with t = L/3 + sqrt(L^2/9 + 2 L var), where
    mean = a_i b_j / N and var = (a_i b_j / N)(1 - max(a_i, b_j) / N): the hypergeometric
    distribution obeys the binomial's Chernoff bounds (Hoeffding 1963, Thm 4), so by Bernstein's
    inequality each skipped tail has probability below exp(-L), and since every term is at most
    P(n) log(N), the EMI changes by less than 2 exp(-L) log(N) per pair (about 4e-35 log N for the
    default L = 80): nothing in float64. ``tail=None`` evaluates every term.

    Args:
        a: (b, kt) int64 true cluster sizes (zeros are padding).
        b: (b, kp) int64 predicted cluster sizes (zeros are padding).
        total: (b,) int64 pixel counts, the row sums of ``a``.
        tail: log of the tail probability below which terms are skipped, or None.

    Returns:
        (b,) float64 EMI in nats.
    """
    nb, kt = a.shape
    kp = b.shape[1]
    device = a.device
    emi = torch.zeros(nb, dtype=torch.float64, device=device)  # (b,)
    if nb == 0 or int(total.max()) == 0:
        return emi
    ai = a.unsqueeze(2).expand(nb, kt, kp)  # (b, kt, kp)
    bj = b.unsqueeze(1).expand(nb, kt, kp)  # (b, kt, kp)
    keep = (ai > 0) & (bj > 0)  # (b, kt, kp)
    image = torch.arange(nb, device=device)[:, None, None].expand(nb, kt, kp)[keep]  # (P,)
    ai, bj = ai[keep], bj[keep]  # (P,)
    n_all = total[image]  # (P,)
    lo = (ai + bj - n_all).clamp_min(1)  # (P,)
    hi = torch.minimum(ai, bj)  # (P,)
    af, bf, nf = ai.double(), bj.double(), n_all.double()
    if tail is not None:
        mean = af * bf / nf  # (P,)
        var = mean * (1.0 - torch.maximum(af, bf) / nf)  # (P,)
        width = tail / 3.0 + torch.sqrt(tail * tail / 9.0 + 2.0 * tail * var)  # (P,)
        lo = torch.maximum(lo, torch.ceil(mean - width).long())
        hi = torch.minimum(hi, torch.floor(mean + width).long())
    counts = hi - lo + 1  # (P,) number of n values per pair, >= 1 since the mean lies in [lo, hi]
    # tables for k = 0..max N shared by all terms: log k!, log k, and log k - log k! (log 0 is never used)
    ks = torch.arange(int(total.max()) + 1, dtype=torch.float64, device=device)
    log_fact, log_int = torch.lgamma(ks + 1.0), torch.log(ks)
    log_k_over_fact = log_int - log_fact
    # per pair: the numerator of P and log(N / (a_i b_j))
    log_num = (_lookup(log_fact, ai) + _lookup(log_fact, bj) + _lookup(log_fact, n_all - ai)
               + _lookup(log_fact, n_all - bj) - _lookup(log_fact, n_all))  # (P,)
    log_scale = torch.log(nf) - torch.log(af) - torch.log(bf)  # (P,)
    rest = n_all - ai - bj  # (P,) so that N - a_i - b_j + n = rest + n
    order = torch.argsort(counts, descending=True)
    index_dtype = torch.int32 if int(total.max()) < 2**31 else torch.int64  # halves the memory traffic
    counts, lo, hi, ai, bj, rest = (v[order].to(index_dtype) for v in (counts, lo, hi, ai, bj, rest))
    image, log_num, log_scale = image[order], log_num[order], log_scale[order]
    neg_counts = -counts  # ascending, for searchsorted
    num_pairs = counts.numel()
    first = 0
    while first < num_pairs:  # chunks of pairs: at most _EMI_CHUNK grid cells, at most half of them padding
        width = int(counts[first])
        if width <= 0:  # only with a tiny ``tail``: no term left in this or any later pair
            break
        last = min(num_pairs, first + max(1, _EMI_CHUNK // width),
                   int(torch.searchsorted(neg_counts, -(width // 2))))  # pairs with more than width / 2
        last = max(last, first + 1)
        s = slice(first, last)
        step = torch.arange(width, device=device, dtype=index_dtype)  # (W,)
        n = torch.minimum(lo[s, None] + step, hi[s, None])  # (p, W) n values, the padding repeats hi
        # log(n P(n)), then N times the EMI terms, in place
        terms = _lookup(log_k_over_fact, n)  # (p, W)
        terms += log_num[s, None]
        terms -= _lookup(log_fact, ai[s, None] - n)
        terms -= _lookup(log_fact, bj[s, None] - n)
        terms -= _lookup(log_fact, rest[s, None] + n)
        terms.exp_()
        factor = _lookup(log_int, n)  # (p, W)
        factor += log_scale[s, None]
        terms *= factor  # n P(n) log(N n / (a_i b_j))
        terms.masked_fill_(step >= counts[s, None], 0.0)  # drop the padding
        emi.index_add_(0, image[s], terms.sum(1))
        first = last
    return emi / total.double().clamp_min(1)  # (b,)


def _ami_from_table(table: torch.Tensor) -> torch.Tensor:
    """AMI (b,) float64 with arithmetic normalisation from contingency tables (b, kt, kp) int64.

    AMI = (MI - EMI) / ((H(true) + H(pred)) / 2 - EMI), with scikit-learn's special cases: 1.0 when
    both labelings have one cluster, 0.0 when exactly one has, and numerator and denominator kept
    at least machine epsilon away from zero with their sign (so a perfect match of labelings whose
    EMI equals their entropy is 1.0, not 0/0).
    """
    a_int = table.sum(2)  # (b, kt)
    b_int = table.sum(1)  # (b, kp)
    total_int = a_int.sum(1)  # (b,)
    n, a, b, total = table.double(), a_int.double(), b_int.double(), total_int.double()
    mi = _mutual_info(n, a, b, total)  # (b,)
    emi = _expected_mutual_info(a_int, b_int, total_int)  # (b,)
    normaliser = 0.5 * (_entropy(a, total) + _entropy(b, total))  # (b,)

    def away_from_zero(v: torch.Tensor) -> torch.Tensor:
        return torch.where(v < 0, v.clamp_max(-_EPS), v.clamp_min(_EPS))

    score = away_from_zero(mi - emi) / away_from_zero(normaliser - emi)  # (b,)
    single_t = (a_int > 0).sum(1) == 1  # (b,)
    single_p = (b_int > 0).sum(1) == 1  # (b,)
    score = torch.where(single_t | single_p, torch.zeros_like(score), score)
    score = torch.where(single_t & single_p, torch.ones_like(score), score)
    return torch.where(total_int > 0, score, torch.full_like(score, math.nan))


def _covering_from_table(table: torch.Tensor, weighted: bool) -> torch.Tensor:
    """Segmentation covering (b,) float64 of the true segments by the predicted ones."""
    n = table.double()  # (b, kt, kp)
    a = n.sum(2)  # (b, kt) true segment sizes
    b = n.sum(1)  # (b, kp) predicted segment sizes (kept pixels only)
    union = a.unsqueeze(2) + b.unsqueeze(1) - n  # (b, kt, kp)
    overlap = torch.where(union > 0, n / union.clamp_min(1), torch.zeros_like(n))  # (b, kt, kp) IoU
    best = overlap.amax(2)  # (b, kt)
    present = a > 0  # (b, kt)
    if weighted:
        score = (a * best).sum(1) / a.sum(1)  # (b,)
    else:
        score = (best * present).sum(1) / present.sum(1)  # (b,)
    return torch.where(present.any(1), score, torch.full_like(score, math.nan))


# --------------------------------------------------------------------------- public scores


def ari(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None) -> torch.Tensor:
    """Adjusted Rand index of each image, over the pixels whose true label is not ``ignore_index``.

    Equal to ``sklearn.metrics.adjusted_rand_score(true[b][keep], pred[b][keep])`` per image.
    With ``ignore_index=0`` this is the foreground ARI of Multi-dSprites (background pixels left
    out), the number the paper, MONet, IODINE and Slot Attention report.

    Corner cases:
        - Identical partitions (e.g. both labelings put every kept pixel in one cluster, the usual
          case for a one-object image with ``ignore_index=0``): 1.0, as scikit-learn. DeepMind's
          reference ``adjusted_rand_index`` (multi_object_datasets) returns NaN there, 0/0.
        - One predicted cluster for several true clusters (or the reverse): 0.0.
        - No pixel kept (every true label is ``ignore_index``): NaN.

    Args:
        true: (B, H, W) integer true labels (torch or numpy, any integer dtype, any values).
        pred: (B, H, W) integer predicted labels, e.g. from ``masks_to_labels``.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.

    Returns:
        (B,) float64 ARI per image, in [-1, 1] (NaN where undefined).

    Raises:
        ValueError: if the shapes are not the same (B, H, W) or the labels are not integers.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[1, 1, 2, 2]], [[1, 1, 2, 2]], [[0, 0, 0, 0]]])  # (3, 1, 4)
        >>> pred = torch.tensor([[[3, 3, 9, 9]], [[3, 9, 3, 9]], [[1, 1, 2, 2]]])
        >>> ari(true, pred, ignore_index=0).tolist()
        [1.0, -0.5, nan]
    """
    return _table_scores(true, pred, ignore_index, {"ari": _ari_from_table})["ari"]


def ami(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None) -> torch.Tensor:
    """Adjusted mutual information (arithmetic normalisation) of each image.

    Over the pixels whose true label is not ``ignore_index``, equal to
    ``sklearn.metrics.adjusted_mutual_info_score(true[b][keep], pred[b][keep],
    average_method="arithmetic")`` per image (to about 1e-12). The expected mutual information
    under the hypergeometric model is evaluated in torch for all images at once; terms with tail
    probability below exp(-80) are skipped (a change far below float64 precision). With
    ``ignore_index=0`` this is the Montezuma protocol of the paper (Neural-EM's evaluation).

    Corner cases (as scikit-learn):
        - Both labelings put every kept pixel in one cluster: 1.0.
        - Exactly one labeling has a single cluster (e.g. one predicted cluster for several true
          clusters): 0.0.
        - No pixel kept: NaN.

    Args:
        true: (B, H, W) integer true labels (torch or numpy, any integer dtype, any values).
        pred: (B, H, W) integer predicted labels.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.

    Returns:
        (B,) float64 AMI per image, at most 1 (NaN where undefined).

    Raises:
        ValueError: if the shapes are not the same (B, H, W) or the labels are not integers.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[0, 0, 1, 1, 2, 2]], [[0, 1, 1, 1, 1, 1]]])  # (2, 1, 6)
        >>> pred = torch.tensor([[[4, 4, 4, 4, 5, 5]], [[3, 7, 7, 7, 2, 2]]])
        >>> [round(v, 4) for v in ami(true, pred).tolist()]
        [0.6154, 0.4571]
        >>> [round(v, 4) for v in ami(true, pred, ignore_index=0).tolist()]  # image 2: one true cluster
        [1.0, 0.0]
    """
    return _table_scores(true, pred, ignore_index, {"ami": _ami_from_table})["ami"]


def segmentation_covering(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None,
                          weighted: bool = False) -> torch.Tensor:
    """Segmentation covering of the true segments by the predicted ones, per image (GENESIS).

    For each true segment R, the best IoU over predicted segments R'; mean segmentation covering
    (mSC, ``weighted=False``) is the plain mean over true segments, segmentation covering (SC,
    ``weighted=True``) the mean weighted by |R| (Engelcke et al. 2020, after Arbelaez et al. 2011).
    Pixels whose true label is ``ignore_index`` are removed from the true *and* the predicted
    segments before any IoU is taken.

    Corner cases: no pixel kept gives NaN; a predicted segment lying entirely in ignored pixels
    does not exist. The score is not symmetric: it asks how well ``pred`` covers ``true``.

    Args:
        true: (B, H, W) integer true labels (torch or numpy, any integer dtype, any values).
        pred: (B, H, W) integer predicted labels.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.
        weighted: False for mSC, True for SC.

    Returns:
        (B,) float64 covering per image, in [0, 1] (NaN where undefined).

    Raises:
        ValueError: if the shapes are not the same (B, H, W) or the labels are not integers.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[1, 1, 1, 2]]])  # (1, 1, 4): segments of 3 and 1 pixels
        >>> pred = torch.tensor([[[0, 0, 0, 0]]])  # one segment: IoUs 3/4 and 1/4
        >>> segmentation_covering(true, pred).tolist()  # mSC = (3/4 + 1/4) / 2
        [0.5]
        >>> segmentation_covering(true, pred, weighted=True).tolist()  # SC = (3 * 3/4 + 1/4) / 4
        [0.625]
    """
    fn = partial(_covering_from_table, weighted=weighted)
    return _table_scores(true, pred, ignore_index, {"covering": fn})["covering"]


def label_scores(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None) -> dict[str, torch.Tensor]:
    """ARI, AMI, mSC and SC of each image from one set of contingency tables.

    The same numbers as ``ari``, ``ami`` and ``segmentation_covering`` (weighted False and True)
    with the same ``ignore_index``, for about the price of one of them.

    Args:
        true: (B, H, W) integer true labels.
        pred: (B, H, W) integer predicted labels.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.

    Returns:
        ``{"ari", "ami", "msc", "sc"}``, each (B,) float64.

    Example:
        >>> true = [[[0, 1, 1, 2]]]  # nested lists work too: (1, 1, 4)
        >>> scores = label_scores(true, [[[0, 3, 3, 4]]], ignore_index=0)
        >>> {name: value.tolist() for name, value in scores.items()}
        {'ari': [1.0], 'ami': [1.0], 'msc': [1.0], 'sc': [1.0]}
    """
    fns = {
        "ari": _ari_from_table,
        "ami": _ami_from_table,
        "msc": partial(_covering_from_table, weighted=False),
        "sc": partial(_covering_from_table, weighted=True),
    }
    return _table_scores(true, pred, ignore_index, fns)


def iou(true: ArrayLike, pred: ArrayLike) -> torch.Tensor:
    """Intersection over union of binary maps, per image.

    Args:
        true: (B, H, W) binary map (bool, or integers 0/1).
        pred: (B, H, W) binary map (bool, or integers 0/1).

    Returns:
        (B,) float64 |true & pred| / |true | pred|; NaN where both maps are empty (0/0).

    Raises:
        ValueError: if the shapes differ, are not (B, H, W), or a map is not binary.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)  # (2, 1, 4)
        >>> pred = torch.tensor([[[0, 1, 1, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)
        >>> iou(true, pred).tolist()
        [0.3333333333333333, nan]
    """
    t, p = _check_pair(true, pred, ("true", "pred"))
    t, p = _check_binary(t, "true"), _check_binary(p, "pred")
    inter = (t & p).sum((1, 2)).double()  # (B,)
    union = (t | p).sum((1, 2)).double()  # (B,)
    return inter / union  # 0/0 = NaN where both are empty


def redo_iou(true_fg: ArrayLike, pred_fg: ArrayLike) -> torch.Tensor:
    """The Flowers protocol of ReDO: max(IoU(pred >= 0.5, gt), IoU(pred < 0.5, gt)) per image.

    The model is not told which of its two regions is the foreground, so the better of the two
    assignments counts (Chen, Artieres & Denoyer 2019).

    Args:
        true_fg: (B, H, W) binary ground-truth foreground (bool, or integers 0/1).
        pred_fg: (B, H, W) predicted foreground probability (any real or bool dtype).

    Returns:
        (B,) float64 score in [0, 1]; NaN where the ground truth has no foreground pixel.

    Raises:
        ValueError: if the shapes differ, are not (B, H, W), or ``true_fg`` is not binary.

    Example:
        >>> import torch
        >>> gt = torch.tensor([[[1, 1, 0, 0]]])  # (1, 1, 4)
        >>> prob = torch.tensor([[[0.1, 0.2, 0.9, 0.6]]])  # foreground and background swapped
        >>> redo_iou(gt, prob).tolist()
        [1.0]
    """
    t, p = _check_pair(true_fg, pred_fg, ("true_fg", "pred_fg"))
    t = _check_binary(t, "true_fg")
    if p.is_complex():
        raise ValueError(f"pred_fg must be real, got dtype {p.dtype} with shape {tuple(p.shape)}")
    fg = p >= 0.5 if p.dtype != torch.bool else p  # (B, H, W)
    size = t.sum((1, 2))  # (B,)
    inter_fg = (t & fg).sum((1, 2)).double()  # (B,)
    union_fg = (t | fg).sum((1, 2)).double()
    inter_bg = size - inter_fg  # (B,) gt pixels predicted background
    union_bg = (t | ~fg).sum((1, 2)).double()
    score = torch.maximum(inter_fg / union_fg.clamp_min(1), inter_bg / union_bg.clamp_min(1))  # (B,)
    return torch.where(size > 0, score, torch.full_like(score, math.nan))


def location_error(true_centres: np.ndarray, visible: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    """Sum of distances between true object centres and their matched predicted slot centres.

    Args:
        true_centres: (B, M, 2) normalised (y, x), NaN for absent objects.
        visible: (B, M) bool; invisible objects (and NaN centres) are ignored.
        pred: (B, K', 2) predicted centres of the object slots (background slot excluded).

    Returns:
        (sum of distances over matched objects, number of matched objects). Matching is the
        Hungarian assignment minimising total distance, per image; an image without a visible
        object adds nothing.

    Example:
        >>> import numpy as np
        >>> true = np.array([[[0.2, 0.2], [0.8, 0.8]]])  # (1, 2, 2)
        >>> pred = np.array([[[0.8, 0.8], [0.2, 0.5]]])  # (1, 2, 2)
        >>> total, count = location_error(true, np.array([[True, True]]), pred)
        >>> round(total, 6), count
        (0.3, 2)
    """
    from scipy.optimize import linear_sum_assignment

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


# --------------------------------------------------------------------------- helpers


def masks_to_labels(masks: ArrayLike) -> torch.Tensor:
    """Hard label maps from soft masks: the argmax over the K slots.

    Args:
        masks: (B, K, H, W) or (B, K, 1, H, W) masks (torch or numpy), e.g. ``ModelOutput.masks``.

    Returns:
        (B, H, W) int64 labels in [0, K); ties go to the lowest slot index.

    Raises:
        ValueError: for any other shape, or K = 0.

    Example:
        >>> import torch
        >>> masks = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # (1, 2, 1, 2): K = 2, H = 1, W = 2
        >>> masks_to_labels(masks).tolist()
        [[[0, 1]]]
    """
    m = _to_tensor(masks, "masks")
    if m.dim() == 5 and m.shape[2] == 1:
        m = m[:, :, 0]  # (B, K, H, W)
    if m.dim() != 4 or m.shape[1] == 0:
        raise ValueError(f"masks must have shape (B, K, H, W) or (B, K, 1, H, W) with K >= 1, got shape "
                         f"{tuple(m.shape)}")
    if m.dtype == torch.bool:
        m = m.to(torch.uint8)
    return torch.max(m, dim=1).indices  # (B, H, W); on CPU several times faster than argmax over dim 1


class ScoreSummary(NamedTuple):
    """Mean and spread of per-image scores, with the undefined (NaN) images counted apart."""

    mean: float  # over the defined images; NaN if there are none
    std: float  # population standard deviation (ddof=0) over the defined images; NaN if none
    n_defined: int  # images with a finite score
    n_undefined: int  # images with a NaN score, left out of mean and std


def aggregate(scores: ArrayLike | Sequence[float]) -> ScoreSummary:
    """Summarise per-image scores: NaN images are excluded from the mean and std, and counted.

    Report ``n_undefined`` next to the mean: e.g. Multi-dSprites images without any object have no
    foreground ARI.

    Args:
        scores: per-image scores of any shape (flattened), e.g. the output of ``ari``; concatenate
            per-batch outputs first.

    Returns:
        ``ScoreSummary(mean, std, n_defined, n_undefined)``; unpacks like a tuple.

    Example:
        >>> aggregate([1.0, 0.5, float("nan")])
        ScoreSummary(mean=0.75, std=0.25, n_defined=2, n_undefined=1)
    """
    s = _to_tensor(scores, "scores").detach().reshape(-1).to("cpu", torch.float64)  # (M,)
    defined = ~torch.isnan(s)  # (M,)
    kept = s[defined]
    n_defined = int(kept.numel())
    if n_defined == 0:
        return ScoreSummary(math.nan, math.nan, 0, int(s.numel()))
    mean = float(kept.mean())
    std = float(((kept - mean) ** 2).mean().sqrt())
    return ScoreSummary(mean, std, n_defined, int(s.numel()) - n_defined)
