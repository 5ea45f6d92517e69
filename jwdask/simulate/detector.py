"""Detector physics: per-pixel properties and up-the-ramp raw data.

Units: charge in electrons [e-], signals in data numbers [DN], rates in [DN/s] or [e-/s],
times in seconds. All per-pixel arrays are full frame (2048 x 2048, science frame); a
subarray uses the slice ``[ystart-1 : ystart-1+ysize, xstart-1 : xstart-1+xsize]``.

Signal chain of one pixel in one integration (frame ``k`` ends ``(k + 1) * TFRAME`` after
reset; frames in a group are averaged, ``GROUPGAP`` frames are dropped)::

    q_k      = sum_{j<=k} Poisson(gain * (rate + dark) * TFRAME) + cosmic rays   [e-]
    q_k      = min(q_k, full_well)                                               [e-]
    lin_k    = IPC (3x3 kernel) applied to q_k / gain                            [DN]
    raw_k    = L^-1(lin_k),  L(r) = r + c2 r^2 + c3 r^3 (the linearity reference)  [DN]
    read_k   = superbias + kTC + drift(amp, parity, k) + raw_k + N(0, RN / sqrt 2)  [DN]
    group_g  = round(mean of read_k over the NFRAMES frames of group g), 0..65535  [DN]

``rate`` is the truth rate [DN/s] (sky and sources times the flat; zero on dead and reference
pixels), ``dark`` the dark current [DN/s] that the dark reference holds frame by frame
(``dark * (k + 1) * TFRAME``), ``RN`` the CDS read noise of the readnoise reference.
Reference pixels carry bias, kTC, drifts and read noise only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from jwdask import dqflags

log = logging.getLogger(__name__)

__all__ = ["CosmicRay", "DetectorProperties", "ReadoutGeometry", "cosmic_rays", "linearize",
           "make_properties", "nonlinear", "simulate_ramps"]

IPC_KERNEL = np.array([[0.0005, 0.006, 0.0005], [0.006, 0.974, 0.006], [0.0005, 0.006, 0.0005]],
                      dtype=np.float32)
"""Inter-pixel capacitance kernel (sums to 1)."""

RAW_SATURATION = 42000.0
"""Mean bias-subtracted raw signal [DN] at which the saturation reference flags."""

KTC_NOISE = 3.0
"""Per-integration reset (kTC) offset RMS [DN]."""

DRIFT_RMS = 4.0
"""RMS of the per-frame, per-amplifier, per-column-parity reference-pixel drift [DN]."""


@dataclass(frozen=True)
class ReadoutGeometry:
    """Where and how an exposure is read.

    Attributes
    ----------
    xstart, ystart : int
        1-based full-frame science corner (``SUBSTRT1/2``).
    xsize, ysize : int
        Array size [pixels].
    noutputs : int
        Amplifiers used (4 full frame, 1 subarray).
    tframe : float
        Frame time [s].
    nframes, groupgap, ngroups, nints : int
        Readout pattern and ramp size.
    full_size : int
        Full-frame size [pixels].
    """

    xstart: int
    ystart: int
    xsize: int
    ysize: int
    noutputs: int
    tframe: float
    nframes: int
    groupgap: int
    ngroups: int
    nints: int
    full_size: int = 2048

    @property
    def tgroup(self) -> float:
        """``TGROUP = (NFRAMES + GROUPGAP) * TFRAME`` [s]."""
        return (self.nframes + self.groupgap) * self.tframe

    @property
    def nframes_read(self) -> int:
        """Frames from reset to the last read of an integration."""
        return (self.ngroups - 1) * (self.nframes + self.groupgap) + self.nframes

    @property
    def slices(self) -> tuple[slice, slice]:
        """Full-frame ``(y, x)`` slices of the array."""
        return (slice(self.ystart - 1, self.ystart - 1 + self.ysize),
                slice(self.xstart - 1, self.xstart - 1 + self.xsize))

    def group_of_frame(self, frame: int) -> int:
        """0-based first group whose reads include charge arriving during ``frame``."""
        period = self.nframes + self.groupgap
        g = frame // period
        return g if frame % period < self.nframes else g + 1

    def frame_mean_time(self, group: int) -> float:
        """Mean time after reset of the reads averaged into ``group`` (0-based) [s]."""
        first = group * (self.nframes + self.groupgap)
        return (first + (self.nframes + 1) / 2) * self.tframe


@dataclass(frozen=True)
class DetectorProperties:
    """Per-pixel truth of one detector, full frame, science orientation.

    Attributes
    ----------
    gain : numpy.ndarray
        [e-/DN].
    readnoise : numpy.ndarray
        CDS read noise [DN]; one read has ``readnoise / sqrt(2)``.
    superbias : numpy.ndarray
        Bias level [DN].
    flat : numpy.ndarray
        Relative response (dimensionless); the signal is multiplied by it.
    dark : numpy.ndarray
        Dark current [DN/s].
    c2, c3 : numpy.ndarray
        Linearity correction coefficients [1/DN, 1/DN^2]: ``lin = raw + c2 raw^2 + c3 raw^3``.
    saturation : numpy.ndarray
        Saturation threshold on raw data including bias [DN].
    full_well : numpy.ndarray
        Charge at which a pixel stops integrating [e-].
    dq : numpy.ndarray
        uint32 bad-pixel mask (``jwdask.dqflags`` bits).
    area : numpy.ndarray
        Pixel area relative to the nominal ``PIXAR_A2`` (dimensionless).
    """

    gain: np.ndarray
    readnoise: np.ndarray
    superbias: np.ndarray
    flat: np.ndarray
    dark: np.ndarray
    c2: np.ndarray
    c3: np.ndarray
    saturation: np.ndarray
    full_well: np.ndarray
    dq: np.ndarray
    area: np.ndarray

    @property
    def live(self) -> np.ndarray:
        """Pixels that respond to light (not dead, not reference)."""
        return (self.dq & (dqflags.DEAD | dqflags.REFERENCE_PIXEL)) == 0


@dataclass(frozen=True)
class CosmicRay:
    """One injected cosmic-ray hit.

    Attributes
    ----------
    integration : int
        0-based integration.
    frame : int
        0-based frame during which the charge arrives.
    group : int
        0-based group whose reads first include it (the jump is between ``group - 1`` and
        ``group``).
    x, y : int
        Full-frame 0-based pixel.
    charge : float
        Deposited charge [e-].
    """

    integration: int
    frame: int
    group: int
    x: int
    y: int
    charge: float


def _smooth(rng: np.random.Generator, n: int, scale: int) -> np.ndarray:
    """A smooth random field of unit RMS on an ``n x n`` grid, correlation length ``scale``."""
    coarse = rng.standard_normal((n // scale + 2, n // scale + 2))
    field = ndimage.zoom(coarse, scale, order=3)[:n, :n]
    return (field - field.mean()) / field.std()


def nonlinear(linear: np.ndarray, c2: np.ndarray, c3: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Raw counts [DN] whose linearity correction ``r + c2 r^2 + c3 r^3`` equals ``linear``.

    Starts from the root of the quadratic ``r + c2 r^2 = linear`` and refines with Newton
    iterations; exact to < 1e-6 DN for 0 <= ``linear`` < 1e5 DN with the simulator's
    coefficients.
    """
    raw = 2.0 * linear / (1.0 + np.sqrt(1.0 + 4.0 * c2 * np.maximum(linear, 0.0)))
    for _ in range(iterations):
        r2 = raw * raw
        f = raw + c2 * r2 + c3 * r2 * raw - linear
        f /= 1.0 + 2.0 * c2 * raw + 3.0 * c3 * r2
        raw -= f
    return raw


