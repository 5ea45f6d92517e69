"""Synthetic cal-like exposures with a distorted gwcs (no jwst needed)."""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from astropy import coordinates
from astropy.modeling import models
from gwcs import WCS
from gwcs import coordinate_frames as cf

SCALE = 0.031 / 3600.0
"""Nominal pixel scale [deg]."""


def distorted_wcs(ny: int, nx: int, ra: float, dec: float, roll: float) -> WCS:
    """detector -> ICRS: centre, mild quadratic distortion, scale/rotation, TAN at (ra, dec)."""
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    centre = models.Shift(-cx) & models.Shift(-cy)
    dx = models.Polynomial2D(2, c1_0=1.0, c2_0=2e-5, c1_1=-1e-5, c0_2=1.5e-5)
    dy = models.Polynomial2D(2, c0_1=1.0, c2_0=-1e-5, c1_1=2e-5, c0_2=1e-5)
    distortion = models.Mapping((0, 1, 0, 1)) | dx & dy
    ix = models.Polynomial2D(2, c1_0=1.0, c2_0=-2e-5, c1_1=1e-5, c0_2=-1.5e-5)
    iy = models.Polynomial2D(2, c0_1=1.0, c2_0=1e-5, c1_1=-2e-5, c0_2=-1e-5)
    distortion.inverse = models.Mapping((0, 1, 0, 1)) | ix & iy
    t = math.radians(roll)
    matrix = SCALE * np.array([[-math.cos(t), math.sin(t)], [math.sin(t), math.cos(t)]])
    sky = (models.AffineTransformation2D(matrix=matrix) | models.Pix2Sky_TAN()
           | models.RotateNative2Celestial(ra, dec, 180.0))
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=("pix", "pix"))
    world = cf.CelestialFrame(reference_frame=coordinates.ICRS(), name="world", unit=("deg", "deg"))
    wcs = WCS([(detector, centre | distortion | sky), (world, None)])
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return wcs


def s_region(wcs: WCS, ny: int, nx: int) -> str:
    """S_REGION of the bounding-box corners."""
    ra, dec = wcs(np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]), np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]),
                  with_bounding_box=False)
    return "POLYGON ICRS  " + " ".join(f"{r % 360:.9f} {d:.9f}" for r, d in zip(ra, dec, strict=True))


def exposure(k: int, *, ny: int = 90, nx: int = 110, offset: tuple[float, float] = (0.0, 0.0),
             roll: float = 30.0, seed: int = 0, chunks: int = 48) -> xr.Dataset:
    """A cal-like Dataset (sci, err, dq, var_*) [MJy/sr] with a distorted gwcs in attrs."""
    ra0, dec0 = 53.16, -27.78
    ra = ra0 + offset[0] * SCALE / math.cos(math.radians(dec0))
    dec = dec0 + offset[1] * SCALE
    wcs = distorted_wcs(ny, nx, ra, dec, roll)
    rng = np.random.default_rng(seed + 17 * k)
    yy, xx = np.mgrid[0:ny, 0:nx]
    sci = np.full((ny, nx), 0.3, dtype=np.float32)
    for _ in range(6):
        x0, y0 = rng.uniform(5, nx - 5), rng.uniform(5, ny - 5)
        sci += (50 * rng.random() * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 3.0)).astype(np.float32)
    vr = (1e-3 * (1 + rng.random((ny, nx)))).astype(np.float32)
    vp = (1e-3 * np.abs(sci)).astype(np.float32)
    vf = ((0.01 * sci) ** 2).astype(np.float32)
    sci += rng.normal(0, 0.03, (ny, nx)).astype(np.float32)
    dq = np.zeros((ny, nx), dtype=np.uint32)
    dq.flat[rng.integers(0, ny * nx, 15)] = 1
    dq.flat[rng.integers(0, ny * nx, 10)] = 4
    dq.flat[rng.integers(0, ny * nx, 5)] = 512
    sci[dq & 1 == 1] = np.nan
    arrays = {"sci": sci, "err": np.sqrt(vr + vp + vf), "dq": dq, "var_poisson": vp, "var_rnoise": vr,
              "var_flat": vf}
    variables = {name: xr.DataArray(da.from_array(a, chunks=chunks), dims=("y", "x")) for name, a in arrays.items()}
    variables["sci"].attrs["units"] = "MJy/sr"
    meta: dict[str, Any] = {
        "filename": f"jw09001001001_02101_{k + 1:05d}_nrcb1_cal.fits",
        "observation": {"program_number": "09001", "observation_number": "001", "visit_number": "001",
                        "visit_group": "02", "sequence_id": "1", "activity_id": "01",
                        "exposure_number": f"{k + 1:05d}"},
        "exposure": {"exposure_time": 100.0 + k, "measurement_time": 90.0 + k, "duration": 120.0,
                     "start_time": 60000.0 + k, "end_time": 60000.01 + k},
        "wcsinfo": {"s_region": s_region(wcs, ny, nx), "ra_ref": ra, "dec_ref": dec, "roll_ref": roll,
                    "v3yangle": 0.0, "vparity": -1},
        "background": {"level": 0.05, "subtracted": False},
        "bunit_data": "MJy/sr",
    }
    return xr.Dataset(variables, coords={"y": np.arange(ny), "x": np.arange(nx)},
                      attrs={"meta": meta, "wcs": wcs, "source": meta["filename"]})
