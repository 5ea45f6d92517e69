"""refpix kernel: SIRS side-pixel correction of near-IR full frames (jwst 3.0 ``refpix_algorithm="sirs"``).

"Simple Improved Reference Subtraction" replaces the running median of the side reference
columns by a convolution along the rows. In detector orientation, after the top/bottom
(amplifier) correction of a plane:

* the ``sirskernel`` reference gives, per detector and amplifier ``a``, Fourier coefficients
  ``gamma[a]`` (left columns) and ``zeta[a]`` (right columns) of length ``n + 1``; each becomes
  a real kernel ``irfft`` (length ``2n``), centred (``fftshift``), cut to the ``2h + 1`` taps
  around lag 0 (``h = halfwidth``) and smoothed by a normalized Gaussian of width
  ``gaussmooth`` [taps] (``numpy.convolve(..., mode="same")``);
* the left (columns 0-3) and right (2044-2047) reference strips, all rows, in float64: outliers
  are pixels farther than ``sigreject`` * 1.48 * MAD from the strip's median (no DQ is used);
  per row, ``s = sum(good values) / 4`` and ``c = number of good pixels / 4``;
* per amplifier, the template ``T = conv(s_l, k_l) * conv(1, k_l) / conv(c_l, k_l) + (same
  on the right)`` (all ``mode="same"`` over the detector rows) is subtracted from every row of
  the amplifier's 512 columns.

:func:`sirs_template` computes ``T`` per (row, amplifier); the caller subtracts it (in float64,
as jwst does) from the plane that the strips came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = ["AMPLIFIERS", "MAD_FACTOR", "SirsKernels", "kernel_coefficients", "make_sirs_kernels", "sirs_template"]

AMPLIFIERS = 4
"""Output amplifiers of a near-IR full frame (512 detector columns each)."""

MAD_FACTOR = 1.48
"""Ratio of the standard deviation to the median absolute deviation used by jwst."""


class SirsKernels(NamedTuple):
    """Real-space SIRS kernels of one detector, one per amplifier and side."""

    left: tuple[np.ndarray, ...]
    """float64 ``(2 * halfwidth + 1,)`` per amplifier: kernels of the left reference columns."""
    right: tuple[np.ndarray, ...]
    """float64 ``(2 * halfwidth + 1,)`` per amplifier: kernels of the right reference columns."""


def kernel_coefficients(tree: Mapping[str, Any], detector: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(gamma, zeta)`` Fourier coefficients of ``detector`` (case-insensitive) in a
    ``sirskernel`` ASDF tree (top-level entries named after detectors, each with ``gamma``
    and ``zeta`` arrays of shape ``(amplifiers, n + 1)``); None if the detector is absent."""
    for name, entry in tree.items():
        if (str(name).lower() == detector.lower() and isinstance(entry, Mapping)
                and "gamma" in entry and "zeta" in entry):
            return np.asarray(entry["gamma"]), np.asarray(entry["zeta"])
    return None


def _real_kernel(coefficients: np.ndarray, window: np.ndarray, halfwidth: int) -> np.ndarray:
    """Centred real-space kernel of one amplifier, cut to ``2 * halfwidth + 1`` taps and
    smoothed by ``window``."""
    centre = coefficients.shape[-1] - 1
    taps = np.fft.fftshift(np.fft.irfft(coefficients))
    return np.convolve(taps[centre - halfwidth:centre + halfwidth + 1], window, mode="same")


def make_sirs_kernels(gamma: np.ndarray, zeta: np.ndarray, *, gaussmooth: float, halfwidth: int) -> SirsKernels:
    """Kernels from the reference's Fourier coefficients.

    Parameters
    ----------
    gamma, zeta : ndarray
        ``(amplifiers, n + 1)`` coefficients of the left and right reference columns.
    gaussmooth : float
        Width [rows] of the Gaussian low-pass applied to each kernel (> 0).
    halfwidth : int
        Half-width [rows] of the kernels (``0 <= halfwidth < n``).
    """
    gamma, zeta = np.atleast_2d(gamma), np.atleast_2d(zeta)
    if gamma.shape != zeta.shape:
        msg = f"gamma {gamma.shape} and zeta {zeta.shape} must have the same shape"
        raise ValueError(msg)
    if not 0 <= halfwidth < gamma.shape[-1] - 1:
        msg = f"halfwidth must be between 0 and {gamma.shape[-1] - 2} rows, got {halfwidth}"
        raise ValueError(msg)
    if not gaussmooth > 0:
        msg = f"gaussmooth must be > 0, got {gaussmooth}"
        raise ValueError(msg)
    lags = np.arange(-halfwidth, halfwidth + 1)
    window = np.exp(-(lags**2) / (2 * gaussmooth**2))
    window /= window.sum()
    return SirsKernels(left=tuple(_real_kernel(g, window, halfwidth) for g in gamma),
                       right=tuple(_real_kernel(z, window, halfwidth) for z in zeta))


def _strip_signal(strip: np.ndarray, sigreject: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: sum of the strip's good pixels / 4 and their count / 4 (outliers beyond
    ``sigreject`` robust sigmas of the strip median are left out)."""
    median = np.median(strip)
    deviation = np.abs(strip - median)
    good = deviation <= sigreject * (MAD_FACTOR * np.median(deviation))
    width = strip.shape[1]
    return np.sum(strip * good, axis=1) / width, np.sum(good, axis=1) / width


def sirs_template(left: np.ndarray, right: np.ndarray, kernels: SirsKernels, *, sigreject: float = 4.0) -> np.ndarray:
    """Side reference signal [DN] to subtract, per detector row and amplifier.

    Parameters
    ----------
    left, right : ndarray
        ``(rows, 4)`` left (detector columns 0-3) and right (2044-2047) reference strips of one
        detector-oriented plane after its top/bottom correction, all detector rows [DN].
    kernels : SirsKernels
        From :func:`make_sirs_kernels`.
    sigreject : float
        Outlier rejection limit [robust standard deviations].

    Returns
    -------
    ndarray
        float64 ``(rows, 4)``; amplifiers without a kernel get 0.
    """
    sums_l, counts_l = _strip_signal(np.asarray(left, np.float64), sigreject)
    sums_r, counts_r = _strip_signal(np.asarray(right, np.float64), sigreject)
    ones = np.ones(sums_l.shape)
    template = np.zeros((sums_l.size, AMPLIFIERS), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for amp, (k_l, k_r) in enumerate(zip(kernels.left[:AMPLIFIERS], kernels.right[:AMPLIFIERS], strict=True)):
            norm_l = np.convolve(ones, k_l, mode="same") / np.convolve(counts_l, k_l, mode="same")
            norm_r = np.convolve(ones, k_r, mode="same") / np.convolve(counts_r, k_r, mode="same")
            template[:, amp] = np.convolve(sums_l, k_l, mode="same") * norm_l
            template[:, amp] += np.convolve(sums_r, k_r, mode="same") * norm_r
    return template
