"""Typed, frozen run configuration: YAML files plus ``key.sub=value`` overrides.

A :class:`Config` has four sections (``data``, ``model``, ``train``, ``eval``). It is built from a
YAML file (any key left out keeps its default), then from dotted command-line overrides such as
``train.max_steps=30`` or ``model.segmenter.localization.box_size=11``. The resolved config is
saved with every run and inside every checkpoint; :func:`diff` shows what differs between two.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be applied (unknown key, wrong type, bad value)."""


@dataclass(frozen=True)
class LocalizationConfig:
    """The non-trainable localization module (paper sections 2.3-2.4, Algorithm 1)."""

    sigma1: float = 0.05  # Q = exp(-s * sum_c (x_re - x)^2 / (2 * sigma1)); see docs/method.md
    sigma_squared: bool = False  # True: divide by 2 * sigma1**2 instead (the other reading)
    box_size: int = 9  # side of the all-ones box filter over s * Q (odd)
    butterworth_f: float = 8.0  # cut-off distance in pixels of G(r) = 1/sqrt(1 + (r/f)^(2n))
    butterworth_n: float = 2.0  # order of the Butterworth window
    em_iters: int = 10  # EM iterations of the two-component GMM ("L iterations", Algorithm 1)
    em_tol: float = 1e-4  # stop early when the weighted mean log-likelihood gains less than this
    # "paper" (mu1 = 0, mu2 ~ U(0,1)) | "window" (mu1 = outside, mu2 = centre)
    gmm_init: Literal["paper", "window"] = "paper"
    covariance: Literal["full", "diag"] = "full"
    weights: Literal["hard", "soft"] = "hard"  # "hard": w = 1[G > threshold] (Algorithm 1) | "soft": w = G
    threshold: float = 0.5
    reg_covar: float = 1e-4  # added to covariance diagonals, as sklearn's reg_covar
    object_rule: Literal["centre", "second"] = "centre"  # which component is the object: "centre" | "second"
    # L = object responsibility * 1[G > threshold] ("window") | * G ("butterworth") | everywhere ("none",
    # Algorithm 1 line 11 as written); "window" keeps every object mask inside its window
    restrict: Literal["window", "butterworth", "none"] = "window"
    # GMM weights also multiplied by the scope s (w = 1[G > threshold] * s): pixels already
    # explained by earlier steps stop pulling the clusters (section 2.4's motivation); False = paper
    scope_weights: bool = False
    # rounds of a second, colour-gated 2-GMM split of the object component (localization/refine.py);
    # a split is kept where the two sub-means differ in RGB by more than refine_gap. 0 = the paper
    refine: int = 0
    refine_gap: float = 0.15
    # windows with < 2 weighted pixels or weighted colour variance (summed over RGB) below this are
    # degenerate: L = the window itself (1[G > threshold], or G for restrict="butterworth")
    min_colour_var: float = 1e-6
    # L keeps only its pixels (L > threshold, s > 0.5) 8-connected to the window's centre
    # (localization/connected.py): one-colour sprites that do not touch are told apart by position.
    # False = the paper
    connected: bool = False
    # EM iterations of a position-only 2-GMM split of the unexplained blob at the centre, used where
    # that blob reaches beyond L (touching one-colour sprites; localization/connected.py). 0 = off
    blob_split: int = 0
    # erosions tried to cut the unexplained blob at the centre where touching sprites meet (a narrow
    # neck); where one separates it, L is the centre's side (localization/connected.py). 0 = off
    neck_split: int = 0
    neck_min_pixels: int = 4  # both sides of a cut must keep at least this many eroded pixels
    # cut the blob (or the neck cut's part of it) along the line between two dents of its outline
    # (concavities of its convex hull) at least this many pixels deep; L is the centre's side
    # (localization/concave.py). 0 = off
    concave_split: float = 0.0
    concave_min_pixels: int = 60  # both sides of a concave cut must keep at least this many pixels
    concave_rounds: int = 2  # cuts in a row, each inside the centre's side of the one before


