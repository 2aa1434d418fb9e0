"""localize: the module's one step, Algorithm 2 lines 4-8 (see :mod:`locseg.localization`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..config import LocalizationConfig, check_choices
from .box_filter import box_argmax
from .butterworth import butterworth_1d, butterworth_radius, butterworth_window
from .concave import split_concave
from .connected import connected_to_centre, keep_connected, split_blob, split_neck
from .gmm import (
    degenerate_windows,
    fit_gmm,
    object_component,
    paper_means,
    pixel_features,
    predict_resp,
    window_means,
)
from .quality import quality_map
from .refine import refine_object


@dataclass
class LocalizeResult:
    """What :func:`localize` returns; every tensor is detached.

    Attributes:
        L: (B, H, W) location mask in [0, 1]: the object component's responsibility, restricted to
            the window (see ``LocalizationConfig.restrict``), in the dtype of ``x``.
        centre: (B, 2) long (row, col) of the best area quality, argmax of box(s * Q).
        window: (B, H, W) Butterworth window G around ``centre``, in the dtype of ``x``.
        quality: (B, H, W) pixel quality Q (detached; call :func:`quality_map` for the differentiable one).
        degenerate: (B,) bool, True where the window could not be split and L is the window itself.
        object_mean: (B, C + 2) fitted mean (colour, y, x) of the object component (positions in
            [0, 1]); the centre pixel's features for degenerate windows.
    """

    L: torch.Tensor
    centre: torch.Tensor
    window: torch.Tensor
    quality: torch.Tensor
    degenerate: torch.Tensor
    object_mean: torch.Tensor


@dataclass
class WindowPixels:
    """The N pixels the GMM sees in each image.

    Attributes:
        features: (B, N, C + 2) pixel features (colour, y, x), see :func:`pixel_features`.
        weights: (B, N) GMM weights w: 1[G > threshold] ("hard") or G ("soft"); 0 off the image.
        window: (B, N) Butterworth window G at those pixels (0 off the image).
        valid: (B, N) bool, False for pixels of the window's footprint that fall off the image.
        index: (B, N) long flat index ``row * W + col`` of each pixel (clamped into the image).
        centre_index: (B,) long position of the centre pixel among the N.
        whole_image: True when the N pixels are the whole image in row-major order.
    """

    features: torch.Tensor
    weights: torch.Tensor
    window: torch.Tensor
    valid: torch.Tensor
    index: torch.Tensor
    centre_index: torch.Tensor
    whole_image: bool


@functools.lru_cache(maxsize=64)
def _footprint(config: LocalizationConfig, dtype: torch.dtype, H: int, W: int, device: torch.device
               ) -> tuple[torch.Tensor, int] | None:
    """(M, 2) long (row, col) offsets from the centre where the hard window can exceed the threshold.

    The offsets are where G(|di|) * G(|dj|) > threshold, evaluated exactly as
    :func:`butterworth_window` evaluates it (same function, same dtype), in row-major order; also
    returns the position of the offset (0, 0) among them. None when the hard window is not bounded
    (threshold 0, soft weights) or not smaller than the image.
    """
    if config.weights != "hard":
        return None
    with torch.inference_mode(False):  # cached: a plain tensor, usable everywhere
        return _footprint_offsets(config, dtype, H, W, device)


def _footprint_offsets(config: LocalizationConfig, dtype: torch.dtype, H: int, W: int, device: torch.device
                       ) -> tuple[torch.Tensor, int] | None:
    radius = butterworth_radius(config.butterworth_f, config.butterworth_n, config.threshold, dtype,
                                limit=max(H, W))
    if radius is None:
        return None
    steps = torch.arange(-radius, radius + 1, device=device)  # (S,)
    g = butterworth_1d(steps.to(dtype), config.butterworth_f, config.butterworth_n)  # (S,)
    offsets = (g.unsqueeze(1) * g.unsqueeze(0) > config.threshold).nonzero() - radius  # (M, 2)
    if offsets.shape[0] >= H * W:
        return None
    return offsets, int((offsets == 0).all(1).nonzero()[0, 0])


@torch.no_grad()
def window_pixels(x: torch.Tensor, centre: torch.Tensor, window: torch.Tensor,
                  config: LocalizationConfig, scope: torch.Tensor | None = None) -> WindowPixels:
    """Features and weights of the pixels the GMM sees (Algorithm 1 lines 3-5).

    With hard weights the GMM only needs the pixels with G > threshold, and their offsets from the
    centre are the same for every image (the window's footprint), so each image contributes exactly
    those M pixels (the ones falling off the image get weight 0). Pixels of weight zero do not
    change a weighted GMM, so this is exact, and the cost does not depend on the image size. With
    soft weights (w = G > 0 everywhere) the GMM sees the whole image.

    Args:
        x: (B, C, H, W) images.
        centre: (B, 2) long (row, col) window centres.
        window: (B, H, W) Butterworth window around ``centre``.
        config: ``weights``, ``threshold``, ``butterworth_f``, ``butterworth_n`` and
            ``scope_weights`` are used.
        scope: optional (B, H, W) remaining-mask; with ``config.scope_weights`` the weights are
            multiplied by it, so explained pixels no longer pull the clusters.

    Returns:
        A :class:`WindowPixels`.
    """
    B, C, H, W = x.shape
    dtype = window.dtype
    footprint = _footprint(config, dtype, H, W, x.device)
    if footprint is None:
        index = torch.arange(H * W, device=x.device).expand(B, H * W)  # (B, N) every pixel
        valid = torch.ones_like(index, dtype=torch.bool)  # (B, N)
        centre_index = centre[:, 0] * W + centre[:, 1]  # (B,)
    else:
        offsets, centre_position = footprint  # (M, 2), offset (0, 0) is the centre_position-th
        at = centre.unsqueeze(1) + offsets  # (B, M, 2) (row, col) of every footprint pixel
        rows, cols = at.unbind(-1)  # (B, M), (B, M)
        valid = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)  # (B, M)
        index = rows.clamp(0, H - 1) * W + cols.clamp(0, W - 1)  # (B, M)
        centre_index = torch.full_like(centre[:, 0], centre_position)  # (B,)
    local_window = window.flatten(1).gather(1, index) * valid  # (B, N)
    if config.weights == "hard":
        weights = (local_window > config.threshold).to(dtype)  # (B, N) Algorithm 1 line 5
    else:
        weights = local_window  # (B, N) w = G (section 2.4)
    if config.scope_weights and scope is not None:
        weights = weights * scope.flatten(1).gather(1, index).to(dtype) * valid  # (B, N) w * s
    return WindowPixels(features=pixel_features(x.to(dtype), index), weights=weights, window=local_window,
                        valid=valid, index=index, centre_index=centre_index, whole_image=footprint is None)


def initial_means(pixels: WindowPixels, config: LocalizationConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The GMM's initial means (B, 2, C + 2) for ``config.gmm_init`` ("paper" or "window").

    Args:
        pixels: the pixels the GMM sees.
        config: ``gmm_init`` is used.
        generator: optional generator for mu_2 ~ U(0, 1) of the "paper" initialisation.

    Returns:
        (B, 2, C + 2) means in the dtype of the features.
    """
    B, _, D = pixels.features.shape
    if config.gmm_init == "window":
        return window_means(pixels.features, pixels.weights, pixels.window, pixels.centre_index)  # (B, 2, D)
    return paper_means(B, D, generator, pixels.features.device, pixels.features.dtype)  # (B, 2, D) line 2


@torch.no_grad()
def locate(x: torch.Tensor, x_re: torch.Tensor, scope: torch.Tensor, config: LocalizationConfig,
           quality: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the next object is: Algorithm 2 lines 4-7 and the window around it.

    Args:
        x: (B, C, H, W) input images in [0, 1].
        x_re: (B, C, H, W) this step's reconstruction.
        scope: (B, H, W) remaining-mask s^(k-1) in [0, 1].
        config: ``sigma1``, ``sigma_squared``, ``box_size``, ``butterworth_f``, ``butterworth_n``.
        quality: optional (B, H, W) quality map Q already computed by the caller.

    Returns:
        quality (B, H, W) detached Q, centre (B, 2) long (row, col) = argmax box(s * Q), window
        (B, H, W) Butterworth window G around the centre in the dtype of ``x``.
    """
    B, C, H, W = x.shape
    if quality is None:
        quality = quality_map(x, x_re, scope, config.sigma1, config.sigma_squared)  # (B, H, W) line 4
    quality = quality.detach()
    centre = box_argmax(scope * quality, config.box_size)  # (B, 2) lines 6-7 (argmax of Q')
    window = butterworth_window(centre, H, W, config.butterworth_f, config.butterworth_n, x.dtype)  # (B, H, W)
    return quality, centre, window


@torch.no_grad()
def cut(x: torch.Tensor, centre: torch.Tensor, window: torch.Tensor, scope: torch.Tensor,
        config: LocalizationConfig, generator: torch.Generator | None = None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the window's pixels into object and rest: Algorithm 1 (weighted 2-GMM over (R, G, B, y, x)).

    Args:
        x: (B, C, H, W) input images in [0, 1].
        centre: (B, 2) long window centres from :func:`locate`.
        window: (B, H, W) Butterworth window G from :func:`locate`.
        scope: (B, H, W) remaining-mask (used by ``config.scope_weights``).
        config: the GMM's and the restriction's options.
        generator: optional generator for mu_2 ~ U(0, 1) of the "paper" initialisation.

    Returns:
        L (B, H, W) location mask in the dtype of ``x``, degenerate (B,) bool, object_mean (B, C + 2).
    """
    B, C, H, W = x.shape
    dtype = x.dtype
    pixels = window_pixels(x, centre, window, config, scope)  # N pixels per image, lines 3-5
    features, weights, centre_index = pixels.features, pixels.weights, pixels.centre_index  # (B, N, D), (B, N), (B,)
    means_init = initial_means(pixels, config, generator)  # (B, 2, D) line 2
    fit = fit_gmm(features, weights, means_init, covariance_type=config.covariance,
                  reg_covar=config.reg_covar, max_iter=config.em_iters, tol=config.em_tol)  # lines 6-10
    component = object_component(fit.resp, centre_index, config.object_rule)  # (B,)

    local = fit.resp.gather(2, component.view(B, 1, 1).expand(B, fit.resp.shape[1], 1)).squeeze(2)  # (B, N)
    if config.refine:
        local = refine_object(features, weights, local, centre_index, config)  # (B, N) optional second cut
    degenerate = degenerate_windows(features, weights, config.min_colour_var)  # (B,)
    if not pixels.whole_image and config.restrict == "window":
        # the GMM's pixels are exactly the hard window (weights 1 there): write L there, 0 elsewhere
        inside = (pixels.window > config.threshold).to(dtype) * pixels.valid  # (B, N) hard window
        values = torch.where(degenerate.view(B, 1), inside, local.to(dtype) * inside)  # (B, N)
        L = values.new_zeros(B, H * W).scatter_add_(1, pixels.index, values * pixels.valid)  # (B, H * W)
        L = L.view(B, H, W)  # (B, H, W) positions off the image were clamped and added 0
    else:
        if pixels.whole_image:
            object_resp = local.view(B, H, W)  # (B, H, W) the GMM saw every pixel in row-major order
        else:
            resp = predict_resp(pixel_features(x), fit)  # (B, H * W, 2) every pixel
            object_resp = resp.gather(2, component.view(B, 1, 1).expand(B, H * W, 1)).view(B, H, W)  # (B, H, W)
        inside = (window > config.threshold).to(dtype)  # (B, H, W) the hard window
        restriction = {"window": inside, "butterworth": window, "none": None}[config.restrict]
        L = object_resp.to(dtype)  # (B, H, W)
        L = L if restriction is None else L * restriction  # (B, H, W)
        fallback = window if config.restrict == "butterworth" else inside  # (B, H, W)
        L = torch.where(degenerate.view(B, 1, 1), fallback, L)  # (B, H, W)
    cut_L = L  # (B, H, W)
    if config.connected:
        L = keep_connected(cut_L, scope, centre, config.threshold)  # (B, H, W)
    if config.blob_split or config.neck_split or config.concave_split:
        blob = connected_to_centre(scope > 0.5, centre)  # (B, H, W) the unexplained blob at the centre
    if config.blob_split:
        beyond, split = split_blob(cut_L, blob, centre, config.threshold, config.blob_split, config.em_tol)
        L = torch.where(beyond.view(B, 1, 1), split, L)  # (B, H, W)
    if config.neck_split:
        found, part = split_neck(blob, centre, config.neck_split, config.neck_min_pixels)
        L = torch.where(found.view(B, 1, 1), part.to(dtype), L)  # (B, H, W)
    if config.concave_split:
        # inside the neck cut's part where it made one, else inside the blob; then again inside the
        # centre's side of each concave cut (a blob of three sprites needs two cuts)
        region = torch.where(found.view(B, 1, 1), part, blob) if config.neck_split else blob  # (B, H, W)
        for _ in range(config.concave_rounds):
            dented, side = split_concave(region, centre, config.concave_split, config.concave_min_pixels)
            L = torch.where(dented.view(B, 1, 1), side.to(dtype), L)  # (B, H, W)
            region = torch.where(dented.view(B, 1, 1), side, region)  # (B, H, W)
            if not bool(dented.any()):
                break

    D = C + 2
    object_mean = fit.means.gather(1, component.view(B, 1, 1).expand(B, 1, D)).squeeze(1)  # (B, D)
    centre_features = features.gather(1, centre_index.view(B, 1, 1).expand(B, 1, D)).squeeze(1)  # (B, D)
    object_mean = torch.where(degenerate.view(B, 1), centre_features.to(object_mean.dtype), object_mean)  # (B, D)
    return L, degenerate, object_mean.to(dtype)


@torch.no_grad()
def localize(x: torch.Tensor, x_re: torch.Tensor, scope: torch.Tensor, config: LocalizationConfig,
             generator: torch.Generator | None = None, quality: torch.Tensor | None = None) -> LocalizeResult:
    """Find the best-reconstructed region and cut the object out of it (Algorithm 2 lines 4-8).

    Batched over images with no per-image Python loop; runs on the device of ``x``.

    Args:
        x: (B, C, H, W) input images in [0, 1] (C = 3: the GMM's features are (R, G, B, y, x)).
        x_re: (B, C, H, W) this step's reconstruction.
        scope: (B, H, W) remaining-mask s^(k-1) in [0, 1].
        config: the module's hyper-parameters (:class:`locseg.config.LocalizationConfig`).
        generator: optional ``torch.Generator`` for mu_2 ~ U(0, 1) of the "paper" initialisation
            (default: the global RNG of ``x``'s device).
        quality: optional (B, H, W) quality map Q already computed by the caller (e.g. with another
            normalisation); default: :func:`quality_map` with ``config.sigma1``.

    Returns:
        A :class:`LocalizeResult` (L, centre, window, quality, degenerate, object_mean), detached.

    Raises:
        ValueError: on inconsistent shapes or an invalid config choice.
    """
    check_choices(config, "localization.")
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point image in [0, 1], got dtype {x.dtype}")
    quality, centre, window = locate(x, x_re, scope, config, quality)  # Algorithm 2 lines 4-7
    L, degenerate, object_mean = cut(x, centre, window, scope, config, generator)  # line 8, Algorithm 1
    return LocalizeResult(L=L, centre=centre, window=window, quality=quality, degenerate=degenerate,
                          object_mean=object_mean)
