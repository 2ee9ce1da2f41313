"""``softseg predict``: images in, colourised masks and overlays out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import atomic_write
from ..data import IMAGE_SUFFIXES, load_image
from ..data.colors import colorize
from .evaluate import load_run, predict_image, run_dataset_info
from .runtime import resolve_device


def image_paths(inputs: list[str]) -> list[Path]:
    """Files named directly plus the images inside named folders (sorted); refuses empty results."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {p}")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"{p} is neither an image file nor a folder")
    return _distinct(paths)


def _distinct(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats of one file; two files whose outputs would share a name (one
    stem: ``dup.jpg`` and ``dup.png``, or ``a/x.png`` and ``b/x.png``) are an error."""
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    by_stem: dict[str, Path] = {}
    for path in unique:
        if path.stem in by_stem:
            raise ValueError(
                f"{by_stem[path.stem]} and {path} would both be written as {path.stem}_mask.png "
                f"and {path.stem}_overlay.png; predict them into different `out` folders"
            )
        by_stem[path.stem] = path
    return unique


def predict_paths(
    run_dir: str, inputs: list[str], out: str, *, alpha: float = 0.5, device: str = "auto"
) -> list[Path]:
    """Write ``<stem>_mask.png`` and ``<stem>_overlay.png`` for every input image; returns the masks."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    dev = resolve_device(device)
    cfg, model, _ = load_run(run_dir, dev)
    colors = run_dataset_info(run_dir, cfg).colors
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(image_paths(inputs), desc="predict", unit="image"):
        image = load_image(path)
        pred = predict_image(model, cfg, image, dev)
        mask = colorize(pred.numpy(), colors)
        rgb = image.permute(1, 2, 0).numpy()
        overlay = (rgb * (1 - alpha) + mask * alpha).round().astype(np.uint8)
        written.append(_write_png(mask, out_dir / f"{path.stem}_mask.png"))
        _write_png(overlay, out_dir / f"{path.stem}_overlay.png")
    return written


def _write_png(pixels: np.ndarray, path: Path) -> Path:
    """Save ``(H, W, 3)`` uint8 pixels as a PNG atomically: a killed run never leaves half a file."""
    return atomic_write(path, lambda f: Image.fromarray(pixels).save(f, format="PNG"))