@dataclass(frozen=True)
class SegmenterConfig:
    """The paper's iterative encoder-decoder (sections 2.5-2.6, Algorithm 2, Eq. 1)."""

    arch: Literal["vae", "skip_ae"] = "vae"  # "vae" (simple data) | "skip_ae" (complex data: Flowers, Atari)
    num_slots: int = 6  # K: background + K-1 objects
    latent_dim: int = 32
    channels: tuple[int, ...] = (32, 32, 64, 64)  # encoder widths, one per stride-2 stage
    beta: float = 0.5  # weight of the prior term (1 - m)(x_re - zeta)^2
    zeta: float = 0.0  # constant prior value for masked-out pixels
    gamma: float = 1e-3  # weight of the KL term (0 for the auto-encoder)
    mask_recon: bool = True  # x_re := m * x_re inside Eq. 1 (section 2.6, last paragraph)
    mask_recon_grad: bool = True  # gradients flow through m in m * x_re (False: m is detached there)
    # x^{gt,(k)} of Eq. 1: "input" (x for every k) | "masked" (m_k * x, the slot's share of the image)
    recon_target: Literal["input", "masked"] = "input"
    # VAE decoder: "deconv" (last stage 32 channels at full size) | "light"
    decoder: Literal["deconv", "light"] = "deconv"
    # quality normalisation of the background step: "fixed" (sigma1, as Algorithm 2) | "relative"
    # (Q_1 = exp(-e / (2 (bg_sigma_floor + bg_rel_scale * median_pixels(e)))), per image, detached)
    bg_quality: Literal["fixed", "relative"] = "fixed"
    bg_rel_scale: float = 4.0
    bg_sigma_floor: float = 0.005
    sigma1_objects: float = 0.0  # sigma1 of the object steps k >= 2 (0: the same sigma1)
    # the background step's decoder: "shared" (g_theta, the paper) | "flat" (one colour per image
    # from a small separate head: it cannot draw sprites)
    background: Literal["shared", "flat"] = "shared"
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)


@dataclass(frozen=True)
class MonetConfig:
    """MONet (Burgess et al. 2019, arXiv 1901.11390)."""

    num_slots: int = 6
    latent_dim: int = 16
    unet_blocks: int = 5  # down/up-sampling levels of the attention U-Net
    unet_channels: int = 32
    unet_hidden: int = 128  # hidden width of the attention U-Net's bottleneck MLP (paper: 128, 128)
    vae_channels: int = 32  # encoder convs use (c, c, 2c, 2c) channels, the broadcast decoder c
    vae_hidden: int = 256  # hidden width of the component VAE encoder's MLP (paper: 256)
    beta: float = 0.5
    gamma: float = 0.5
    sigma_bg: float = 0.09
    sigma_fg: float = 0.11


@dataclass(frozen=True)
class ModelConfig:
    name: str = "segmenter"  # a name of locseg.models.MODELS: "segmenter" (the paper's model) | "monet"
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    monet: MonetConfig = field(default_factory=MonetConfig)


@dataclass(frozen=True)
class DataConfig:
    # the dataset the run is for, a name of locseg.data.DATASETS; training warns when --data holds another
    dataset: str = "multi_dsprites"
    image_size: int = 64  # models see images at image_size x image_size


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 32
    max_steps: int = 10000
    max_minutes: float = 0.0  # cap on training wall-clock minutes (evaluations excluded), 0 = none
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 100
    grad_clip: float = 5.0  # max global gradient norm, 0 = off
    amp: bool = True  # bfloat16 autocast on CUDA only; ignored on CPU
    num_threads: int = 0  # torch CPU threads, 0 = torch default
    log_every: int = 10
    eval_every: int = 500  # steps between evaluations on the test split (0 = only at the end)
    eval_images: int = 128  # test images used by the periodic evaluation
    checkpoint_every: int = 200
    max_bad_steps: int = 20  # consecutive NaN/Inf losses before the run stops


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 64


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------- conversion


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (tuples become lists) suitable for YAML/JSON and checkpoints."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _one_of(values: tuple[str, ...] | list[str]) -> str:
    """``a, b or c``."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, key) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: union types are not supported")  # not used in this config
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key} must be {_one_of(typing.get_args(hint))}, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def from_dict(cls: type, data: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys raise :class:`ConfigError`."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"unknown key(s) {', '.join(prefix + u for u in unknown)} in {where}; "
                          f"valid: {', '.join(sorted(names))}")
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name}: expected a mapping, got {value!r}")
            kwargs[name] = from_dict(hint, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"unknown config key {key!r}")
        node = node[p]
    if parts[-1] not in node:
        raise ConfigError(f"unknown config key {key!r}")
    node[parts[-1]] = value


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key.sub=value`` strings (values parsed as YAML: 3, 0.1, true, [1,2], text)."""
    tree = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse value ({e.problem})") from None
        _set_dotted(tree, key.strip(), value)
    return validate(from_dict(Config, tree))


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (defaults where keys are missing) and apply dotted overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
    cfg = validate(from_dict(Config, tree))
    return apply_overrides(cfg, overrides or [])


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def choices(cls: type, name: str) -> tuple[str, ...]:
    """The allowed values of the ``Literal`` field ``name`` of config dataclass ``cls``."""
    return typing.get_args(typing.get_type_hints(cls)[name])


