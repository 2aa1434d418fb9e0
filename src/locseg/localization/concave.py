"""An optional cut of overlapping one-colour sprites between the two deepest dents of their outline.

Where two white sprites overlap, their union often shows no neck that a few erosions could find
(``neck_split``), but its outline still bends inwards twice where the two shapes cross: the union is
not convex there. ``concave_split: d`` looks for such dents in the unexplained blob at the window's
centre:

1. the blob's convex hull, as the intersection of the half-planes that support the blob's pixel
   squares in ``directions`` evenly spaced directions (a polygon around the exact hull);
2. its *concavities*: the 8-connected parts of hull minus blob, each with its depth (the largest
   distance of one of its pixel centres to the hull polygon's boundary) and its deepest pixel;
3. for every pair of the (at most) four deepest concavities at least ``d`` pixels deep, the straight
   line between their deepest pixels is removed from the blob; the pair is usable when the two
   largest 4-connected parts left both hold at least ``concave_min_pixels`` pixels (so a cut never
   shaves a corner off a single sprite); among usable pairs the one with the shortest line per unit
   of depth wins;
4. both parts grow back inside the blob (3x3, ties to the far part), and L becomes the blob's part
   grown from the centre's side.

``localize`` runs the cut inside the neck cut's part where that made one, and ``concave_rounds``
times in a row, each inside the centre's side of the cut before (a blob of three sprites needs two).

Batched over images, with no per-image Python loop, on any device. Labelling spreads the largest pixel
id through each part (8-connected with a 3x3 window, 4-connected with a cross) with pointer jumping.
"""

from __future__ import annotations

import math

import torch

from .connected import _CHECK_EVERY, _nearest_pixel, grow_apart, max_3x3, max_cross

_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))  # pairs of the four deepest concavities


@torch.no_grad()
def label_components(region: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Connected-component labels: each pixel of ``region`` gets the largest flat index + 1 in its part.

    Args:
        region: (N, H, W) bool.
        connectivity: 8 (3x3 neighbourhood) or 4 (edge neighbours only).

    Returns:
        (N, H, W) long, 0 outside the region; two pixels share a label iff they are connected.

    >>> r = torch.tensor([[[1, 0, 1], [0, 1, 0]]], dtype=torch.bool)
    >>> label_components(r, 8).tolist(), label_components(r, 4).tolist()
    ([[[5, 0, 5], [0, 5, 0]]], [[[1, 0, 3], [0, 5, 0]]])
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    N, H, W = region.shape
    inside = region.float()  # (N, H, W)
    ids = torch.arange(1, H * W + 1, device=region.device, dtype=torch.float32).view(1, H, W) * inside
    while True:
        before = ids
        for _ in range(_CHECK_EVERY):
            ids = (max_3x3(ids) if connectivity == 8 else max_cross(ids)) * inside
            # pointer jumping: a pixel labelled with pixel q's id takes q's label, which is at least as
            # large and from the same part, so labels cross a part in a logarithmic number of rounds
            flat = ids.view(N, H * W)
            jumped = flat.gather(1, (flat.long() - 1).clamp_min(0)) * (flat > 0)  # (N, HW)
            ids = torch.maximum(flat, jumped).view(N, H, W)
        if torch.equal(ids, before):
            return ids.long()  # float32 holds every id exactly up to 2**24 pixels


@torch.no_grad()
def hull_depth(blob: torch.Tensor, directions: int = 64) -> torch.Tensor:
    """Signed distance of every pixel centre to the boundary of the blob's (polygonal) convex hull.

    The hull is the intersection of the half-planes ``p . u <= max_{q in blob} q . u + r(u)`` over
    ``directions`` unit vectors u, where ``r(u) = (|u_y| + |u_x|) / 2`` reaches a pixel square's
    corner: the polygon that holds every pixel square of the blob.

    Args:
        blob: (N, H, W) bool, each non-empty.
        directions: number of support directions (evenly spaced over the circle).

    Returns:
        (N, H, W) float: >= 0 inside the hull (the distance to its nearest edge), < 0 outside.
    """
    N, H, W = blob.shape
    angle = torch.arange(directions, device=blob.device, dtype=torch.float32) * (2 * math.pi / directions)
    u = torch.stack([torch.cos(angle), torch.sin(angle)], 1)  # (D, 2) (row, col) components
    rows = torch.arange(H, device=blob.device, dtype=torch.float32)
    cols = torch.arange(W, device=blob.device, dtype=torch.float32)
    pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).view(H * W, 2)  # (HW, 2)
    proj = pos @ u.T  # (HW, D)
    reach = 0.5 * u.abs().sum(1)  # (D,)
    support = torch.where(blob.view(N, H * W, 1), proj, torch.tensor(-math.inf, device=blob.device))
    support = support.amax(1) + reach  # (N, D)
    return (support.unsqueeze(1) - proj).amin(2).view(N, H, W)  # (N, H, W)


