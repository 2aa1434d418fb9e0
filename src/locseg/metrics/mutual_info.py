"""Adjusted mutual information per image (the Montezuma protocol), with the expected mutual
information of the hypergeometric model evaluated in torch for all images at once."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._tables import ArrayLike, table_scores

_EMI_CHUNK = 1 << 17  # expected-mutual-information terms per step (1 MiB temporaries stay in cache)
# EMI terms whose hypergeometric tail probability is below exp(-_EMI_TAIL) are skipped: each skipped
# tail changes the EMI by less than 1e-34 * log(N) (see _expected_mutual_info).
_EMI_TAIL = 80.0

_EPS = float(np.finfo(np.float64).eps)


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
    return table_scores(true, pred, ignore_index, {"ami": _ami_from_table})["ami"]
