"""Simulated raw NIRCam short-wave imaging programs with known truth.

``simulate_program(preset, out_dir, seed)`` writes, under ``out_dir``::

    uncal/   jw<ppppp><ooo><vvv>_02101_<eeeee>_nrcb1_uncal.fits   raw exposures (Level1bModel)
             *_image2_*_asn.json, *_image3_*_asn.json             associations (members are
                                                                  the _rate/_cal products,
                                                                  expected next to them)
    refs/    jwst_nircam_<reftype>_9001.fits|.asdf                CRDS-format references
    refcat.ecsv                                                   Gaia-like star catalog
    truth/   sources.ecsv, <root>_truth_rate.fits, <root>_positions.ecsv,
             <root>_jumps.ecsv, summary.json                      (see jwdask.simulate.truth)

Everything is a deterministic function of the preset and ``seed``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time
from scipy.interpolate import RectBivariateSpline

from jwdask.simulate import associations, detector, geometry, reffiles, scene, truth, uncal
from jwdask.simulate.presets import FASTSLOW, PRESETS, Preset, frame_time

log = logging.getLogger(__name__)

__all__ = ["PRESETS", "Preset", "Program", "simulate_program"]

ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
SLEW_OVERHEAD = 60.0
"""Seconds between the end of one exposure and the start of the next."""


@dataclass(frozen=True)
class Program:
    """A simulated program on disk.

    Attributes
    ----------
    preset : str
        Preset name.
    seed : int
        Random seed.
    out_dir : pathlib.Path
        Root folder.
    uncal : list of pathlib.Path
        Raw exposures, in exposure order.
    refs_dir : pathlib.Path
        Folder of all reference files.
    reference_files : dict
        reftype -> path (one detector).
    image2_asn : list of pathlib.Path
        One image2 association per exposure (in ``uncal/``).
    image3_asn : pathlib.Path
        The image3 association (in ``uncal/``).
    refcat : pathlib.Path
        Reference star catalog (ECSV: ``id, ra, dec [deg], mag [AB], epoch [yr]``).
    truth_dir : pathlib.Path
        Truth folder (:mod:`jwdask.simulate.truth`).
    truth_rate : list of pathlib.Path
        Per exposure truth rate images [DN/s].
    truth_jumps : list of pathlib.Path
        Per exposure injected cosmic rays.
    sources : pathlib.Path
        Truth source list.
    summary : pathlib.Path
        JSON summary.
    """

    preset: str
    seed: int
    out_dir: Path
    uncal: list[Path]
    refs_dir: Path
    reference_files: dict[str, Path]
    image2_asn: list[Path]
    image3_asn: Path
    refcat: Path
    truth_dir: Path
    truth_rate: list[Path]
    truth_jumps: list[Path]
    sources: Path
    summary: Path


def _area_map(ap: geometry.Aperture, n: int, step: int = 64) -> np.ndarray:
    """Full-frame relative pixel area, exact on a coarse grid and spline-interpolated."""
    grid = np.arange(0, n + step, step, dtype=float)
    grid[-1] = n - 1
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    coarse = geometry.relative_area(ap, gx, gy)
    spline = RectBivariateSpline(grid, grid, coarse, kx=3, ky=3)
    full = np.arange(n, dtype=float)
    return spline(full, full)


def _dither_pointing(base: geometry.Pointing, ap: geometry.Aperture, dx: float, dy: float
                     ) -> geometry.Pointing:
    """Pointing whose reference point sits where ideal offset ``(dx, dy)`` [arcsec] was."""
    ang = np.deg2rad(ap.v3_idl_yangle)
    dv2 = ap.vparity * dx * np.cos(ang) + dy * np.sin(ang)
    dv3 = -ap.vparity * dx * np.sin(ang) + dy * np.cos(ang)
    sky = geometry.v2v3_to_sky_model(base)
    ra, dec = sky(base.v2_ref + dv2, base.v3_ref + dv3)
    ra_n, dec_n = sky(base.v2_ref + dv2, base.v3_ref + dv3 + 10.0)
    roll = geometry.position_angle(float(ra), float(dec), float(ra_n), float(dec_n))
    return geometry.Pointing(float(ra), float(dec), roll, base.v2_ref, base.v3_ref)


def _perturb(p: geometry.Pointing, rng: np.random.Generator, size: tuple[float, float],
             roll_rms: float) -> geometry.Pointing:
    """The true pointing: ``p`` moved by ``size`` [arcsec] in a random direction, rolled."""
    amp = rng.uniform(*size)
    phi = rng.uniform(0, 2 * np.pi)
    dra = amp * np.sin(phi) / 3600.0 / np.cos(np.deg2rad(p.dec_ref))
    ddec = amp * np.cos(phi) / 3600.0
    return geometry.Pointing(p.ra_ref + dra, p.dec_ref + ddec, p.roll_ref + rng.normal(0, roll_rms),
                             p.v2_ref, p.v3_ref)


def _offset_arcsec(a: geometry.Pointing, b: geometry.Pointing) -> float:
    da = (b.ra_ref - a.ra_ref) * np.cos(np.deg2rad(a.dec_ref))
    return float(np.hypot(da, b.dec_ref - a.dec_ref) * 3600.0)


def _pointing_dict(p: geometry.Pointing) -> dict[str, float]:
    return dataclasses.asdict(p)


def _headers(preset: Preset, ap: geometry.Aperture, geom: detector.ReadoutGeometry,
             eid: uncal.ExposureId, n_exp: int, index: int, start_mjd: float,
             times: dict[str, Any], header_pointing: geometry.Pointing, filename: str,
             dither: tuple[float, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """PRIMARY and SCI keywords of one exposure."""
    inst = preset.instrument
    fast, slow = FASTSLOW[preset.detector]
    t0 = Time(start_mjd, format="mjd", scale="utc")
    t1 = Time(times["EXPEND"], format="mjd", scale="utc")
    primary: dict[str, Any] = {
        "DATE": "2026-01-01T00:00:00.000", "ORIGIN": "STSCI", "TIMESYS": "UTC", "TIMEUNIT": "s",
        "FILENAME": filename, "FILETYPE": "uncalibrated", "DATAMODL": "Level1bModel",
        "TELESCOP": "JWST", "SDP_VER": "jwdask", "TITLE": "jwdask simulated program",
        "PI_NAME": "Simulator, J.",
        "DATE-OBS": t0.isot[:10], "TIME-OBS": t0.isot[11:23],
        "DATE-BEG": t0.isot, "DATE-END": t1.isot,
        "OBS_ID": eid.obs_id, "VISIT_ID": eid.visit_id, "PROGRAM": eid.program,
        "OBSERVTN": eid.observation, "VISIT": eid.visit, "VISITGRP": eid.visit_group,
        "SEQ_ID": eid.seq_id, "ACT_ID": eid.act_id, "EXPOSURE": eid.exposure,
        "TEMPLATE": "NIRCam Imaging", "OBSLABEL": "jwdask simulation",
        "VISITYPE": "PRIME_TARGETED_FIXED", "NEXPOSUR": n_exp, "INTARGET": False,
        "TARGOOPP": False, "TSOVISIT": False,
        "TARGPROP": "SIMFIELD", "TARGNAME": "SIMFIELD", "TARGTYPE": "FIXED",
        "TARG_RA": preset.target_ra, "TARG_DEC": preset.target_dec,
        "INSTRUME": inst.name, "DETECTOR": preset.detector, "MODULE": preset.detector[3],
        "CHANNEL": inst.channel, "FILTER": preset.filter, "PUPIL": preset.pupil,
        "EXPCOUNT": index + 1, "EXP_TYPE": inst.exp_type, "READPATT": preset.readpatt,
        "NOUTPUTS": geom.noutputs, "NINTS": geom.nints, "INTSTART": 1, "INTEND": geom.nints,
        "NGROUPS": geom.ngroups, "NFRAMES": geom.nframes, "GROUPGAP": geom.groupgap,
        "FRMDIVSR": geom.nframes, "DRPFRMS1": 0, "DRPFRMS3": 0, "NSAMPLES": 1, "TSAMPLE": 10.0,
        "TFRAME": geom.tframe, "TGROUP": geom.tgroup, "NRSTSTRT": 1, "NRESETS": 1,
        "ZEROFRAM": preset.zeroframe, "DATAPROB": False, "SCA_NUM": 486,
        "SUBARRAY": preset.subarray, "SUBSTRT1": geom.xstart, "SUBSTRT2": geom.ystart,
        "SUBSIZE1": geom.xsize, "SUBSIZE2": geom.ysize, "FASTAXIS": fast, "SLOWAXIS": slow,
        "PATTTYPE": "NONE", "PATT_NUM": index + 1, "NUMDTHPT": n_exp, "PATTSTRT": 1,
        "XOFFSET": float(dither[0]), "YOFFSET": float(dither[1]),
        "APERNAME": ap.name, "PPS_APER": ap.name,
    }
    primary.update({k: v for k, v in times.items() if k.isupper() and k not in {"XPOSURE", "TELAPSE",
                                                                                 "MJD-BEG", "MJD-AVG",
                                                                                 "MJD-END"}})
    attitude = geometry.pointing_keywords(ap, header_pointing)
    sci = {
        "BUNIT": "DN", "MJD-BEG": times["MJD-BEG"], "MJD-AVG": times["MJD-AVG"],
        "MJD-END": times["MJD-END"], "XPOSURE": times["XPOSURE"], "TELAPSE": times["TELAPSE"],
        "RADESYS": "ICRS", "RA_V1": attitude["RA_V1"], "DEC_V1": attitude["DEC_V1"],
        "PA_V3": attitude["PA_V3"], "PA_APER": attitude["PA_APER"],
        "RA_REF": header_pointing.ra_ref, "DEC_REF": header_pointing.dec_ref,
        "ROLL_REF": header_pointing.roll_ref, "V2_REF": header_pointing.v2_ref,
        "V3_REF": header_pointing.v3_ref, "VPARITY": ap.vparity, "V3I_YANG": ap.v3_idl_yangle,
        "XREF_SCI": ap.sub_xref - ap.xstart + 1, "YREF_SCI": ap.sub_yref - ap.ystart + 1,
    }
    return primary, sci


def _resolve(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}") from None


def simulate_program(preset: str | Preset, out_dir: str | Path, seed: int = 0) -> Program:
    """Simulate a NIRCam SW imaging program: raw exposures, references, associations, truth.

    Parameters
    ----------
    preset : str or Preset
        ``"tiny"``, ``"small"``, ``"full"`` or a :class:`Preset`.
    out_dir : str or pathlib.Path
        Output folder (created; existing files are overwritten).
    seed : int
        Random seed; the output is a deterministic function of ``(preset, seed)``.

    Returns
    -------
    Program
        Where everything is.
    """
    t_start = time.perf_counter()
    p = _resolve(preset)
    out = Path(out_dir)
    uncal_dir, refs_dir, truth_dir = out / "uncal", out / "refs", out / "truth"
    for d in (uncal_dir, refs_dir, truth_dir):
        d.mkdir(parents=True, exist_ok=True)
    root_seq = np.random.SeedSequence(seed)
    s_props, s_point, s_scene, s_cr, s_ramps = root_seq.spawn(5)
    inst = p.instrument
    n = inst.full_size

    ap = geometry.aperture(inst.siaf_name, p.detector, p.subarray)
    distortion = geometry.distortion_model(ap, n)
    pixar_a2 = geometry.nominal_pixel_area(ap)
    pixar_sr = pixar_a2 / ARCSEC_PER_RAD**2
    noutputs = inst.n_amplifiers if p.subarray == "FULL" else 1
    geom = detector.ReadoutGeometry(
        xstart=ap.xstart, ystart=ap.ystart, xsize=ap.xsize, ysize=ap.ysize, noutputs=noutputs,
        tframe=frame_time(ap.xsize, ap.ysize, noutputs), nframes=p.nframes, groupgap=p.groupgap,
        ngroups=p.ngroups, nints=p.nints, full_size=n)
    area = _area_map(ap, n)
    scale = geom.xsize * geom.ysize / n**2
    props = detector.make_properties(
        np.random.default_rng(s_props), full_size=n, n_refpix=inst.n_refpix,
        n_dead=int(round(p.n_dead * scale)), n_hot=int(round(p.n_hot * scale)), area=area,
        sub_slices=geom.slices)

    base = geometry.Pointing(p.target_ra, p.target_dec, p.roll, ap.sub_v2_ref, ap.sub_v3_ref)
    point_rng = np.random.default_rng(s_point)
    commanded = [_dither_pointing(base, ap, dx, dy) for dx, dy in p.dithers]
    true = [_perturb(c, point_rng, p.pointing_error, p.roll_error) for c in commanded]
    sources = scene.make_sources(
        np.random.default_rng(s_scene), ap, true[0], n_stars=p.n_stars, star_mag=p.star_mag,
        n_bright=p.n_bright, bright_mag=p.bright_mag, n_galaxies=p.n_galaxies,
        galaxy_mag=p.galaxy_mag)
    sources_path = truth_dir / "sources.ecsv"
    scene.sources_table(sources).write(sources_path, overwrite=True)

    ys, xs = geom.slices
    live = props.live[ys, xs]
    cr_rng = np.random.default_rng(s_cr)
    exposure_seeds = s_ramps.generate_state(len(p.dithers))
    uncal_paths, rate_paths, jump_paths, roots, exposures = [], [], [], [], []
    start_mjd = Time(f"{p.date_obs}T00:00:00", scale="utc").mjd
    for i, (dither, cmd, tru) in enumerate(zip(p.dithers, commanded, true)):
        eid = uncal.ExposureId(p.program, p.observation, p.visit, "02", "1", "01", f"{i + 1:05d}",
                               p.detector)
        root = uncal.file_root(eid)
        image, positions = scene.render(sources, ap, tru, filter_name=p.filter, pixar_sr=pixar_sr,
                                        sky=p.sky, area=area[ys, xs])
        rate = np.where(live, image * props.flat[ys, xs], 0.0)
        hits = detector.cosmic_rays(cr_rng, geom, p.cosmic_ray_rate, live)
        times = uncal.exposure_times(geom, start_mjd)
        primary, sci_hdr = _headers(p, ap, geom, eid, len(p.dithers), i, start_mjd, times, cmd,
                                    f"{root}_uncal.fits", dither)
        uncal_path = uncal_dir / f"{root}_uncal.fits"
        sci, zero = uncal.create_uncal(uncal_path, primary, sci_hdr, geom, start_mjd, times["int_duration"],
                                       zeroframe=p.zeroframe)
        detector.simulate_ramps(props, geom, rate, hits, seed=(int(exposure_seeds[i]),), band_rows=p.band_rows,
                                sci=sci, zeroframe=zero)
        sci.flush()
        if zero is not None:
            zero.flush()
        del sci, zero
        uncal_paths.append(uncal_path)
        rate_paths.append(truth.write_rate(truth_dir / f"{root}_truth_rate.fits", rate,
                                           geom.xstart, geom.ystart))
        positions.write(truth_dir / f"{root}_positions.ecsv", overwrite=True)
        jump_path = truth_dir / f"{root}_jumps.ecsv"
        truth.jumps_table(hits, props.gain).write(jump_path, overwrite=True)
        jump_paths.append(jump_path)
        roots.append(root)
        exposures.append({"root": root, "uncal": uncal_paths[-1].name, "dither_arcsec": dither,
                          "header_pointing": _pointing_dict(cmd), "true_pointing": _pointing_dict(tru),
                          "pointing_error_arcsec": _offset_arcsec(cmd, tru),
                          "roll_error_deg": tru.roll_ref - cmd.roll_ref,
                          "expstart": start_mjd, "n_jumps": len(hits)})
        start_mjd = times["EXPEND"] + SLEW_OVERHEAD / uncal.SECONDS_PER_DAY

    ctx = reffiles.RefContext(
        instrument=inst.name, detector=p.detector, channel=inst.channel, module=p.detector[3],
        exp_type=inst.exp_type, filter=p.filter, pupil=p.pupil, readpatt=p.readpatt,
        subarray=p.subarray, noutputs=noutputs, fastaxis=FASTSLOW[p.detector][0],
        slowaxis=FASTSLOW[p.detector][1], pixar_sr=pixar_sr, pixar_a2=pixar_a2)
    refs = reffiles.write_reference_files(refs_dir, ctx, props, geom, distortion, ap)

    image2 = associations.write_image2(uncal_dir, p.program, roots)
    product = f"jw{p.program}-o{p.observation}_t001_{inst.name.lower()}_{p.pupil.lower()}-{p.filter.lower()}"
    if p.subarray != "FULL":
        product += f"-{p.subarray.lower()}"
    image3 = associations.write_image3(uncal_dir, p.program, roots, product)

    stars = [s for s in sources if s.kind == "star"]
    refcat = Table({"id": np.array([s.id for s in stars], np.int64),
                    "ra": np.array([s.ra for s in stars]), "dec": np.array([s.dec for s in stars]),
                    "mag": np.array([s.mag_ab for s in stars]),
                    "epoch": np.full(len(stars), 2016.0)})
    refcat["ra"].unit = refcat["dec"].unit = "deg"
    refcat_path = out / "refcat.ecsv"
    refcat.write(refcat_path, overwrite=True)

    summary_path = truth.write_summary(truth_dir / "summary.json", {
        "preset": p.name, "seed": seed, "detector": p.detector, "subarray": p.subarray,
        "filter": p.filter, "pupil": p.pupil, "readpatt": p.readpatt, "ngroups": p.ngroups,
        "nints": p.nints, "tframe": geom.tframe, "tgroup": geom.tgroup,
        "substrt": [geom.xstart, geom.ystart], "subsize": [geom.xsize, geom.ysize],
        "pixar_sr": pixar_sr, "pixar_a2": pixar_a2, "photmjsr": scene.PHOTMJSR[p.filter],
        "sky_mjysr": p.sky, "n_sources": len(sources), "n_stars": len(stars),
        "psf": {"model": "moffat", "beta": scene.MOFFAT_BETA, "fwhm_arcsec": scene.PSF_FWHM[p.filter]},
        "exposures": exposures, "reference_files": {k: v.name for k, v in refs.items()},
        "image2_asn": [a.name for a in image2], "image3_asn": image3.name,
    })
    log.info("simulated preset %s (seed %d): %d exposures in %.1f s", p.name, seed, len(uncal_paths),
             time.perf_counter() - t_start)
    return Program(preset=p.name, seed=seed, out_dir=out, uncal=uncal_paths, refs_dir=refs_dir,
                   reference_files=refs, image2_asn=image2, image3_asn=image3, refcat=refcat_path,
                   truth_dir=truth_dir, truth_rate=rate_paths, truth_jumps=jump_paths,
                   sources=sources_path, summary=summary_path)