def _line_mask(start: torch.Tensor, end: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(M, H * W) bool: the pixels a straight line from ``start`` to ``end`` ((M, 2) float) passes."""
    steps = 2 * max(H, W) + 1
    t = torch.linspace(0.0, 1.0, steps, device=start.device).view(1, steps, 1)  # (1, T, 1)
    points = (start.unsqueeze(1) + t * (end - start).unsqueeze(1)).round().long()  # (M, T, 2)
    flat = points[..., 0].clamp(0, H - 1) * W + points[..., 1].clamp(0, W - 1)  # (M, T)
    line = torch.zeros(start.shape[0], H * W, dtype=torch.bool, device=start.device)
    return line.scatter_(1, flat, True)


@torch.no_grad()
def split_concave(blob: torch.Tensor, centre: torch.Tensor, min_depth: float, min_pixels: int,
                  directions: int = 64, grow_rounds: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each blob along the line between two of its outline's deepest concavities.

    Args:
        blob: (B, H, W) bool unexplained pixels 8-connected to the centre.
        centre: (B, 2) long window centres.
        min_depth: a concavity counts when its deepest pixel lies this far inside the hull (pixels).
        min_pixels: both parts the line leaves must hold at least this many pixels.
        directions: support directions of the hull polygon.
        grow_rounds: 3x3 growth rounds of the two parts back into the blob.

    Returns:
        found (B,) bool, True where a cut was made; part (B, H, W) bool: the blob's pixels on the
        centre's side of the cut (meaningful only where ``found``).
    """
    B, H, W = blob.shape
    found = torch.zeros(B, dtype=torch.bool, device=blob.device)
    part = torch.zeros_like(blob)
    todo = (blob.flatten(1).sum(1) >= 2 * min_pixels).nonzero().flatten()  # (N,)
    if todo.numel() == 0:
        return found, part
    sub = blob[todo]  # (N, H, W)
    N = sub.shape[0]
    depth = hull_depth(sub, directions).view(N, H * W)  # (N, HW)
    dents = (depth >= -1e-6) & ~sub.view(N, H * W)  # (N, HW) hull minus blob
    label = label_components(dents.view(N, H, W), 8).view(N, H * W)  # (N, HW)
    # the depth of every concavity (indexed by its label), its four deepest and their deepest pixels
    dent_depth = torch.full((N, H * W + 1), -math.inf, device=blob.device)
    dent_depth = dent_depth.scatter_reduce(1, label, depth, "amax")  # (N, HW + 1)
    dent_depth[:, 0] = -math.inf  # label 0 is the blob and the outside
    top_depth, top_label = dent_depth.topk(min(4, H * W), 1)  # (N, 4)
    deepest = torch.where(label.unsqueeze(1) == top_label.unsqueeze(2), depth.unsqueeze(1),
                          torch.tensor(-math.inf, device=blob.device)).argmax(2)  # (N, 4) flat index
    point = torch.stack([deepest // W, deepest % W], 2).float()  # (N, 4, 2)
    usable = top_depth >= min_depth  # (N, 4)
    pairs = [(a, b) for a, b in _PAIRS if b < top_label.shape[1]]
    a_idx = torch.tensor([a for a, _ in pairs], device=blob.device)
    b_idx = torch.tensor([b for _, b in pairs], device=blob.device)
    P = len(pairs)
    start, end = point[:, a_idx], point[:, b_idx]  # (N, P, 2)
    deep = usable[:, a_idx] & usable[:, b_idx]  # (N, P) pairs of dents both deep enough
    rows = deep.flatten().nonzero().flatten()  # (M,) only these pairs are cut and labelled
    if rows.numel() == 0:
        return found, part
    line = _line_mask(start.reshape(N * P, 2)[rows], end.reshape(N * P, 2)[rows], H, W)  # (M, HW)
    rest = sub.view(N, H * W)[rows // P] & ~line  # (M, HW)
    labelled = label_components(rest.view(-1, H, W), 4).view(-1, H * W)  # (M, HW)
    pieces = torch.zeros(N * P, H * W, dtype=torch.long, device=blob.device)
    pieces[rows] = labelled  # (N P, HW) 0 for the pairs not cut
    sizes = torch.zeros(N * P, H * W + 1, device=blob.device)
    sizes[rows] = sizes[rows].scatter_add_(1, labelled, rest.float())
    sizes[:, 0] = 0.0
    big_size, big_label = sizes.topk(2, 1)  # (N P, 2) the two largest parts
    ok = (big_size[:, 1] >= min_pixels).view(N, P) & deep  # (N, P)
    length = (end - start).norm(dim=2)  # (N, P)
    score = length / (top_depth[:, a_idx] + top_depth[:, b_idx]).clamp_min(1e-6)  # (N, P)
    best = torch.where(ok, score, torch.full_like(score, math.inf)).argmin(1)  # (N,)
    cut = ok.any(1)  # (N,)
    chosen = torch.arange(N, device=blob.device) * P + best  # (N,) rows of the chosen pairs
    pieces, big_label = pieces[chosen], big_label[chosen]  # (N, HW), (N, 2)
    first = (pieces == big_label[:, :1]).view(N, H, W)  # (N, H, W)
    second = (pieces == big_label[:, 1:]).view(N, H, W)  # (N, H, W)
    near = _nearest_pixel(first | second, centre[todo])  # (N, 2) the centre, or the nearest part pixel
    in_first = first[torch.arange(N, device=blob.device), near[:, 0], near[:, 1]]  # (N,)
    mine = torch.where(in_first.view(N, 1, 1), first, second)  # (N, H, W)
    theirs = torch.where(in_first.view(N, 1, 1), second, first)  # (N, H, W)
    found[todo] = cut
    part[todo] = grow_apart(mine, theirs, sub, grow_rounds) & cut.view(N, 1, 1)
    return found, part
