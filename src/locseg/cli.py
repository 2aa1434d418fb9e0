"""Command line: ``locseg <command>``; a thin layer that turns arguments into library calls.

Errors a user can cause are printed as one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import re
import sys
from pathlib import Path

log = logging.getLogger("locseg")


def _is_count(key: str, value: object) -> bool:
    """Scores carry counts (``num_images``, ``*_defined``) as floats; they print as integers."""
    return (key == "num_images" or key.endswith("_defined")) and isinstance(value, float) and value.is_integer()


def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else int(v) if _is_count(k, v) else v)
            for k, v in d.items()}


def _print_table(title: str, values: dict) -> None:
    print(title)
    width = max(len(k) for k in values) if values else 0
    for k, v in values.items():
        if _is_count(k, v):
            v = int(v)
        print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")


def _print_objects(scores: dict, names: list[str]) -> None:
    """One row per named object: true centre, matched slot centre, error and the paper's value."""
    names = [n for n in names if f"loc_{n}_error" in scores]
    if not names:
        return
    width = max(len(n) for n in names)

    def pair(name: str, what: str) -> str:
        y, x = scores.get(f"loc_{name}_{what}_y"), scores.get(f"loc_{name}_{what}_x")
        return "      --      " if y is None else f"({y:.3f}, {x:.3f})"

    print("object locations, normalised (y, x), means over the frames where the object is visible:")
    print(f"  {'object':<{width}}  frames  true            found           error   paper Table 2")
    for n in names:
        print(f"  {n:<{width}}  {int(scores[f'loc_{n}_error_defined']):>6}  {pair(n, 'true')}  {pair(n, 'found')}  "
              f"{scores[f'loc_{n}_error']:.4f}  {pair(n, 'paper')}")


# --------------------------------------------------------------------------- data


def cmd_generate(args: argparse.Namespace) -> None:
    from .data import DataError, multi_dsprites

    if args.dataset == "montezuma":
        from .data import montezuma

        if args.frames is None:
            raise DataError("generate montezuma needs --frames N (training frames, e.g. 10000)")
        info = montezuma.generate(args.out, args.frames, args.num_test, args.seed, overwrite=args.overwrite,
                                  progress=not args.no_progress)
        print(f"wrote {args.frames} train + {args.num_test} test frames (montezuma, seed {args.seed}) "
              f"to {args.out} in {info['seconds']:.1f} s")
        return
    if args.frames is not None:
        raise DataError("--frames is for montezuma; multi-dsprites takes --num-train")
    info = multi_dsprites.generate(args.out, args.variant, args.num_train, args.num_test, args.seed,
                                   overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {args.num_train} train + {args.num_test} test images ({args.variant}, seed {args.seed}) "
          f"to {args.out} in {info.get('seconds', float('nan')):.1f} s")


def cmd_download(args: argparse.Namespace) -> None:
    from .data import flowers

    status = flowers.download(args.root, base_url=args.url or flowers.BASE_URL, progress=not args.no_progress)
    for name, state in status.items():
        print(f"  {name:<22} {state}")
    print(f"Flowers files ready in {args.root} (train with --data {args.root})")


def cmd_convert(args: argparse.Namespace) -> None:
    if args.dataset == "flowers":
        from .data import flowers

        if args.root is None:
            raise ValueError("convert flowers needs --root (the folder holding jpg/, segmim/, setid.mat)")
        info = flowers.convert(args.root, args.out, image_resample=args.image_resample, overwrite=args.overwrite,
                               progress=not args.no_progress)
        print(f"converted {info['counts']} Flowers images (ReDO's protocol) to {args.out} in {info['seconds']:.1f} s")
        return
    if args.dataset == "image-folder":
        from .data import image_folder

        if args.file is None:
            raise ValueError("convert image-folder needs the folder (holding images/ and optionally masks/)")
        info = image_folder.convert(args.file, args.out, size=args.size, overwrite=args.overwrite,
                                    progress=not args.no_progress)
        print(f"converted {info['counts']} images ({'with' if info['masks'] else 'without'} masks) to {args.out}")
        return
    from .data import multi_dsprites_official

    if args.file is None or args.variant is None:
        raise ValueError("convert multi-dsprites needs FILE.tfrecords and --variant")
    info = multi_dsprites_official.convert(args.file, args.variant, args.out, num_train=args.num_train,
                                           num_test=args.num_test, overwrite=args.overwrite,
                                           progress=not args.no_progress)
    print(f"converted {args.file} to {args.out}: {info}")