def linearize(raw: np.ndarray, c2: np.ndarray, c3: np.ndarray) -> np.ndarray:
    """The linearity correction ``raw + c2 raw^2 + c3 raw^3`` [DN]."""
    return raw + c2 * raw**2 + c3 * raw**3


def make_properties(rng: np.random.Generator, *, full_size: int, n_refpix: int, n_dead: int,
                    n_hot: int, area: np.ndarray, sub_slices: tuple[slice, slice]) -> DetectorProperties:
    """Draw the per-pixel properties of a detector.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    full_size, n_refpix : int
        Detector size and reference border width [pixels].
    n_dead, n_hot : int
        Dead and hot pixels over the full frame; at least 2 of each also land inside
        ``sub_slices`` when > 0, so every preset has some.
    area : numpy.ndarray
        Relative pixel area from the distortion (dimensionless).
    sub_slices : (slice, slice)
        The simulated subarray.
    """
    n = full_size
    shape = (n, n)
    gain = (2.05 + 0.04 * rng.standard_normal(shape)).astype(np.float32)
    readnoise = np.clip(9.0 + 0.6 * rng.standard_normal(shape), 5.0, None).astype(np.float32)
    superbias = 12000.0 + 400.0 * _smooth(rng, n, 256) + 60.0 * rng.standard_normal(shape)
    superbias = superbias.astype(np.float32)
    flat = (1.0 + 0.03 * _smooth(rng, n, 512) + 0.015 * rng.standard_normal(shape)).astype(np.float32)
    dark = (0.003 + 0.001 * np.abs(rng.standard_normal(shape))).astype(np.float32)
    c2 = (2.4e-6 * (1.0 + 0.05 * rng.standard_normal(shape))).astype(np.float32)
    c3 = (1.5e-11 * (1.0 + 0.05 * rng.standard_normal(shape))).astype(np.float32)
    raw_sat = RAW_SATURATION + 800.0 * rng.standard_normal(shape)
    saturation = (superbias + raw_sat).astype(np.float32)
    full_well = (linearize(raw_sat + 4000.0, c2.astype(float), c3.astype(float)) * gain).astype(np.float32)

    dq = np.zeros(shape, np.uint32)
    ref = np.ones(shape, bool)
    ref[n_refpix:n - n_refpix, n_refpix:n - n_refpix] = False
    # REFERENCE_PIXEL only: jwst refpix ignores reference pixels that are also DO_NOT_USE.
    dq[ref] = dqflags.REFERENCE_PIXEL
    inner = np.flatnonzero(~ref.ravel())
    sub = np.zeros(shape, bool)
    sub[sub_slices] = True
    inner_sub = np.flatnonzero((~ref & sub).ravel())
    picks = []
    for count in (n_dead, n_hot):
        if count <= 0:
            picks.append(np.empty(0, int))
            continue
        chosen = np.concatenate([rng.choice(inner, count, replace=False),
                                 rng.choice(inner_sub, min(2, inner_sub.size), replace=False)])
        picks.append(np.unique(chosen))
    dead, hot = picks
    hot = np.setdiff1d(hot, dead)
    dq.ravel()[dead] |= dqflags.DEAD | dqflags.DO_NOT_USE
    dq.ravel()[hot] |= dqflags.HOT
    dark.ravel()[hot] = rng.uniform(0.5, 5.0, hot.size).astype(np.float32)
    dark[ref] = 0.0
    flat[ref] = 1.0
    return DetectorProperties(gain=gain, readnoise=readnoise, superbias=superbias, flat=flat,
                              dark=dark, c2=c2, c3=c3, saturation=saturation, full_well=full_well,
                              dq=dq, area=area.astype(np.float32))


