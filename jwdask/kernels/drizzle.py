"""The drizzle "square" kernel for several arrays in one pass (numba, releases the GIL).

jwst drizzles an exposure's SCI and the square roots of its three variance arrays in four
calls of the ``drizzle`` package's C kernel (``cdrizzlebox.c``, ``do_kernel_square``), which
repeat the same geometry four times and hold the GIL, so Dask threads drizzle one exposure
at a time. The four outputs differ only in the data: each is the weighted mean
``Σ(a·w·d) / Σ(a·w)`` of the input pixels over the output pixel, with the same overlap areas
``a`` and weights ``w``. :func:`drizzle_square` computes the geometry once per input pixel
and updates every array with it, following the C code operation by operation:

* the four corners of the drop ``(i ± pixfrac/2, j ± pixfrac/2)`` [input pixels] are mapped
  to the output by bilinear interpolation of the pixel map (``interpolate_point``;
  extrapolated from the edge cells); a NaN corner drops the pixel;
* ``jaco`` is the drop's signed area on the output [output pixels²], the weight is
  ``w = weight / jaco``, and the overlap with each output pixel of the drop's bounding box is
  the signed area ``boxer``/``sgarea`` computes (double precision);
* the running mean is updated as ``update_data`` does it: ``dow = float32(area·w)``, the
  previous counts ``vc`` (float32), the new mean ``(out·vc + dow·d) / (vc + dow)`` with the
  products in float32 and the division in double, stored as float32.

The C code interpolates the corners of interior pixels with a specialised routine; the
general bilinear formula used here for every pixel gives the same bits in the tests, where the
outputs (means, weights, context, DQ) are bit-identical to ``drizzle``'s
(``tests/kernels/test_drizzle_kernel.py``). The helpers are inlined into the loop (numba
``inline='always'``): called, they made the kernel 1.7x slower.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["drizzle_square"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_inline
def _nint(x: float) -> int:
    """Nearest integer, halves away from zero (the C ``nintd``)."""
    if x < 0.0:
        return -int(-x + 0.5)
    return int(x + 0.5)


@_inline
def _bilinear(pixmap: np.ndarray, xin: float, yin: float, c: int) -> float:
    """Coordinate ``c`` (0: x, 1: y) of the pixel map at ``(xin, yin)`` by bilinear interpolation
    (extrapolated from the edge cells), as drizzle's ``interpolate_point``."""
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    i0 = min(max(int(xin), 0), nx - 2)
    j0 = min(max(int(yin), 0), ny - 2)
    x = xin - i0
    y = yin - j0
    x1 = 1.0 - x
    y1 = 1.0 - y
    return (pixmap[j0, i0, c] * x1 * y1 + pixmap[j0, i0 + 1, c] * x * y1
            + pixmap[j0 + 1, i0, c] * x1 * y + pixmap[j0 + 1, i0 + 1, c] * x * y)


@_inline
def _sgarea(x1: float, y1: float, x2: float, y2: float) -> float:
    """Signed area under the segment (x1, y1)-(x2, y2) inside the unit square at the origin."""
    dx = x2 - x1
    dy = y2 - y1
    if dx == 0:
        return 0.0
    if dx < 0:
        sgn_dx = -1.0
        xlo = x2
        xhi = x1
    else:
        sgn_dx = 1.0
        xlo = x1
        xhi = x2
    if xlo >= 1.0 or xhi <= 0.0:
        return 0.0
    xlo = max(xlo, 0.0)
    xhi = min(xhi, 1.0)
    slope = dy / dx
    ylo = y1 + slope * (xlo - x1)
    yhi = y1 + slope * (xhi - x1)
    if ylo <= 0.0 and yhi <= 0.0:
        return 0.0
    if ylo >= 1.0 and yhi >= 1.0:
        return sgn_dx * (xhi - xlo)
    det = x1 * y2 - y1 * x2
    if ylo < 0.0:
        ylo = 0.0
        xlo = det / dy
    if yhi < 0.0:
        yhi = 0.0
        xhi = det / dy
    if ylo <= 1.0:
        if yhi <= 1.0:
            return sgn_dx * 0.5 * (xhi - xlo) * (yhi + ylo)
        xtop = (dx + det) / dy
        return sgn_dx * (0.5 * (xtop - xlo) * (1.0 + ylo) + xhi - xtop)
    xtop = (dx + det) / dy
    return sgn_dx * (0.5 * (xhi - xtop) * (1.0 + yhi) + xtop - xlo)