def cmd_show(args: argparse.Namespace) -> None:
    from . import viz
    from .data import load_split

    data = load_split(args.data, args.split)
    viz.dataset_grid(data, args.out, num=args.num, seed=args.seed, progress=not args.no_progress)
    print(f"wrote {args.out}")


# --------------------------------------------------------------------------- models


def cmd_train(args: argparse.Namespace) -> int:
    from . import config as config_lib
    from .train import fit

    cfg = config_lib.load(args.config, args.overrides)
    result = fit(cfg, args.data, args.out, device=args.device, resume=args.resume,
                 progress=not args.no_progress, stop_at=args.stop_at)
    if not result.main:  # ranks > 0 of a torchrun job: rank 0 reports
        return 130 if result.status == "interrupted" else 0
    print(f"{result.status} at step {result.step}; checkpoint {Path(args.out) / 'checkpoint.pt'}")
    if result.status == "interrupted":
        print("continue with the same command and --resume")
        return 130  # the shell's status for Ctrl-C: a script can tell "interrupted" from "done"
    if result.metrics:
        _print_table(f"evaluation (test split, {int(result.metrics['num_images'])} images):", result.metrics)
    else:
        print("evaluation skipped: the dataset has no test split")
    return 0


def _baseline_model(args: argparse.Namespace):
    from . import config as config_lib
    from .models.baselines import build_baseline

    cfg = config_lib.load(args.config, args.overrides)
    return build_baseline(args.baseline, args.num_slots, cfg.model.segmenter.localization), cfg


def cmd_evaluate(args: argparse.Namespace) -> None:
    from . import checkpoint
    from .data import load_split
    from .inference import evaluate

    if (args.checkpoint is None) == (args.baseline is None):
        raise ValueError("give exactly one of --checkpoint (a trained model) or --baseline NAME")
    if args.baseline:
        model, cfg = _baseline_model(args)
        split = load_split(args.data, args.split)
        size = int(split["images"].shape[1])  # baselines run at the data's own resolution
        label = f"baseline {args.baseline}"
    else:
        model, cfg, _ = checkpoint.load_model(args.checkpoint, args.device)
        split = load_split(args.data, args.split)
        size = cfg.data.image_size
        label = str(args.checkpoint)
    scores = evaluate(model, split, args.device, size, args.num_images, cfg.eval.batch_size, cfg.train.seed,
                      progress=not args.no_progress)
    objects = split.get("meta", {}).get("objects") or []
    _print_table(f"{label} on the {args.split} split of {args.data}:",
                 {k: v for k, v in scores.items() if not k.startswith("loc_")})
    _print_objects(scores, objects)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_json_safe(scores), indent=2) + "\n")
        print(f"wrote {args.json}")


def cmd_segment(args: argparse.Namespace) -> None:
    from . import checkpoint, segment

    model, cfg, _ = checkpoint.load_model(args.checkpoint, args.device)
    info = segment.segment_to_npz(model, args.input, args.out, cfg.data.image_size, args.device, cfg.eval.batch_size,
                                  cfg.train.seed, png=args.png, strict=args.strict, progress=not args.no_progress)
    skipped = f" ({len(info['skipped'])} unreadable skipped: {', '.join(info['skipped'])})" if info["skipped"] else ""
    print(f"segmented {info['written']} image(s) into {model.num_slots} slots{skipped}; wrote {args.out}")
    if args.png:
        print(f"wrote overlays to {args.png}")


