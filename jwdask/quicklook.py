"""Quick-look PNGs of products (rate, cal, i2d): zscale-stretched images side by side."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.visualization import ImageNormalize, ZScaleInterval  # noqa: E402

from jwdask.io.products import open_product  # noqa: E402


def quicklook_png(urls: Sequence[str], path: str | Path, *, max_pixels: int = 1024) -> Path:
    """Write a PNG showing the SCI array of each product in ``urls`` (zscale, grey).

    Images larger than ``max_pixels`` on a side are block-averaged first, so a mosaic of
    any size is read tile by tile and never loaded whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(urls), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, url in zip(axes.flat, urls, strict=False):
        ds = open_product(url)
        sci = ds.sci
        factor = max(1, math.ceil(max(sci.shape[-2:]) / max_pixels))
        if factor > 1:
            sci = sci.coarsen(y=factor, x=factor, boundary="trim").mean()
        image = np.asarray(sci.values, dtype=np.float32)
        finite = np.isfinite(image)
        norm = ImageNormalize(image[finite] if finite.any() else np.zeros(1), interval=ZScaleInterval())
        ax.imshow(np.where(finite, image, np.nan), origin="lower", cmap="gray", norm=norm)
        unit = ds.sci.attrs.get("units", "")
        ax.set_title(f"{posixpath.basename(url)}\n[{unit}]", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