def cosmic_rays(rng: np.random.Generator, geom: ReadoutGeometry, rate: float,
                live: np.ndarray) -> list[CosmicRay]:
    """Draw cosmic-ray hits of an exposure.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    geom : ReadoutGeometry
        Exposure geometry.
    rate : float
        Events per pixel per second.
    live : numpy.ndarray
        Boolean ``(ysize, xsize)`` map of light-sensitive pixels of the array.

    Returns
    -------
    list of CosmicRay
        Hits on live pixels, charge log-normal around 1500 e- (>= 300 e-), at most one per
        pixel and integration, never in frame 0 (which has no earlier read).
    """
    hits: list[CosmicRay] = []
    nfr = geom.nframes_read
    for integ in range(geom.nints):
        expected = rate * geom.xsize * geom.ysize * nfr * geom.tframe
        count = int(rng.poisson(expected))
        seen: set[tuple[int, int]] = set()
        for _ in range(count):
            y, x = int(rng.integers(geom.ysize)), int(rng.integers(geom.xsize))
            frame = int(rng.integers(1, nfr))
            charge = float(max(300.0, rng.lognormal(np.log(1500.0), 0.6)))
            if not live[y, x] or (y, x) in seen or geom.group_of_frame(frame) == 0:
                continue
            seen.add((y, x))
            hits.append(CosmicRay(integ, frame, geom.group_of_frame(frame),
                                  x + geom.xstart - 1, y + geom.ystart - 1, charge))
    return hits


def _amplifier_index(geom: ReadoutGeometry) -> np.ndarray:
    """Amplifier of each array column (0..3 in full frame, 0 for one output)."""
    x = np.arange(geom.xsize) + geom.xstart - 1
    if geom.noutputs == 1:
        return np.zeros(geom.xsize, int)
    return x // (geom.full_size // geom.noutputs)