def cmd_bench(args: argparse.Namespace) -> None:
    from .bench import suite

    results = suite.run([args.what] if args.what else suite.BENCHMARKS, quick=args.quick, device=args.device)
    if args.json:
        print(json.dumps({name: _json_safe(result) for name, result in results.items()}))
    else:
        for name, result in results.items():
            _print_table(f"bench {name}:", result)


# --------------------------------------------------------------------------- parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, where it has one (not for flags or required options)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="locseg", description="Unsupervised object segmentation with an explicit "
                                "localization module: generate data, train, evaluate, segment.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages; show tracebacks")
    p.add_argument("--version", action="version", version=f"locseg {__version__}")
    with_defaults = functools.partial(argparse.ArgumentParser, formatter_class=_HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=with_defaults)

    g = sub.add_parser("generate", help="generate a synthetic dataset")
    g.add_argument("dataset", choices=["multi-dsprites", "montezuma"])
    g.add_argument("--variant", default="colored_on_grayscale",
                   help="colored_on_grayscale (the paper's and MONet's) | colored_on_colored | binarized")
    g.add_argument("--num-train", type=int, default=60000, help="training images (literature: 60000)")
    g.add_argument("--frames", type=int, default=None, help="montezuma: training frames (10000 in about 20 s; "
                   "needs pip install 'locseg[atari]')")
    g.add_argument("--num-test", type=int, default=320, help="test images or frames (literature: 320)")
    g.add_argument("--seed", type=int, default=0, help="train and test use independent seeds derived from it")
    g.add_argument("--out", required=True, help="output dataset directory")
    g.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out (a folder "
                   "holding anything else is refused)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    d = sub.add_parser("download", help="fetch a real dataset's official files (resumable, checksummed)")
    d.add_argument("dataset", choices=["flowers"])
    d.add_argument("--root", required=True, help="folder for jpg/, segmim/, setid.mat (files already there are kept)")
    d.add_argument("--url", default=None, help="base URL of the files (default: the Oxford VGG site; or a mirror)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_download)

    c = sub.add_parser("convert", help="convert DeepMind's multi_dsprites TFRecord file (no TensorFlow needed), "
                       "Flowers' official files, or a folder of images into the dataset layout")
    c.add_argument("dataset", choices=["multi-dsprites", "flowers", "image-folder"])
    c.add_argument("file", nargs="?", default=None,
                   help="multi_dsprites_<variant>.tfrecords, or the image folder (images/ [+ masks/])")
    c.add_argument("--variant", default=None, help="multi-dsprites: colored_on_grayscale | colored_on_colored | "
                   "binarized")
    c.add_argument("--root", default=None, help="flowers: the folder holding jpg/, segmim/, setid.mat")
    c.add_argument("--image-resample", default="nearest", choices=["nearest", "bilinear"],
                   help="flowers: filter for the photographs (nearest is ReDO's; masks are always nearest)")
    c.add_argument("--size", type=int, default=128, help="image-folder: side every image is resized to "
                   "(use the config's data.image_size)")
    c.add_argument("--out", required=True, help="output dataset directory")
    c.add_argument("--num-train", type=int, default=None, help="records for train (omitted: all but the test ones)")
    c.add_argument("--num-test", type=int, default=320, help="multi-dsprites: records for the test split")
    c.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out (a folder "
                   "holding anything else is refused)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_convert)

    s = sub.add_parser("show", help="PNG grid of dataset samples with their label maps")
    s.add_argument("data", help="dataset directory")
    s.add_argument("--out", required=True, help="PNG file to write (a path ending in .png)")
    s.add_argument("--split", default="train", help="split to draw samples from")
    s.add_argument("--num", type=int, default=16, help="number of samples, 8 per row")
    s.add_argument("--seed", type=int, default=0, help="seed that picks the samples")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_show)

    t = sub.add_parser("train", help="train a model (the paper's by default, or MONet)")
    t.add_argument("--config", default=None, help="YAML config (configs/*.yaml); defaults where keys are missing")
    t.add_argument("--data", required=True, help="dataset directory with train (and test) splits")
    t.add_argument("--out", required=True, help="run directory (checkpoint.pt, config.yaml, CSV logs, figures)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, anywhere on the line, e.g. train.max_steps=30 "
                   "model.segmenter.localization.sigma1=0.05")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped "
                   "(same config; Ctrl-C saves a checkpoint and exits with status 130)")
    t.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    t.add_argument("--stop-at", type=int, default=None, help="stop after this step (schedule unchanged)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    from .models.baselines import BASELINES

    e = sub.add_parser("evaluate", help="score a checkpoint (or a non-trainable baseline) on a dataset split")
    e.add_argument("--checkpoint", default=None, help="checkpoint of a trained model (RUN/checkpoint.pt)")
    e.add_argument("--baseline", default=None, choices=BASELINES,
                   help="score a non-trainable baseline instead of a checkpoint")
    e.add_argument("--num-slots", type=int, default=6, help="K of the baseline, its number of segments (k of "
                   "k-means; 6 = background + 5 for Multi-dSprites; Montezuma: 10 = background + 9 objects)")
    e.add_argument("--config", default=None, help="config whose localization settings the oracle baseline uses")
    e.add_argument("overrides", nargs="*", help="dotted overrides of --config, anywhere on the line (oracle "
                   "baseline only)")
    e.add_argument("--data", required=True, help="dataset directory")
    e.add_argument("--split", default="test", help="split to score (needs labels for any score)")
    e.add_argument("--num-images", type=int, default=None, help="first N >= 1 images only (omitted: all)")
    e.add_argument("--json", default=None, help="also write the scores to this JSON file")
    e.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("segment", help="segment your own images (file, folder or .npy) at their own size")
    m.add_argument("--checkpoint", required=True, help="checkpoint of a trained model (RUN/checkpoint.pt)")
    m.add_argument("--input", required=True, help="image file, folder of PNG/JPEG files, or .npy (N,H,W,3) uint8")
    m.add_argument("--out", required=True, help="output .npz file: names, labels, masks, locations (y, x), areas "
                   "(see the README for the layout)")
    m.add_argument("--png", default=None, help="folder for overlay figures")
    m.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of "
                   "reporting and skipping it")
    m.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_segment)

    b = sub.add_parser("bench", help="speed benchmarks, measured side by side in one run")
    from .bench.suite import BENCHMARKS

    b.add_argument("what", nargs="?", default=None, choices=BENCHMARKS, help="one benchmark (omitted: all)")
    b.add_argument("--json", action="store_true", help="print one JSON object, one section per benchmark")
    b.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (models and data)")
    b.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke test)")
    b.set_defaults(func=cmd_bench)
    return p


_OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=.*", re.DOTALL)  # key.sub=value


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, str | None]:
    """Parse the command line; dotted overrides may stand anywhere, also between and after options.

    argparse gives a ``nargs="*"`` positional only the first run of overrides; the others come back
    unrecognised and join ``args.overrides`` in command-line order.

    Returns:
        the arguments, and a one-line error for an argument that is neither an option nor (for a
        command that takes them) a ``key.sub=value`` override, else None.
    """
    args, extras = build_parser().parse_known_args(argv)
    takes_overrides = isinstance(getattr(args, "overrides", None), list)
    for arg in extras:
        if takes_overrides and _OVERRIDE.fullmatch(arg):
            args.overrides.append(arg)
        else:
            hint = "; config overrides look like key.sub=value" if takes_overrides else ""
            return args, f"unrecognized argument {arg!r} (see locseg {args.command} --help{hint})"
    return args, None


def main(argv: list[str] | None = None) -> int:
    args, usage_error = parse_args(argv)
    if usage_error is not None:
        print(f"locseg {args.command}: error: {usage_error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .segment import InputError
    from .train import TrainingError

    user_errors = (ConfigError, DataError, CheckpointError, TrainingError, InputError, ValueError,
                   FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError)
    try:
        if getattr(args, "device", None) is not None:
            from .train import resolve_device

            resolve_device(args.device)  # before loading anything onto it
        status = args.func(args)
    except user_errors as e:
        if args.verbose:
            raise
        print(f"locseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"locseg {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
