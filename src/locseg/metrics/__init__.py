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

Where things live: ``_tables`` (input checks, dense label ids, contingency tables), ``rand_index``
(ARI), ``mutual_info`` (AMI), ``covering`` (mSC, SC), ``labels`` (``masks_to_labels`` and all
label scores from one set of tables), ``overlap`` (IoU, ReDO's IoU), ``locations`` (location
error, matched centres) and ``summary`` (``aggregate``). This file only re-exports.

Example:
    >>> import torch
    >>> true = torch.tensor([[[0, 1, 1], [0, 2, 2]]])  # (1, 2, 3): background 0, objects 1 and 2
    >>> pred = torch.tensor([[[5, 7, 7], [7, 3, 3]]])  # predicted labels need not match
    >>> ari(true, pred, ignore_index=0).tolist()  # foreground ARI: the objects are found exactly
    [1.0]
    >>> round(ari(true, pred).item(), 4)  # with the background: one background pixel is wrong
    0.4444
"""

from ._tables import ArrayLike
from .covering import segmentation_covering
from .labels import label_scores, masks_to_labels
from .locations import location_error, matched_locations
from .mutual_info import ami
from .overlap import iou, redo_iou
from .rand_index import ari
from .summary import ScoreSummary, aggregate

__all__ = [
    "ArrayLike",
    "ScoreSummary",
    "aggregate",
    "ami",
    "ari",
    "iou",
    "label_scores",
    "location_error",
    "masks_to_labels",
    "matched_locations",
    "redo_iou",
    "segmentation_covering",
]
