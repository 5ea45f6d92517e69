"""Header blending of resampled products: the blended metadata and the ``HDRTAB`` table.

When several exposures are drizzled into one product, jwst keeps the first exposure's
metadata, combines a few keywords across exposures with the ``blend_rule`` of the ImageModel
schema (EXPSTART the minimum, EXPEND the maximum, DETECTOR the common value or ``MULTIPLE``...)
and writes an ``HDRTAB`` binary table with one row per exposure and one column per schema
keyword marked ``blend_table`` (image3.md §6.5). :func:`blend` does the same on jwdask's
nested ``meta`` dicts. The rules and columns below are those of the stdatamodels 6 ImageModel
schema; ``python -m jwdask.resample.blend`` prints them from an installed stdatamodels
(``reference`` extra) and ``tests/resample/test_blend.py`` checks that they agree.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from jwdask.io import keywords

__all__ = ["BLEND_RULES", "I2D_IGNORE", "blend", "blended_meta", "hdrtab", "hdrtab_paths"]

BLEND_RULES: dict[str, str] = {
    "observation.date": "min", "observation.time": "min", "observation.date_beg": "min",
    "observation.date_end": "max", "instrument.detector": "multi", "instrument.module": "multi",
    "instrument.filter": "multi", "instrument.filter_wheel_offset": "max",
    "instrument.filter_wheel_tolerance": "wheeltol", "instrument.pupil_wheel_offset": "max",
    "instrument.pupil_wheel_tolerance": "wheeltol", "instrument.grating": "multi", "instrument.band": "multi",
    "exposure.start_time": "min", "exposure.start_time_mjd": "min", "exposure.mid_time": "mean",
    "exposure.mid_time_mjd": "mean", "exposure.end_time": "max", "exposure.end_time_mjd": "max",
    "exposure.start_time_tdb": "min", "exposure.mid_time_tdb": "mean", "exposure.end_time_tdb": "max",
    "exposure.integration_start": "min", "exposure.integration_end": "max", "exposure.exposure_time": "sum",
    "exposure.effective_exposure_time": "sum", "exposure.measurement_time": "sum", "exposure.duration": "sum",
    "exposure.elapsed_exposure_time": "sum",
}
"""Meta path -> blend rule (the schema's ``mindate``/``mintime``/``mindatetime`` are ``min`` on
ISO strings, likewise ``max``; ``first`` rules are left out: the first exposure's value is kept)."""

I2D_IGNORE = ("photometry.pixelarea_steradians", "photometry.pixelarea_arcsecsq", "filename")
"""Paths jwst's resample leaves out of the blend (the output's own values replace them)."""

_HDRTAB_PATHS = """
: date origin time_sys filename data_processing_software_version prd_software_version
    oss_software_version guide_star_catalog_version calibration_software_version
    calibration_software_revision model_type telescope hga_move hga_start_time hga_stop_time pwfseet
    nwfsest
asn: pool_name table_name
program: title pi_name category sub_category science_category continuation_id
observation: date time date_beg date_end obs_id visit_id program_number observation_number
    visit_number visit_group sequence_id activity_id exposure_number bkgdtarg template
    observation_label
visit: engineering_quality engdb_pointing_quality type start_time status total_exposures
    internal_target too_visit tsovisit exp_only
target: proposer_name catalog_name type ra dec ra_uncertainty dec_uncertainty proper_motion_ra
    proper_motion_dec proper_motion_epoch proposer_ra proposer_dec source_type_apt
instrument: name detector module channel filter filter_wheel_offset filter_wheel_tolerance pupil
    pupil_imaging_lens pupil_wheel_offset pupil_wheel_tolerance grating band fixed_slit
    focus_position pre_image_id ccc_state coronagraph msa_state msa_metadata_file msa_metadata_id
    msa_configuration_id lamp_state lamp_mode gwa_xtilt gwa_ytilt gwa_xp_v gwa_yp_v gwa_pxav
    gwa_pyav gwa_tilt filter_position pupil_position
exposure: count prime_parallel type start_time start_time_mjd mid_time mid_time_mjd end_time
    end_time_mjd start_time_tdb mid_time_tdb end_time_tdb readpatt hybrid_full_frame segment_number
    segment_total noutputs nints integration_start integration_end ngroups nframes miri_fsw_ngroups
    miri_fsw_nframes frame_divisor groupgap drop_frames1 drop_frames3 nsamples sample_time
    frame_time group_time integration_time exposure_time effective_exposure_time measurement_time
    duration elapsed_exposure_time nresets_at_start nresets_between_ints zero_frame data_problem
    sca_num datamode nrs_normal nrs_reference clock_adjust_rate gain_factor imprint psf_reference
    self_reference_survey
subarray: name subarray_short subarray_long xstart ystart xsize ysize fastaxis slowaxis detxcor
    detycor detxsiz detysiz multistripe_reads1 multistripe_skips1 multistripe_reads2
    multistripe_skips2 repeat_stripe interleave_reads1 superstripe_step num_superstripe
dither: primary_type primary_dither_type primary_points position_number pattern_start total_points
    total_cycling_points dither_points nod_type pattern_size small_grid_pattern
    subpixel_total_points subpixel_pattern spectral_position_number spectral_total_points
    spectral_step_size spectral_offset spatial_position_number spatial_total_points
    spatial_step_size spatial_offset x_offset y_offset
ephemeris: reference_frame type time spatial_x_bary spatial_y_bary spatial_z_bary spatial_x_geo
    spatial_y_geo spatial_z_geo velocity_x_bary velocity_y_bary velocity_z_bary velocity_x_geo
    velocity_y_geo velocity_z_geo
aperture: name pps_name position_angle
velocity_aberration: va_ra_ref va_dec_ref scale_factor
time: barycentric_correction barycentric_expstart barycentric_expend barycentric_expmid
    heliocentric_correction heliocentric_expstart heliocentric_expend heliocentric_expmid
nircam_focus: fam_la1 fastep1 faunit1 faphase1 fa1value fam_la2 fastep2 faunit2 faphase2 fa2value
    fam_la3 fastep3 faunit3 faphase3 fa3value
nirspec_wfsc: rma_pos rma_step
guidestar: gs_order gs_start_time gs_stop_time gs_id gs_ra gs_dec gs_ura gs_udec gs_mag gs_umag
    gs_v3_pa_science gs_pcs_mode visit_end_time fgs_aperture gs_ideal_x gs_ideal_y gs_acq_exec_stat
    gs_ctd_x gs_ctd_y gs_epoch gs_mura gs_mudec gs_para
ref_file: crds.sw_version crds.context_used area.name bkg.name badshutter.name barshadow.name
    camera.name chromcorr.name collimator.name sirskernel.name cubepar.name dark.name disperser.name
    distortion.name emicorr.name extract1d.name filteroffset.name flat.name dflat.name fflat.name
    sflat.name fore.name fpa.name fringe.name fringefreq.name gain.name ifufore.name ifupost.name
    ifuslicer.name ipc.name lastframe.name linearity.name mask.name msa.name mrsxartcorr.name
    mrsptcorr.name nrm.name ote.name pastasoss.name pathloss.name persat.name photom.name
    psfmask.name readnoise.name refpix.name regions.name resample.name resolution.name reset.name
    rscd.name saturation.name speckernel.name specprofile.name spectrace.name specwcs.name
    straylight.name superbias.name throughput.name trapdensity.name trappars.name
    tso_photometry.name v2v3.name wavecorr.name wavelengthrange.name wavemap.name
cal_step: adaptive_trace_model align_psfs ami_analyze ami_normalize assign_wcs assign_mtwcs
    bkg_subtract badpix_selfcal barshadow charge_migration clean_flicker_noise combine_1d cube_build
    dark_sub dq_init emicorr emission err_init extract_1d extract_2d firstframe flat_field fringe
    gain_scale group_scale guider_cds imprint ipc jump klip lastframe linearity master_background
    msa_flagging outlier_detection pathloss persistence photom picture_frame pixel_replace ramp_fit
    refpix resample residual_fringe reset rscd saturation skymatch source_catalog spectral_leak
    srctype stack_psfs straylight superbias targ_centroid tso_photometry tweakreg wavecorr
    wfs_combine wfss_contam white_light
background: method level subtracted scaling_factor
: bunit_data
photometry: conversion_megajanskys conversion_microjanskys pixelarea_steradians pixelarea_arcsecsq
coordinates: reference_frame
pointing: ra_v1 dec_v1 pa_v3
wcsinfo: wcsaxes crpix1 crpix2 crpix3 crval1 crval2 crval3 ctype1 ctype2 ctype3 cunit1 cunit2 cunit3
    cdelt1 cdelt2 cdelt3 pc1_1 pc1_2 pc1_3 pc2_1 pc2_2 pc2_3 pc3_1 pc3_2 pc3_3 cd1_1 cd1_2 cd2_1
    cd2_2 s_region waverange_start waverange_end dispersion_direction spectral_order v2_ref v3_ref
    vparity v3yangle ra_ref dec_ref roll_ref
"""
"""The ``blend_table`` paths of the ImageModel schema in schema order, one ``section: names``
entry per run of paths sharing their first part (``:`` alone for top-level paths)."""


def _multi(values: Sequence[Any]) -> Any:
    unique = set(values)
    return next(iter(unique)) if len(unique) == 1 else "MULTIPLE"


def _wheeltol(values: Sequence[Any]) -> str:
    if any(v == "outside calibration tolerance" for v in values):
        return "outside calibration tolerance"
    return "within commanded tolerance"


RULES: dict[str, Callable[[Sequence[Any]], Any]] = {
    "multi": _multi, "wheeltol": _wheeltol, "min": min, "max": max, "sum": np.sum,
    "mean": lambda values: float(np.mean(values)),
}


@functools.cache
def hdrtab_paths() -> tuple[str, ...]:
    """The meta paths that become ``HDRTAB`` columns, in schema (column) order."""
    paths = []
    for entry in " ".join(_HDRTAB_PATHS.split("\n    ")).strip().splitlines():
        section, _, names = entry.partition(":")
        paths += [f"{section}.{n}" if section else n for n in names.split()]
    return tuple(paths)


def blended_meta(metas: Sequence[Mapping[str, Any]], ignore: Sequence[str] = I2D_IGNORE) -> dict[str, Any]:
    """A copy of the first meta with every :data:`BLEND_RULES` path that some input has set to
    its rule applied over the inputs that have it (paths in ``ignore`` keep the first value)."""
    out = copy.deepcopy(dict(metas[0]))
    for path, rule in BLEND_RULES.items():
        if path in ignore:
            continue
        values = [v for m in metas if (v := keywords.get(m, path)) is not None]
        if values:
            keywords.put(out, path, _plain(RULES[rule](values)))
    return out


def hdrtab(metas: Sequence[Mapping[str, Any]]) -> Table:
    """The ``HDRTAB`` table: one row per input, one column (named by its FITS keyword) per
    schema path set in at least one input; a value missing from a row is NaN, as in jwst
    (so a string column then holds ``"nan"`` and an integer column becomes float)."""
    by_path = keywords.by_path()
    columns, names = [], []
    for path in hdrtab_paths():
        values = [keywords.get(m, path) for m in metas]
        if all(v is None or isinstance(v, Mapping) for v in values):
            continue
        columns.append(np.array([np.nan if v is None or isinstance(v, Mapping) else v for v in values]))
        names.append(by_path[tuple(path.split("."))].name)
    return Table(columns, names=names)


def blend(metas: Sequence[Mapping[str, Any]], ignore: Sequence[str] = I2D_IGNORE) -> tuple[dict[str, Any], Table]:
    """:func:`blended_meta` and :func:`hdrtab` of the inputs' metas."""
    if not metas:
        msg = "blend: no input metadata"
        raise ValueError(msg)
    return blended_meta(metas, ignore), hdrtab(metas)


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (meta stays JSON-serialisable)."""
    return value.item() if isinstance(value, np.generic) else value


def _schema_listing() -> str:
    """The rules and the ``HDRTAB`` paths of the installed stdatamodels ImageModel schema."""
    from jwst.model_blender._schemautil import parse_schema
    from stdatamodels.jwst import datamodels

    columns, rules, _ = parse_schema(datamodels.ImageModel().schema)
    lines = [f"{path[5:]}\t{rule}" for path, rule in rules.items() if rule != "first"]
    lines += [f"{path[5:]}\t{column}" for path, column in columns.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(_schema_listing())