@_inline
def _boxer(ii: float, jj: float, x0: float, x1: float, x2: float, x3: float,
           y0: float, y1: float, y2: float, y3: float) -> float:
    """Signed overlap of the quadrilateral (x0, y0)..(x3, y3) with output pixel (ii, jj)."""
    ox = ii - 0.5
    oy = jj - 0.5
    a = x0 - ox
    b = x1 - ox
    c = x2 - ox
    d = x3 - ox
    e = y0 - oy
    f = y1 - oy
    g = y2 - oy
    h = y3 - oy
    return _sgarea(a, e, b, f) + _sgarea(b, f, c, g) + _sgarea(c, g, d, h) + _sgarea(d, h, a, e)


@_jit
def drizzle_square(data: np.ndarray, weights: np.ndarray, pixmap: np.ndarray, out_img: np.ndarray,
                   out_wht: np.ndarray, out_ctx: np.ndarray, dq: np.ndarray, out_dq: np.ndarray,
                   xmin: int, xmax: int, ymin: int, ymax: int, pixfrac: float) -> None:
    """Drizzle the arrays ``data`` onto ``out_img`` with the square kernel, in place.

    Parameters
    ----------
    data : ndarray
        float32 ``(n, ny, nx)``: the arrays drizzled with the same weights (SCI, then e.g. the
        square roots of the variances) [their units; no scaling is applied].
    weights : ndarray
        float32 ``(ny, nx)`` input pixel weights (0: pixel ignored).
    pixmap : ndarray
        float64 ``(ny, nx, 2)``: output ``(x, y)`` [output pixels] of each input pixel centre.
    out_img : ndarray
        float32 ``(n, oy, ox)`` running weighted means; start as NaN (drizzle's ``fillval``).
    out_wht : ndarray
        float32 ``(oy, ox)`` summed weights; start at 0.
    out_ctx : ndarray
        bool ``(oy, ox)``: set where a pixel received a positive weight; a ``(0, 0)`` array for none.
    dq, out_dq : ndarray
        uint32 ``(ny, nx)`` input DQ OR-ed into ``out_dq`` ``(oy, ox)`` where pixels contribute;
        ``(0, 0)`` arrays for none.
    xmin, xmax, ymin, ymax : int
        Inclusive range of input pixels drizzled.
    pixfrac : float
        Drop size as a fraction of the input pixel.
    """
    n = data.shape[0]
    oy, ox = out_wht.shape
    ctx = out_ctx.shape[0] > 0
    use_dq = out_dq.shape[0] > 0
    dh = 0.5 * pixfrac
    for j in range(ymin, ymax + 1):
        ytop = j + dh
        ybot = j - dh
        for i in range(xmin, xmax + 1):
            xl = i - dh
            xr = i + dh
            x0 = _bilinear(pixmap, xl, ytop, 0)
            y0 = _bilinear(pixmap, xl, ytop, 1)
            x1 = _bilinear(pixmap, xr, ytop, 0)
            y1 = _bilinear(pixmap, xr, ytop, 1)
            x2 = _bilinear(pixmap, xr, ybot, 0)
            y2 = _bilinear(pixmap, xr, ybot, 1)
            x3 = _bilinear(pixmap, xl, ybot, 0)
            y3 = _bilinear(pixmap, xl, ybot, 1)
            if (math.isnan(x0) or math.isnan(y0) or math.isnan(x1) or math.isnan(y1) or math.isnan(x2)
                    or math.isnan(y2) or math.isnan(x3) or math.isnan(y3)):
                continue
            jaco = 0.5 * ((x1 - x3) * (y0 - y2) - (x0 - x2) * (y1 - y3))
            w = np.float64(weights[j, i]) / jaco
            jj0 = max(_nint(min(min(y0, y1), min(y2, y3))), 0)
            jj1 = min(_nint(max(max(y0, y1), max(y2, y3))), oy - 1)
            ii0 = max(_nint(min(min(x0, x1), min(x2, x3))), 0)
            ii1 = min(_nint(max(max(x0, x1), max(x2, x3))), ox - 1)
            for jj in range(jj0, jj1 + 1):
                for ii in range(ii0, ii1 + 1):
                    dover = _boxer(float(ii), float(jj), x0, x1, x2, x3, y0, y1, y2, y3)
                    if dover == 0.0:
                        continue
                    dow = np.float32(dover * w)
                    if ctx and dow > 0:
                        out_ctx[jj, ii] = True
                    if dow == 0:
                        continue
                    vc = out_wht[jj, ii]
                    total = np.float64(vc + dow)
                    if vc == 0:
                        for k in range(n):
                            out_img[k, jj, ii] = data[k, j, i]
                        if use_dq:
                            out_dq[jj, ii] = dq[j, i]
                    else:
                        for k in range(n):
                            out_img[k, jj, ii] = (out_img[k, jj, ii] * vc + dow * data[k, j, i]) / total
                        if use_dq:
                            out_dq[jj, ii] |= dq[j, i]
                    out_wht[jj, ii] = total
