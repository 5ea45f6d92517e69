"""Simulation presets and the instrument/detector constants they refer to.

A :class:`Preset` is a frozen description of one simulated program (instrument setup,
readout, dither, scene density); :data:`PRESETS` holds the named ones. Build variants with
:func:`dataclasses.replace` (``replace(PRESETS["small"], ngroups=10)``).

Instrument specifics live in :class:`Instrument` instances (:data:`NIRCAM_SW`), so another
instrument (MIRI) is a new :class:`Instrument` plus its geometry/readout functions.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FASTSLOW", "NIRCAM_SW", "PRESETS", "READOUT_PATTERNS", "Instrument", "Preset",
           "frame_time"]


@dataclass(frozen=True)
class Instrument:
    """Constants of one instrument channel.

    Attributes
    ----------
    name : str
        ``INSTRUME`` value.
    channel : str
        ``CHANNEL`` value (``SHORT`` for NIRCam SW).
    exp_type : str
        ``EXP_TYPE`` of imaging exposures.
    siaf_name : str
        Instrument name for :class:`pysiaf.Siaf`.
    full_size : int
        Full-frame detector size [pixels] (square).
    n_refpix : int
        Width of the reference-pixel border on every side [pixels].
    n_amplifiers : int
        Number of readout amplifiers in full frame (stripes of columns).
    pixel_scale : float
        Nominal pixel scale [arcsec/pixel], informational.
    """

    name: str
    channel: str
    exp_type: str
    siaf_name: str
    full_size: int
    n_refpix: int
    n_amplifiers: int
    pixel_scale: float


NIRCAM_SW = Instrument(name="NIRCAM", channel="SHORT", exp_type="NRC_IMAGE", siaf_name="NIRCam",
                       full_size=2048, n_refpix=4, n_amplifiers=4, pixel_scale=0.031)
"""NIRCam short-wave channel."""

READOUT_PATTERNS: dict[str, tuple[int, int]] = {
    "RAPID": (1, 0), "BRIGHT1": (1, 1), "BRIGHT2": (2, 0), "SHALLOW2": (2, 3), "SHALLOW4": (4, 1),
    "MEDIUM2": (2, 8), "MEDIUM8": (8, 2), "DEEP2": (2, 18), "DEEP8": (8, 12),
}
"""NIRCam readout pattern -> (NFRAMES, GROUPGAP)."""

FASTSLOW: dict[str, tuple[int, int]] = {
    "NRCA1": (-1, 2), "NRCA3": (-1, 2), "NRCALONG": (-1, 2), "NRCB2": (-1, 2), "NRCB4": (-1, 2),
    "NRCA2": (1, -2), "NRCA4": (1, -2), "NRCB1": (1, -2), "NRCB3": (1, -2), "NRCBLONG": (1, -2),
}
"""NIRCam detector -> (FASTAXIS, SLOWAXIS) (formats.md §1.3)."""


def frame_time(nx: int, ny: int, noutputs: int) -> float:
    """NIRCam frame time [s] of a readout of ``nx`` x ``ny`` pixels.

    Full frame with 4 outputs: ``((nx/4 + 12) * (ny + 1) + 1) * 10 us`` = 10.73677 s;
    one-output subarrays: ``(nx + 12) * (ny + 2) * 10 us`` (SUB160: 0.27864 s).
    """
    if noutputs == 4:
        return ((nx // 4 + 12) * (ny + 1) + 1) * 1e-5
    return (nx + 12) * (ny + 2) * 1e-5


@dataclass(frozen=True)
class Preset:
    """A simulated program.

    Attributes
    ----------
    name : str
        Preset name (recorded in the truth summary).
    instrument : Instrument
        Instrument channel.
    detector : str
        ``DETECTOR`` (``NRCB1``).
    subarray : str
        SIAF subarray suffix and ``SUBARRAY`` value (``FULL``, ``SUB160``, ``SUB400P``...).
    filter, pupil : str
        Optical elements.
    readpatt : str
        Readout pattern (key of :data:`READOUT_PATTERNS`).
    ngroups, nints : int
        Groups per integration and integrations per exposure.
    dithers : tuple of (float, float)
        Ideal-frame offsets (x, y) [arcsec] of each exposure; one exposure per entry.
    pointing_error : (float, float)
        Range of the size of the random per-exposure offset between header (commanded) and
        true pointing [arcsec], in a random direction.
    roll_error : float
        RMS roll error between header and true pointing [deg].
    n_stars : int
        Number of field stars.
    star_mag : (float, float)
        AB magnitude range of field stars (uniform in mag).
    n_bright : int
        Extra bright (saturating) stars at ``bright_mag`` +- 0.3.
    bright_mag : float
        AB magnitude of the bright stars.
    n_galaxies : int
        Number of galaxies.
    galaxy_mag : (float, float)
        AB magnitude range of galaxies.
    sky : float
        Sky surface brightness [MJy/sr].
    cosmic_ray_rate : float
        Cosmic-ray events [events / pixel / s].
    n_dead, n_hot : int
        Dead and hot pixels per full frame, scaled to the subarray area (plus 2 of each
        inside the subarray when > 0).
    zeroframe : bool
        Write ZEROFRAME.
    target_ra, target_dec : float
        Commanded pointing of the aperture reference point of the first exposure [deg].
    roll : float
        Commanded ROLL_REF [deg].
    program, observation, visit : str
        Zero-padded ids.
    date_obs : str
        ``DATE-OBS`` of the first exposure (``YYYY-MM-DD``, starts at 00:00:00 UTC).
    band_rows : int
        Row band height used while generating ramps [pixels] (memory bound).
    """

    name: str
    instrument: Instrument = NIRCAM_SW
    detector: str = "NRCB1"
    subarray: str = "SUB160"
    filter: str = "F200W"
    pupil: str = "CLEAR"
    readpatt: str = "RAPID"
    ngroups: int = 5
    nints: int = 2
    dithers: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.5, 0.4))
    pointing_error: tuple[float, float] = (0.01, 0.05)
    roll_error: float = 1e-4
    n_stars: int = 6
    star_mag: tuple[float, float] = (17.0, 20.5)
    n_bright: int = 1
    bright_mag: float = 13.5
    n_galaxies: int = 0
    galaxy_mag: tuple[float, float] = (18.5, 21.0)
    sky: float = 0.2
    cosmic_ray_rate: float = 5e-5
    n_dead: int = 2000
    n_hot: int = 2000
    zeroframe: bool = True
    target_ra: float = 53.16
    target_dec: float = -27.78
    roll: float = 45.0
    program: str = "09001"
    observation: str = "001"
    visit: str = "001"
    date_obs: str = "2026-01-01"
    band_rows: int = 128

    @property
    def nframes(self) -> int:
        """``NFRAMES`` of the readout pattern."""
        return READOUT_PATTERNS[self.readpatt][0]

    @property
    def groupgap(self) -> int:
        """``GROUPGAP`` of the readout pattern."""
        return READOUT_PATTERNS[self.readpatt][1]

    @property
    def aperture(self) -> str:
        """SIAF aperture name (``NRCB1_SUB160``)."""
        return f"{self.detector}_{self.subarray}"


PRESETS: dict[str, Preset] = {
    "tiny": Preset(name="tiny", subarray="SUB160", ngroups=5, nints=2,
                   dithers=((0.0, 0.0), (0.35, 0.28)), n_stars=6, n_bright=1,
                   cosmic_ray_rate=1.5e-4),
    "small": Preset(name="small", subarray="SUB400P", ngroups=6, nints=1,
                    dithers=((0.0, 0.0), (1.2, 0.9), (-0.8, 1.5), (0.6, -1.3)),
                    n_stars=40, n_bright=2, n_galaxies=5, cosmic_ray_rate=2e-5),
    "full": Preset(name="full", subarray="FULL", readpatt="BRIGHT2", ngroups=10, nints=1,
                   dithers=((0.0, 0.0), (2.9, 2.1)), n_stars=400, n_bright=8,
                   n_galaxies=60, cosmic_ray_rate=3e-6),
    "large": Preset(name="large", subarray="FULL", readpatt="RAPID", ngroups=160, nints=2,
                    dithers=((0.0, 0.0),), n_stars=400, n_bright=8, n_galaxies=60,
                    cosmic_ray_rate=3e-6, band_rows=32),
}
"""Named presets: ``tiny`` (tests), ``small`` (demo), ``full`` (benchmarks), ``large`` (memory
benchmark: one 2.7 GB raw exposure, 2 x 160 groups of 2048 x 2048, written piece by piece)."""
