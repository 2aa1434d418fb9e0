"""Montezuma's Revenge: frames of the first room with instance labels from RAM and sprite colours.

Frames come from the Arcade Learning Environment (``ale-py``, GPL-2.0, an optional extra:
``pip install locseg[atari]``) through ``gymnasium`` (``ALE/MontezumaRevenge-v5``, one emulator
frame per step, no sticky actions), so the same seed gives the same bytes.

**Policy.** The paper trains on frames of a random policy and tests on frames of a policy that
clears the room. Without a trained policy we explore (after Go-Explore): an archive keeps one saved
emulator state per *cell* reached (agent position in 8x8 blocks, inventory and room-object bytes); each
segment restores a cell's state, chosen with weight ``1 / sqrt(1 + times chosen)``, and plays
random actions held for random durations (1-32 frames) for up to :data:`SEGMENT_FRAMES` frames.
Every :data:`FRAME_STRIDE`-th frame of a segment is kept. A segment ends when the agent loses a
life or leaves the room; the frames of its last :data:`DEATH_MARGIN` emulator frames are dropped,
so death animations (which start when the life counter drops) and frames of another room are never
kept. The agent thus reaches every floor, the three ladders, the rope, the key and the doors.

**Labels** (the rule; ``docs/montezuma.md`` shows it on frames). Rows above :data:`ROOM_TOP`
(score, lives, inventory) are background. In the room, a pixel gets the id of

=====  =====================  ===========================================================
id     object                 pixels
=====  =====================  ===========================================================
1      agent                  any of the agent's three colours (red, skin, pink) anywhere
2      skull                  the skull's white anywhere
3      key                    yellow inside the key's box
4, 5   left, right door       yellow inside the door's box
6-8    middle, bottom-left,   the wall green inside the ladder's box (rails and rungs; the
       bottom-right ladder    black gaps between rungs are background)
9      rope                   yellow inside the rope's box
=====  =====================  ===========================================================

and 0 otherwise. The agent's and the skull's colours occur nowhere else in the room, and the
agent is drawn over ladders and the rope, so a pixel has one id. An object is visible when it has
a pixel (the key disappears once taken, a door once opened); its centre is the centroid of its
pixels, normalised to the full 210x160 frame: ``((row + 0.5) / 210, (col + 0.5) / 160)``.

**RAM** (measured here, see ``tests/test_montezuma.py``): byte 3 is the room (1 = the first),
byte 42 the agent's x (its sprite spans columns ``x - 2 .. x + 7``), byte 43 its y (the sprite's
bottom row is ``327 - y``), byte 47 the skull's x (its sprite starts at column ``x + 32 .. 33``).

Each split holds, for N frames and the 9 objects of :data:`OBJECTS` (slot j is label j + 1):
``images`` (N, 210, 160, 3) uint8, ``labels`` (N, 210, 160) uint8, ``centres`` (N, 9, 2) float32,
``visibility`` (N, 9) bool and ``ram`` (N, 128) uint8.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from locseg.data import DataError, write_split
from locseg.data.io import atomic_output_dir, label_statistics, split_seeds

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different data."""

ENV_ID = "ALE/MontezumaRevenge-v5"
INSTALL_HINT = "pip install 'locseg[atari]'"
HEIGHT, WIDTH = 210, 160

OBJECTS: tuple[str, ...] = ("agent", "skull", "key", "left_door", "right_door", "middle_ladder",
                            "bottom_left_ladder", "bottom_right_ladder", "rope")
"""Object names; label j + 1 is ``OBJECTS[j]``."""

PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "agent": (0.231, 0.531), "skull": (0.798, 0.489), "key": (0.378, 0.067), "left_door": (0.090, 0.137),
    "right_door": (0.282, 0.880), "middle_ladder": (0.365, 0.497), "bottom_left_ladder": (0.595, 0.180),
    "bottom_right_ladder": (0.595, 0.827)}
"""The paper's Table 2: each object's location found by its model, normalised (y, x); no rope."""

RAM_ROOM, RAM_AGENT_X, RAM_AGENT_Y, RAM_SKULL_X = 3, 42, 43, 47
RAM_INVENTORY, RAM_ROOM_OBJECTS = 65, 66  # 0 -> 2 when the key is taken; 15 -> 14 (the key gone from the room)
FIRST_ROOM = 1
ROOM_TOP = 47
"""First row of the room; the rows above hold the score, the lives and the inventory."""

