"""Write a compact copy of CamVid that travels where the PNG frames (122 MB) do not fit.

Frames are re-encoded as JPEG (quality 95, 4:4:4 chroma, so colour edges keep full resolution);
labels are copied byte for byte. ``softseg.data.CamVid`` reads the copy like the original. About
28 MB for train+val. Results from the copy are not the CPU study's: they belong in their own tables,
labelled with the re-encoding.

    .venv/bin/python docs/results/pack_camvid.py ../shared/data/camvid /tmp/camvid_jpeg
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from softseg.data import CamVid


def pack(root: Path, out: Path, splits: tuple[str, ...], quality: int) -> int:
    """Write ``out/<split>/<stem>.jpg`` and ``out/<split>annot/<stem>.png``; returns bytes written."""
    total = 0
    for split in splits:
        pairs = CamVid(root, split).pairs
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for image, label in tqdm(pairs, desc=split, unit="frame"):
            jpeg = out / split / f"{image.stem}.jpg"
            with Image.open(image) as im:
                im.convert("RGB").save(jpeg, quality=quality, subsampling=0)
            copy = shutil.copyfile(label, out / f"{split}annot" / f"{image.stem}.png")
            total += jpeg.stat().st_size + Path(copy).stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="CamVid root (SegNet layout)")
    parser.add_argument("out", type=Path, help="directory for the copy (created)")
    parser.add_argument("--splits", default="train,val", help="comma-separated splits")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    args = parser.parse_args()
    if args.out.resolve() == args.root.resolve():
        raise SystemExit(f"out {args.out} is the CamVid root itself; expected a new directory")
    size = pack(args.root, args.out, tuple(args.splits.split(",")), args.quality)
    print(f"wrote {size / 2**20:.1f} MiB to {args.out}")


if __name__ == "__main__":
    main()