def simulate_ramps(props: DetectorProperties, geom: ReadoutGeometry, rate: np.ndarray,
                   hits: list[CosmicRay], seed: tuple[int, ...], band_rows: int = 128, *,
                   sci: Any = None, zeroframe: Any = None) -> tuple[Any, Any]:
    """Raw ramps of one exposure.

    Parameters
    ----------
    props : DetectorProperties
        Full-frame pixel properties.
    geom : ReadoutGeometry
        Exposure geometry.
    rate : numpy.ndarray
        ``(ysize, xsize)`` photo-electron rate of the array in DN/s, flat already applied
        (the truth rate), zero where the pixel does not respond.
    hits : list of CosmicRay
        Cosmic rays to inject.
    seed : tuple of int
        Entropy of this exposure; every row of every integration draws its photon noise, kTC
        offset and read noise from ``seed + (integration, full_frame_row)``, the drifts from
        ``seed + (integration, 2**20)``, so results do not depend on ``band_rows``.
    band_rows : int
        Rows computed at once (memory bound: ~ 10 * nframes_read * band_rows * xsize * 8 bytes).
    sci, zeroframe : array-like, optional
        Where to store the results (anything supporting ``out[i, g, rows] = values``, e.g.
        the file views of :func:`jwdask.simulate.uncal.create_uncal`); new arrays when None.

    Returns
    -------
    sci : numpy.ndarray or the given ``sci``
        uint16 ``(nints, ngroups, ysize, xsize)`` [DN].
    zeroframe : numpy.ndarray or the given ``zeroframe``
        uint16 ``(nints, ysize, xsize)`` [DN]: the first frame of each integration.
    """
    ys, xs = geom.slices
    p = {name: getattr(props, name)[ys, xs].astype(np.float64)
         for name in ("gain", "readnoise", "superbias", "dark", "c2", "c3", "full_well")}
    live = props.live[ys, xs]
    dark = np.where(live, p["dark"], 0.0)
    electrons = (np.where(live, rate, 0.0) + dark) * p["gain"] * geom.tframe
    nfr, ny, nx = geom.nframes_read, geom.ysize, geom.xsize
    if sci is None:
        sci = np.empty((geom.nints, geom.ngroups, ny, nx), np.uint16)
    zero = np.empty((geom.nints, ny, nx), np.uint16) if zeroframe is None else zeroframe
    amp = _amplifier_index(geom)
    parity = (np.arange(nx) + geom.xstart - 1) % 2
    period = geom.nframes + geom.groupgap
    for integ in range(geom.nints):
        ss = np.random.SeedSequence(list(seed) + [integ, 1 << 20])
        drift = np.random.default_rng(ss).normal(0.0, DRIFT_RMS, (nfr, max(amp) + 1, 2))
        drift_cols = drift[:, amp, parity]
        int_hits = [h for h in hits if h.integration == integ]
        for y0 in range(0, ny, band_rows):
            y1 = min(ny, y0 + band_rows)
            h0, h1 = max(0, y0 - 1), min(ny, y1 + 1)
            charge = np.empty((nfr, h1 - h0, nx))
            noise = np.empty((nfr, h1 - h0, nx))
            ktc = np.empty((h1 - h0, nx))
            for r in range(h0, h1):
                row_rng = np.random.default_rng(list(seed) + [integ, r + geom.ystart - 1])
                charge[:, r - h0] = row_rng.poisson(electrons[r], (nfr, nx))
                ktc[r - h0] = row_rng.normal(0.0, KTC_NOISE, nx)
                noise[:, r - h0] = row_rng.standard_normal((nfr, nx))
            for h in int_hits:
                r = h.y - (geom.ystart - 1)
                if h0 <= r < h1:
                    charge[h.frame, r - h0, h.x - (geom.xstart - 1)] += h.charge
            np.cumsum(charge, axis=0, out=charge)
            np.minimum(charge, p["full_well"][h0:h1], out=charge)
            charge /= p["gain"][h0:h1]
            lin = ndimage.convolve(charge, IPC_KERNEL[None].astype(np.float64), mode="nearest")
            band = slice(y0 - h0, y1 - h0)
            rows = slice(y0, y1)
            raw = nonlinear(lin[:, band], p["c2"][rows], p["c3"][rows])
            raw += (p["superbias"][rows] + ktc[band])[None]
            raw += drift_cols[:, None, :]
            raw += noise[:, band] * (p["readnoise"][rows] / np.sqrt(2.0))
            zero[integ, rows] = np.clip(np.rint(raw[0]), 0, 65535).astype(np.uint16)
            for g in range(geom.ngroups):
                first = g * period
                mean = raw[first:first + geom.nframes].mean(axis=0)
                sci[integ, g, rows] = np.clip(np.rint(mean), 0, 65535).astype(np.uint16)
        log.debug("integration %d: %d cosmic rays", integ, len(int_hits))
    return sci, zero
