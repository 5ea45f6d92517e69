"""The one-pass square-kernel drizzle against the ``drizzle`` package's C kernel, one call per array."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask.kernels.drizzle import drizzle_square
from jwdask.resample.scanner import visited_rows

drizzle_resample = pytest.importorskip("drizzle.resample")


def _pixmap(ny: int, nx: int, theta: float, offset: tuple[float, float]) -> np.ndarray:
    """A rotated, slightly scaled and distorted map [output pixels]."""
    y, x = np.indices((ny, nx), dtype=np.float64)
    px = offset[0] + 0.97 * (np.cos(theta) * x - np.sin(theta) * y) + 1e-5 * x * y
    py = offset[1] + 0.97 * (np.sin(theta) * x + np.cos(theta) * y) + 2e-5 * x * x
    return np.dstack([px, py])


def _reference(data: np.ndarray, weights: np.ndarray, pixmap: np.ndarray, shape: tuple[int, int],
               pixfrac: float, dq: np.ndarray | None) -> list:
    out = []
    for k, plane in enumerate(data):
        driz = drizzle_resample.Drizzle(out_shape=shape, kernel="square", fillval="NaN",
                                        disable_ctx=k > 0, max_ctx_id=0 if k == 0 else None)
        driz.add_image(plane, exptime=1.0, pixmap=pixmap, weight_map=weights, pixfrac=pixfrac, in_units="cps",
                       xmin=0, xmax=plane.shape[1] - 1, ymin=0, ymax=plane.shape[0] - 1,
                       **({"dq": dq} if dq is not None and k == 0 else {}))
        out.append(driz)
    return out


@pytest.mark.parametrize(("pixfrac", "theta", "offset", "with_dq"), [
    (1.0, 0.3, (15.3, 160.7), False),   # input crosses the output's left edge: C selects pixels
    (0.7, 0.3, (15.3, 160.7), True),
    (1.0, -0.05, (40.2, 30.9), True),   # wholly inside
    (0.5, 1.2, (300.4, 20.1), False),
])
def test_equals_c_kernel_per_array(pixfrac: float, theta: float, offset: tuple[float, float], with_dq: bool) -> None:
    rng = np.random.default_rng(7)
    ny, nx = 120, 150
    shape = (330, 360)
    pixmap = _pixmap(ny, nx, theta, offset)
    data = rng.normal(10, 3, (3, ny, nx)).astype(np.float32)
    weights = rng.uniform(0.5, 2, (ny, nx)).astype(np.float32)
    weights[50:60, 50:60] = 0
    dq = rng.integers(0, 16, (ny, nx)).astype(np.uint32) if with_dq else None
    refs = _reference(data, weights, pixmap, shape, pixfrac, dq)
    # drizzle's own selection of pixels where the input crosses the output edge, as zero weights
    limits = visited_rows(pixmap, (0, nx - 1, 0, ny - 1), shape)
    if limits is not None:
        cols = np.arange(nx)[None, :]
        weights = weights * ((cols >= limits[:, :1]) & (cols <= limits[:, 1:]))
    img = np.full((3, *shape), np.nan, dtype=np.float32)
    wht = np.zeros(shape, dtype=np.float32)
    ctx = np.zeros(shape, dtype=bool)
    none = np.zeros((0, 0), dtype=np.uint32)
    out_dq = np.zeros(shape, dtype=np.uint32) if with_dq else none
    drizzle_square(data, weights.astype(np.float32), pixmap, img, wht, ctx, dq if with_dq else none, out_dq,
                   0, nx - 1, 0, ny - 1, pixfrac)
    np.testing.assert_array_equal(wht, refs[0].out_wht)
    np.testing.assert_array_equal(ctx, (refs[0].out_ctx[0] & 1).astype(bool))
    for k in range(3):
        np.testing.assert_array_equal(img[k], refs[k].out_img)
    if with_dq:
        np.testing.assert_array_equal(out_dq, refs[0].out_dq)
    assert (wht > 0).sum() > 10_000


def test_nothing_lands_outside_the_output() -> None:
    pixmap = _pixmap(20, 20, 0.0, (-500.0, -500.0))
    img = np.full((1, 40, 40), np.nan, dtype=np.float32)
    wht = np.zeros((40, 40), dtype=np.float32)
    none = np.zeros((0, 0), dtype=np.uint32)
    drizzle_square(np.ones((1, 20, 20), np.float32), np.ones((20, 20), np.float32), pixmap, img, wht,
                   np.zeros((0, 0), dtype=bool), none, none, 0, 19, 0, 19, 1.0)
    assert not wht.any()
    assert np.isnan(img).all()