AGENT_COLOURS = ((200, 72, 72), (210, 182, 86), (228, 111, 111))
SKULL_COLOUR = (236, 236, 236)
YELLOW = (232, 204, 99)  # key, doors and rope
WALL_GREEN = (66, 158, 130)  # walls, floors and ladders

STATIC_BOXES: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    # object: ((top, bottom, left, right) half-open pixel box, colour of its pixels)
    "key": ((98, 116, 12, 21), YELLOW),
    "left_door": ((54, 92, 20, 24), YELLOW),
    "right_door": ((54, 92, 136, 140), YELLOW),
    "middle_ladder": ((96, 135, 72, 88), WALL_GREEN),
    "bottom_left_ladder": ((139, 180, 16, 32), WALL_GREEN),
    "bottom_right_ladder": ((139, 180, 128, 144), WALL_GREEN),
    "rope": ((96, 135, 111, 114), YELLOW),
}

FRAME_STRIDE = 4  # keep every 4th emulator frame of a segment (60 frames per second of play)
SEGMENT_FRAMES = 300  # emulator frames per exploration segment before restarting from the archive
HOLD_FRAMES = (1, 32)  # an action is held for U{1..32} frames
DEATH_MARGIN = 8  # emulator frames dropped before a lost life or leaving the room
CELL_SIZE = 8  # archive cell: agent RAM position in 8x8 blocks, plus the inventory and room-object bytes
WARMUP_FRAMES = 60  # NOOP frames after reset before the first saved state (the room is drawn)
SPREAD_FRAMES = 10_000  # generate(): each split explores at least this many frames and keeps evenly spaced ones
CHUNK = 64  # frames labelled per vectorised step (larger chunks fall out of cache: 8x slower)


def _code(rgb: tuple[int, int, int]) -> int:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def label_frames(images: np.ndarray) -> np.ndarray:
    """Instance labels of first-room frames by the rule in the module docstring.

    Args:
        images: (B, 210, 160, 3) uint8 frames of the first room.

    Returns:
        (B, 210, 160) uint8: 0 background, j + 1 for ``OBJECTS[j]``.
    """
    img = np.asarray(images)
    if img.ndim != 4 or img.shape[1:] != (HEIGHT, WIDTH, 3):
        raise DataError(f"expected (B, {HEIGHT}, {WIDTH}, 3) frames, got {img.shape}")
    code = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2]  # (B, H, W)
    labels = np.zeros(code.shape, dtype=np.uint8)  # (B, H, W)
    ids = {name: np.uint8(j + 1) for j, name in enumerate(OBJECTS)}
    for name, ((top, bottom, left, right), colour) in STATIC_BOXES.items():
        box = labels[:, top:bottom, left:right]  # (B, h, w) view
        box[code[:, top:bottom, left:right] == _code(colour)] = ids[name]
    room = code[:, ROOM_TOP:]  # (B, H - ROOM_TOP, W)
    labels[:, ROOM_TOP:][room == _code(SKULL_COLOUR)] = ids["skull"]
    labels[:, ROOM_TOP:][np.isin(room, [_code(c) for c in AGENT_COLOURS])] = ids["agent"]  # drawn on top
    return labels