def check_choices(cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` where a ``Literal`` field of ``cfg`` (recursively) holds another value.

    The option lists live only in the ``Literal`` types above; this is the one place they are checked
    (the config loader calls it, and so does code handed a config built by hand).
    """
    for f in dataclasses.fields(cfg):
        value, hint = getattr(cfg, f.name), typing.get_type_hints(type(cfg))[f.name]
        if dataclasses.is_dataclass(value):
            check_choices(value, f"{prefix}{f.name}.")
        elif typing.get_origin(hint) is Literal:
            _coerce(value, hint, prefix + f.name)


def validate(cfg: Config) -> Config:
    """Check values that types alone do not catch."""
    from .data import DATASETS
    from .models import MODELS

    check_choices(cfg)
    seg, loc, tr = cfg.model.segmenter, cfg.model.segmenter.localization, cfg.train
    checks = [
        (cfg.model.name in MODELS, f"model.name must be {_one_of(list(MODELS))}, got {cfg.model.name!r}"),
        (cfg.data.dataset in DATASETS, f"data.dataset must be {_one_of(DATASETS)}, got {cfg.data.dataset!r}"),
        (seg.num_slots >= 2, "model.segmenter.num_slots must be >= 2"),
        (seg.bg_rel_scale > 0 and seg.bg_sigma_floor > 0, "bg_rel_scale and bg_sigma_floor must be > 0"),
        (seg.sigma1_objects >= 0, "model.segmenter.sigma1_objects must be >= 0"),
        (cfg.model.monet.num_slots >= 2, "model.monet.num_slots must be >= 2"),
        (loc.box_size >= 1 and loc.box_size % 2 == 1, "model.segmenter.localization.box_size must be odd and >= 1"),
        (loc.sigma1 > 0, "model.segmenter.localization.sigma1 must be > 0"),
        (loc.butterworth_f > 0 and loc.butterworth_n > 0, "butterworth_f and butterworth_n must be > 0"),
        (loc.em_iters >= 1, "model.segmenter.localization.em_iters must be >= 1"),
        (0 <= loc.threshold < 1, "localization.threshold must be in [0, 1)"),
        (loc.reg_covar > 0, "localization.reg_covar must be > 0"),
        (loc.em_tol >= 0, "localization.em_tol must be >= 0"),
        (loc.min_colour_var >= 0, "localization.min_colour_var must be >= 0"),
        (loc.refine >= 0 and loc.refine_gap > 0, "localization.refine must be >= 0 and refine_gap > 0"),
        (loc.blob_split >= 0, "localization.blob_split must be >= 0"),
        (loc.neck_split >= 0 and loc.neck_min_pixels >= 1,
         "localization.neck_split must be >= 0 and localization.neck_min_pixels >= 1"),
        (loc.concave_split >= 0 and loc.concave_min_pixels >= 1 and loc.concave_rounds >= 1,
         "localization.concave_split must be >= 0, concave_min_pixels and concave_rounds >= 1"),
        (cfg.data.image_size >= 16, "data.image_size must be >= 16"),
        (tr.batch_size >= 1, "train.batch_size must be >= 1"),
        (tr.max_steps >= 0, "train.max_steps must be >= 0"),
        (tr.eval_images >= 1, "train.eval_images must be >= 1 (set train.eval_every=0 to skip periodic evaluation)"),
        (tr.lr > 0, "train.lr must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return cfg


def diff(a: Config, b: Config) -> list[str]:
    """Lines ``key: a -> b`` for every leaf that differs between two configs."""

    def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in tree.items():
            if isinstance(v, dict):
                out.update(flat(v, prefix + k + "."))
            else:
                out[prefix + k] = v
        return out

    fa, fb = flat(to_dict(a)), flat(to_dict(b))
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
