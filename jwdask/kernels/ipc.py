"""ipc kernel: deconvolve inter-pixel capacitance with the IPC reference kernel (spec §6.5).

Every (integration, group) plane is convolved with a small kernel ``k[ky, kx]`` (or a
per-pixel kernel ``k[ky, kx, y, x]``) over its science pixels; reference pixels are left
unchanged and count as 0 in the sums, as do pixels beyond the array edges. The sums are
accumulated in float32 in jwst's order (all kernel elements row by row, the middle one last),
so results are bit-identical to ``jwst.ipc.ipc_corr.ipc_convolve``.

REQUIRED_TILE: a (y, x) tile of any planes with a halo of :func:`halo_depth` pixels on every
side that touches another tile (``map_overlap(boundary="none")``); 0 at the true edges of the
science array. The caller passes the tile's reference-pixel mask (see
:func:`reference_pixel_mask`), so a tile needs no knowledge of its position.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

__all__ = ["IpcResult", "correct_ipc", "halo_depth", "reference_pixel_mask"]


class IpcResult(NamedTuple):
    """Output of :func:`correct_ipc`."""

    sci: np.ndarray
    """IPC-corrected ramps, float32, shape of the input (halo included: the caller trims it)."""


def halo_depth(kernel_shape: tuple[int, ...]) -> int:
    """Halo [pixels] a tile needs for a kernel of shape ``(ky, kx[, y, x])``.

    Examples
    --------
    >>> halo_depth((3, 3))
    1
    """
    return max(kernel_shape[0] // 2, kernel_shape[1] // 2)


def reference_pixel_mask(y: np.ndarray, x: np.ndarray, *, miri: bool = False) -> np.ndarray:
    """Which pixels of a window are reference pixels for the IPC step.

    Near-IR: full-frame rows 0-3 and 2044-2047 and columns 0-3 and 2044-2047. MIRI: columns
    0-3 and 1028-1031 (no reference rows).

    Parameters
    ----------
    y, x : ndarray
        0-based full-frame row and column indices (DMS orientation) of the window, 1-D.
    miri : bool
        MIRI geometry instead of near-IR.

    Returns
    -------
    ndarray
        bool ``(len(y), len(x))``.

    Examples
    --------
    >>> reference_pixel_mask(np.arange(2, 6), np.arange(2040, 2046))[:, [0, 5]].tolist()
    [[True, True], [True, True], [False, True], [False, True]]
    """
    y = np.asarray(y)
    x = np.asarray(x)
    if miri:
        rows = np.zeros(y.shape, bool)
        cols = (x < 4) | (x >= 1028)
    else:
        rows = (y < 4) | (y >= 2044)
        cols = (x < 4) | (x >= 2044)
    return rows[:, None] | cols[None, :]


def correct_ipc(
    sci: np.ndarray,
    kernel: np.ndarray,
    refmask: np.ndarray,
    *,
    halo: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> IpcResult:
    """Convolve every plane's science pixels with the IPC kernel.

    ``out[y, x] = sum_{j, i} k[j, i] * in[y + ky - 1 - j - ky//2, x + kx - 1 - i - kx//2]``
    (for odd kernels: ``in[y - (j - ky//2), x - (i - kx//2)]``), with ``in`` = 0 on reference
    pixels and outside the array. As in jwst, the middle element ``k[ky//2, kx//2]`` always
    multiplies ``in[y, x]`` (for even-sized kernels that breaks the pattern above).

    Parameters
    ----------
    sci : ndarray
        float32 ``(..., y, x)`` [DN], halo included.
    kernel : ndarray
        IPC reference data, float32: ``(ky, kx)``, or ``(ky, kx, y, x)`` cut to the same pixels
        as ``sci`` (per-output-pixel kernels).
    refmask : ndarray
        bool ``(y, x)``: True on reference pixels (unchanged, and 0 in the sums).
    halo : tuple of int
        ``(top, bottom, left, right)`` halo rows/columns in the block; any non-zero side must be
        at least :func:`halo_depth`. Only the interior equals the whole-frame result.

    Returns
    -------
    IpcResult
        A new ``sci``.

    Examples
    --------
    >>> k = np.zeros((3, 3), np.float32); k[1, 1] = 1.0; k[1, 2] = 0.5
    >>> sci = np.zeros((1, 1, 1, 3), np.float32); sci[..., 1] = 2.0
    >>> correct_ipc(sci, k, np.zeros((1, 3), bool)).sci.ravel().tolist()
    [0.0, 2.0, 1.0]
    """
    ky, kx = kernel.shape[:2]
    depth = halo_depth(kernel.shape)
    if any(0 < h < depth for h in halo) or min(halo) < 0:
        msg = f"the IPC kernel {kernel.shape} needs a halo of {depth} pixels on tiled sides, got {halo}"
        raise ValueError(msg)
    ny, nx = sci.shape[-2:]
    if refmask.shape != (ny, nx) or (kernel.ndim == 4 and kernel.shape[2:] != (ny, nx)):
        msg = (f"refmask {refmask.shape} and per-pixel kernel {kernel.shape[2:]} must cover the "
               f"science pixels {(ny, nx)}")
        raise ValueError(msg)
    b_y, b_x = ky // 2, kx // 2
    terms = [(j, i, ky - 1 - j, kx - 1 - i) for j in range(ky) for i in range(kx) if (j, i) != (b_y, b_x)]
    terms.append((b_y, b_x, b_y, b_x))
    if kernel.ndim == 2:
        planes = np.ascontiguousarray(sci, dtype=np.float32).reshape(-1, ny, nx)
        out = np.empty_like(planes)
        _convolve_planes(planes, np.ascontiguousarray(refmask), np.array(terms, np.int64),
                         np.array([kernel[j, i] for j, i, _, _ in terms], np.float32), b_y, b_x, out)
        return IpcResult(out.reshape(sci.shape))
    padded = np.zeros((*sci.shape[:-2], ny + ky - 1, nx + kx - 1), np.float32)
    padded[..., b_y:b_y + ny, b_x:b_x + nx] = np.where(refmask, np.float32(0), sci)
    acc = np.zeros(sci.shape, np.float32)
    for j, i, oy, ox in terms:
        acc += kernel[j, i] * padded[..., oy:oy + ny, ox:ox + nx]
    return IpcResult(np.where(refmask, sci, acc).astype(np.float32))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _convolve_planes(planes: np.ndarray, refmask: np.ndarray, terms: np.ndarray, weights: np.ndarray,
                     b_y: int, b_x: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """One pass of :func:`correct_ipc` for a 2-D kernel: per pixel, the float32 sum of
    ``weight * in`` over ``terms`` (rows ``j, i, oy, ox``) in their order, as numpy does it
    plane-wide, with ``in`` = 0 on reference pixels and outside the planes. Row by row, so
    the sums stay in cache."""
    nplanes, ny, nx = planes.shape
    ky, kx = 2 * b_y + 1, 2 * b_x + 1
    padded = np.zeros((ny + ky - 1, nx + kx - 1), np.float32)
    acc = np.empty(nx, np.float32)
    for p in range(nplanes):
        for y in range(ny):
            for x in range(nx):
                padded[y + b_y, x + b_x] = np.float32(0.0) if refmask[y, x] else planes[p, y, x]
        for y in range(ny):
            acc[:] = np.float32(0.0)
            for t in range(terms.shape[0]):
                row = padded[y + terms[t, 2]]
                ox = terms[t, 3]
                w = weights[t]
                for x in range(nx):
                    acc[x] = acc[x] + w * row[x + ox]
            for x in range(nx):
                out[p, y, x] = planes[p, y, x] if refmask[y, x] else acc[x]