def agent_columns_rows(ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the agent's sprite is expected from RAM.

    Args:
        ram: (..., 128) uint8 RAM.

    Returns:
        ``(columns, bottom)``: (..., 2) int the sprite's first and last column ``(x - 2, x + 7)``;
        (...,) int its bottom row ``327 - y`` (within 2 rows while standing, walking or climbing).
    """
    x = ram[..., RAM_AGENT_X].astype(np.int64)
    y = ram[..., RAM_AGENT_Y].astype(np.int64)
    return np.stack([x - 2, x + 7], -1), 327 - y


def _make_env(seed: int) -> Any:
    """The gymnasium environment, reset with ``seed`` (ALE seeds must fit 31 bits)."""
    try:
        import ale_py
        import gymnasium
    except ImportError:
        raise DataError(f"Montezuma's Revenge needs ale-py and gymnasium: {INSTALL_HINT}") from None
    gymnasium.register_envs(ale_py)
    env = gymnasium.make(ENV_ID, frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=int(seed) % (2**31))
    return env


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def collect_split(
    num: int,
    seed: int,
    spread: int = 0,
    progress: bool = False,
    out: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Collect and label ``num`` first-room frames with the exploring policy.

    Deterministic: the same (num, seed, spread) gives the same bytes. With ``spread <= num`` every
    candidate frame is kept and a larger ``num`` extends the same sequence.

    Args:
        num: number of frames, > 0.
        seed: seed of the policy (``numpy.random.default_rng``) and of the emulator's reset.
        spread: explore for ``max(num, spread)`` candidate frames and keep ``num`` evenly spaced
            ones, so that a small split (a test set) sees as much of the room as a large one.
        progress: show a tqdm bar over candidate frames.
        out: preallocated arrays to fill (e.g. memory-mapped ``.npy`` files), with the keys and
            shapes of the result; allocated in memory when ``None``.

    Returns:
        dict with ``images`` (N, 210, 160, 3) uint8, ``labels`` (N, 210, 160) uint8,
        ``centres`` (N, 9, 2) float32, ``visibility`` (N, 9) bool, ``ram`` (N, 128) uint8.

    Raises:
        DataError: non-positive ``num``, or ale-py / gymnasium not installed.
    """
    num = _check_count("frames", num)
    env = _make_env(seed)
    arrays = out if out is not None else allocate(num)
    try:
        _explore(env.unwrapped.ale, num, max(num, spread), np.random.default_rng(seed), arrays, progress)
    finally:
        env.close()
    m = len(OBJECTS)
    for start in range(0, num, CHUNK):
        sl = slice(start, min(start + CHUNK, num))
        labels = label_frames(arrays["images"][sl])  # (B, H, W)
        arrays["labels"][sl] = labels
        arrays["visibility"][sl], arrays["centres"][sl] = label_statistics(labels, m)
    return arrays


def allocate(num: int, folder: str | Path | None = None) -> dict[str, np.ndarray]:
    """Arrays for ``num`` frames: in memory, or memory-mapped ``.npy`` files in ``folder``."""
    m = len(OBJECTS)
    specs = {"images": ((num, HEIGHT, WIDTH, 3), np.uint8), "labels": ((num, HEIGHT, WIDTH), np.uint8),
             "centres": ((num, m, 2), np.float32), "visibility": ((num, m), np.bool_),
             "ram": ((num, 128), np.uint8)}
    if folder is None:
        return {k: np.empty(shape, dtype) for k, (shape, dtype) in specs.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {k: np.lib.format.open_memmap(folder / f"{k}.npy", mode="w+", dtype=dtype, shape=shape)
            for k, (shape, dtype) in specs.items()}


def _explore(ale: Any, num: int, spread: int, rng: np.random.Generator, out: dict[str, np.ndarray],
             progress: bool) -> None:
    """Fill ``out["images"][:num]`` and ``out["ram"][:num]`` with frames (see the module docstring).

    The exploration yields ``spread`` candidate frames, of which ``num`` evenly spaced ones are kept.
    """
    actions = list(ale.getMinimalActionSet())
    for _ in range(WARMUP_FRAMES):
        ale.act(actions[0])
    archive: dict[tuple[int, ...], list[Any]] = {}  # cell -> [state, times chosen]

    def cell_of(ram: np.ndarray) -> tuple[int, ...]:
        return (int(ram[RAM_AGENT_X]) // CELL_SIZE, int(ram[RAM_AGENT_Y]) // CELL_SIZE, int(ram[RAM_INVENTORY]),
                int(ram[RAM_ROOM_OBJECTS]))

    archive[cell_of(ale.getRAM())] = [ale.cloneState(), 0]
    seen = 0  # candidate frames so far; candidate c is kept when (c + 1) * num // spread steps up
    bar = tqdm(total=spread, desc="montezuma", unit="frame", disable=not progress)

    def emit(screen: np.ndarray, ram: np.ndarray) -> None:
        nonlocal seen
        kept = seen * num // spread
        if (seen + 1) * num // spread > kept:
            out["images"][kept], out["ram"][kept] = screen, ram
        seen += 1
        bar.update(1)

    while seen < spread:
        cells = list(archive)
        weights = np.array([1.0 / np.sqrt(1.0 + archive[c][1]) for c in cells])
        entry = archive[cells[rng.choice(len(cells), p=weights / weights.sum())]]
        entry[1] += 1
        ale.restoreState(entry[0])
        lives = ale.lives()
        pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (frame, screen, ram) not yet safe
        hold, action, ended = 0, actions[0], False
        for t in range(1, SEGMENT_FRAMES + 1):
            if hold == 0:
                action = actions[rng.integers(len(actions))]
                hold = int(rng.integers(HOLD_FRAMES[0], HOLD_FRAMES[1] + 1))
            hold -= 1
            ale.act(action)
            ram = ale.getRAM()
            if ale.lives() < lives or ram[RAM_ROOM] != FIRST_ROOM or ale.game_over():
                ended = True  # the death animation or another room follows: drop what is pending
                break
            cell = cell_of(ram)
            if cell not in archive:
                archive[cell] = [ale.cloneState(), 0]
            if t % FRAME_STRIDE == 0:
                pending.append((t, ale.getScreenRGB(), ram.copy()))
            while pending and pending[0][0] <= t - DEATH_MARGIN and seen < spread:
                emit(*pending.pop(0)[1:])
        if not ended:
            for _, screen, ram in pending[: spread - seen]:
                emit(screen, ram)
    bar.close()
    log.info("montezuma: %d of %d frames kept, from %d archive cells", num, spread, len(archive))


def generate(
    out_dir: str | Path,
    frames: int,
    num_test: int,
    seed: int,
    overwrite: bool = False,
    progress: bool = True,
    spread: int | None = None,
) -> dict[str, Any]:
    """Write a Montezuma's Revenge dataset directory with ``train`` and ``test`` splits.

    The splits use independent seeds derived from ``seed`` as in Multi-dSprites; each split's
    ``meta.json`` records ``dataset``, ``split``, ``seed``, ``split_seed`` (``collect_split(count,
    split_seed, spread)`` reproduces the split), ``count``, ``spread``, ``objects``, ``max_objects``,
    ``room``, ``frame_stride``, ``generator_version``, ``image_size`` and the ale-py / gymnasium versions.
    Arrays are written as memory-mapped files under a temporary sibling directory that is renamed
    into place once complete.

    Args:
        out_dir: dataset directory to create.
        frames: training frames, > 0.
        num_test: test frames, > 0.
        seed: master seed.
        overwrite: replace an existing non-empty ``out_dir``.
        progress: show tqdm bars.
        spread: each split explores ``max(count, spread)`` frames and keeps ``count`` evenly spaced
            ones (default :data:`SPREAD_FRAMES`), so a 320-frame test split is not all near the spawn.

    Returns:
        dict with ``out_dir``, ``counts`` ({split: n}), ``split_seeds``, ``seconds``.

    Raises:
        DataError: non-positive counts, ale-py missing, or ``out_dir`` not empty / not writable.
    """
    t0 = time.perf_counter()
    counts = {"train": _check_count("frames", frames), "test": _check_count("num_test", num_test)}
    _make_env(0).close()  # fail on a missing extra before creating anything
    from importlib.metadata import version

    spread = SPREAD_FRAMES if spread is None else int(spread)
    seeds = split_seeds(seed, tuple(counts))
    with atomic_output_dir(out_dir, overwrite) as tmp:
        for split, count in counts.items():
            t = time.perf_counter()
            arrays = allocate(count, tmp / split)
            collect_split(count, seeds[split], spread=spread, progress=progress, out=arrays)
            for arr in arrays.values():
                arr.flush()
            del arrays
            log.info("collected montezuma/%s: %d frames in %.1f s", split, count, time.perf_counter() - t)
            meta = {"dataset": "montezuma", "split": split, "seed": int(seed), "split_seed": seeds[split],
                    "count": count, "spread": max(count, spread), "objects": list(OBJECTS),
                    "max_objects": len(OBJECTS), "room": FIRST_ROOM,
                    "frame_stride": FRAME_STRIDE, "generator_version": GENERATOR_VERSION,
                    "image_size": [HEIGHT, WIDTH], "env": ENV_ID, "ale_py": version("ale-py"),
                    "gymnasium": version("gymnasium")}
            write_split(tmp / split, {}, meta)
    seconds = time.perf_counter() - t0
    log.info("wrote %s in %.1f s", out_dir, seconds)
    return {"out_dir": str(out_dir), "counts": counts, "split_seeds": seeds, "seconds": seconds}
