"""A synthetic NIRSpec IRS2 ``refpix`` reference in the CRDS layout (jwst ``IRS2Model``).

The file holds a PRIMARY header with the standard reference keywords, an ``IRS2`` binary table
of ``2 * 712 * 2048`` rows with float32 columns ``alpha_0..3`` and ``beta_0..3`` (real and
imaginary parts alternating: one complex Fourier coefficient per two rows, one column per
amplifier), and a ``DQ`` table (``OUTPUT``, ``ODD_EVEN``, ``MASK``) naming bad interleaved
reference columns. The coefficients are Hermitian in frequency (so the correction of real
data is real): ``beta`` is a low-pass transfer of the interleaved reference pixels (about 1 at
low frequency), ``alpha`` a smaller, opposite-signed transfer of the reference output.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["IRS2_SAMPLES", "write_irs2_refpix"]

IRS2_SAMPLES = 712 * 2048
"""Complex coefficients per amplifier: one per 10 us sample of a padded IRS2 frame."""

AMPLIFIERS = 4


def _transfer(rng: np.random.Generator, freq: np.ndarray, gain: float, knee: float) -> np.ndarray:
    """One amplifier's Hermitian transfer function: ``gain`` / (1 + (f / knee)^2) with a
    small odd phase and 1 % multiplicative noise (even in frequency)."""
    f = np.abs(freq)
    magnitude = gain / (1.0 + (f / knee) ** 2)
    magnitude *= 1.0 + 0.01 * rng.standard_normal(f.size)[np.minimum(f, f.size - 1)]
    phase = rng.uniform(-0.2, 0.2) * np.tanh(freq / knee)
    return magnitude * np.exp(1j * phase)


def _interleaved(values: np.ndarray) -> np.ndarray:
    out = np.empty(2 * values.size, np.float32)
    out[0::2], out[1::2] = values.real, values.imag
    return out


def write_irs2_refpix(path: str | Path, *, detector: str = "NRS1", seed: int = 0, bad_columns: bool = True,
                      samples: int = IRS2_SAMPLES) -> Path:
    """Write a synthetic IRS2 ``refpix`` reference file.

    Parameters
    ----------
    path : str or Path
        Output FITS file (overwritten).
    detector : {"NRS1", "NRS2"}
        DETECTOR keyword.
    seed : int
        Random seed of the coefficients and the DQ masks.
    bad_columns : bool
        Give the ``DQ`` table a few bad interleaved reference columns (else every MASK is 0).
    samples : int
        Complex coefficients per amplifier; anything but :data:`IRS2_SAMPLES` makes a file of the
        wrong shape (for tests of bad input).

    Returns
    -------
    Path
        ``path``.
    """
    rng = np.random.default_rng(seed)
    freq = np.fft.fftfreq(samples, 1.0 / samples).astype(np.int64)
    columns = []
    for name, gain, knee in (("alpha", -0.35, 3000.0), ("beta", 0.95, 8000.0)):
        for amp in range(AMPLIFIERS):
            values = _transfer(rng, freq, gain * rng.uniform(0.9, 1.1), knee * rng.uniform(0.8, 1.25))
            columns.append(fits.Column(name=f"{name}_{amp}", format="E", array=_interleaved(values)))
    outputs = np.repeat(np.arange(1, AMPLIFIERS + 1, dtype=np.uint16), 2)
    odd_even = np.tile(np.array([1, 2], np.uint16), AMPLIFIERS)
    masks = np.zeros(2 * AMPLIFIERS, np.uint32)
    if bad_columns:
        for row in range(masks.size):
            for bit in rng.choice(32, size=int(rng.integers(0, 3)), replace=False):
                masks[row] |= np.uint32(1 << int(bit))
    dq = fits.BinTableHDU.from_columns([fits.Column(name="OUTPUT", format="I", array=outputs, bzero=32768),
                                        fits.Column(name="ODD_EVEN", format="I", array=odd_even, bzero=32768),
                                        fits.Column(name="MASK", format="J", array=masks, bzero=2**31)],
                                       name="DQ")
    primary = fits.PrimaryHDU()
    name = Path(path).name
    for key, value in {
        "DATE": datetime.datetime(2026, 1, 1).isoformat(), "FILENAME": name, "TELESCOP": "JWST",
        "INSTRUME": "NIRSPEC", "DETECTOR": detector, "READPATT": "NRSIRS2RAPID", "P_READPA": "NRSIRS2RAPID|NRSIRS2|",
        "REFTYPE": "REFPIX", "DATAMODL": "IRS2Model", "USEAFTER": "2022-01-01T00:00:00", "PEDIGREE": "DUMMY",
        "DESCRIP": "Synthetic IRS2 alpha/beta coefficients", "AUTHOR": "jwdask.simulate",
    }.items():
        primary.header[key] = value
    primary.header["HISTORY"] = "Simulated by jwdask.simulate.irs2: Hermitian low-pass transfers per amplifier."
    irs2 = fits.BinTableHDU.from_columns(columns, name="IRS2")
    fits.HDUList([primary, irs2, dq]).writeto(path, overwrite=True)
    return Path(path)
