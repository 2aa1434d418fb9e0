"""The non-trainable localization module (paper sections 2.3-2.4, Algorithm 1, Algorithm 2 lines 4-8).

For one segmentation step k > 1, given the image x, the step's reconstruction x_re and the
remaining-mask (scope) s, :func:`localize` computes

    Q  = exp(-s * sum_c (x_re - x)^2 / (2 sigma_1))      quality.quality_map        (line 4)
    Q' = box(s * Q)                                       box_filter.box_sum         (line 6)
    (i_c, j_c) = argmax Q'                                box_filter.box_argmax      (line 7)
    G  = G(|i - i_c|) G(|j - j_c|)                        butterworth.butterworth_window
    w  = 1[G > threshold]  (or w = G)                     Algorithm 1 line 5
    z  = weighted 2-GMM over (R, G, B, y, x) of x         gmm.fit_gmm                (line 8)
    L  = z_object * restriction                           (Algorithm 1 line 11)

Choices (see ``docs/method.md``):

- The argmax is taken over the box sums Q' (line 6), not over Q as line 7 literally writes; ties go
  to the first maximum in row-major order.
- The object is the component with the higher responsibility at the window centre
  (``object_rule="centre"``); ``"second"`` takes component 2 as Algorithm 1 line 11 does.
- L is localized: ``restrict="window"`` (default) multiplies the object responsibility by the hard
  window 1[G > threshold], ``"butterworth"`` by G, ``"none"`` returns the responsibility over the
  whole image as Algorithm 1 does (pixels outside the window still get responsibilities from their
  features under the fitted parameters).
- Degenerate windows (fewer than two weighted pixels, or weighted colour variance below
  ``min_colour_var``) get L = the window itself (1[G > threshold], or G for ``restrict="butterworth"``).
- ``connected=True`` (not in the paper) keeps only the pixels of L that are 8-connected to the
  window's centre through unexplained pixels (``connected.py``).
- With hard weights the GMM only sees the pixels of the window's footprint G > threshold (the same
  offsets from the centre in every image); pixels of zero weight do not change a weighted GMM, so
  this is exact and makes the cost independent of the image size.

Everything runs under ``torch.no_grad()``: the module is not trained and returns detached tensors.
"""

from .box_filter import box_argmax, box_sum
from .butterworth import butterworth_1d, butterworth_radius, butterworth_window
from .gmm import GMMResult, fit_gmm, pixel_features
from .pipeline import LocalizeResult, WindowPixels, cut, initial_means, localize, locate, window_pixels
from .quality import quality_map

__all__ = [
    "GMMResult",
    "LocalizeResult",
    "WindowPixels",
    "box_argmax",
    "box_sum",
    "butterworth_1d",
    "butterworth_radius",
    "butterworth_window",
    "cut",
    "fit_gmm",
    "initial_means",
    "locate",
    "localize",
    "pixel_features",
    "quality_map",
    "window_pixels",
]
