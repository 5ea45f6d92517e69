"""Run the official jwst pipeline offline on simulated inputs (for the `reference` tests)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

SERVER_CONFIG = (
    "{'observatory': 'jwst', 'operational_context': 'jwst_9001.pmap', 'edit_context': "
    "'jwst_9001.pmap', 'versions_context': 'jwst_9001.pmap', 'bad_files': '', "
    "'bad_files_list': [], 'force_remote_mode': False, 'last_synced': '2026-01-01 00:00:00', "
    "'crds_version': {}, 'mapping_url': {}, 'reference_url': {}, 'download_metadata_chunks': 50}\n")


def offline_crds(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point CRDS at an empty local cache so that jwst never reaches the network."""
    config = root / "crds" / "config" / "jwst"
    config.mkdir(parents=True, exist_ok=True)
    (config / "server_config").write_text(SERVER_CONFIG)
    for key, value in {"CRDS_PATH": str(root / "crds"), "CRDS_MODE": "local",
                       "CRDS_SERVER_URL": "https://jwst-serverless-mode.stsci.edu",
                       "CRDS_CONTEXT": "jwst_9001.pmap",
                       "STPIPE_DISABLE_CRDS_STEPPARS": "True"}.items():
        monkeypatch.setenv(key, value)


def detector1_overrides(reference_files: Mapping[str, Path]) -> dict[str, dict[str, object]]:
    """Detector1Pipeline step arguments that use exactly the simulator's reference files."""
    refs = {k: str(v) for k, v in reference_files.items()}
    return {
        "dq_init": {"override_mask": refs["mask"]},
        "saturation": {"override_saturation": refs["saturation"], "override_superbias": refs["superbias"]},
        "ipc": {"override_ipc": refs["ipc"]},
        "superbias": {"override_superbias": refs["superbias"]},
        "refpix": {"override_refpix": "N/A", "override_sirskernel": "N/A"},
        "linearity": {"override_linearity": refs["linearity"]},
        "dark_current": {"override_dark": refs["dark"]},
        "jump": {"override_gain": refs["gain"], "override_readnoise": refs["readnoise"]},
        "ramp_fit": {"override_gain": refs["gain"], "override_readnoise": refs["readnoise"]},
        "gain_scale": {"override_gain": refs["gain"]},
        "persistence": {"skip": True}, "charge_migration": {"skip": True},
        "clean_flicker_noise": {"skip": True},
    }


def run_official_detector1(uncal: Path, reference_files: Mapping[str, Path], out_dir: Path,
                           monkeypatch: pytest.MonkeyPatch, **step_params: dict[str, object]) -> Path:
    """Run ``jwst.pipeline.Detector1Pipeline`` on ``uncal``; return the ``_rate.fits`` path."""
    pipeline = pytest.importorskip("jwst.pipeline")
    offline_crds(out_dir, monkeypatch)
    steps = detector1_overrides(reference_files)
    for step, params in step_params.items():
        steps.setdefault(step, {}).update(params)
    pipe = pipeline.Detector1Pipeline(steps=steps, output_dir=str(out_dir), save_results=True)
    pipe.prefetch_references = False
    pipe.run(str(uncal))
    return out_dir / uncal.name.replace("_uncal", "_rate")


def image2_overrides(reference_files: Mapping[str, Path]) -> dict[str, dict[str, object]]:
    """Image2Pipeline step arguments that use exactly the simulator's reference files."""
    refs = {k: str(v) for k, v in reference_files.items()}
    return {
        "assign_wcs": {"override_distortion": refs["distortion"], "override_filteroffset": refs["filteroffset"]},
        "flat_field": {"override_flat": refs["flat"]},
        "photom": {"override_photom": refs["photom"], "override_area": refs["area"]},
        "resample": {"skip": True},
    }


def with_na_defaults(pipeline_cls: type, steps: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """``steps`` with every reference type a step could ask CRDS for set to ``N/A`` unless given
    (jwst then never needs a CRDS context)."""
    out = {name: dict(params) for name, params in steps.items()}
    for name, step_cls in pipeline_cls.step_defs.items():
        params = out.setdefault(name, {})
        for reftype in getattr(step_cls, "reference_file_types", ()):
            params.setdefault(f"override_{reftype}", "N/A")
    return out


def run_official_image2(rate: Path, reference_files: Mapping[str, Path], out_dir: Path,
                        monkeypatch: pytest.MonkeyPatch, **step_params: dict[str, object]) -> Path:
    """Run ``jwst.pipeline.Image2Pipeline`` on a rate file; return the ``_cal.fits`` path."""
    pipeline = pytest.importorskip("jwst.pipeline")
    offline_crds(out_dir, monkeypatch)
    steps = image2_overrides(reference_files)
    for step, params in step_params.items():
        steps.setdefault(step, {}).update(params)
    steps = with_na_defaults(pipeline.Image2Pipeline, steps)
    pipe = pipeline.Image2Pipeline(steps=steps, output_dir=str(out_dir), save_results=True)
    pipe.prefetch_references = False
    pipe.run(str(rate))
    return out_dir / rate.name.replace("_rate", "_cal")


def image3_overrides(reference_files: Mapping[str, Path], refcat: Path | None = None) -> dict[str, dict[str, object]]:
    """Image3Pipeline step arguments that use exactly the simulator's reference files; tweakreg
    aligns to ``refcat`` (the simulator's ``refcat.ecsv``) or, without it, only relatively."""
    refs = {k: str(v) for k, v in reference_files.items()}
    return {
        "tweakreg": {"abs_refcat": str(refcat) if refcat is not None else ""},
        "source_catalog": {"override_apcorr": refs["apcorr"], "override_abvegaoffset": refs["abvegaoffset"]},
    }


def run_official_image3(asn_path: Path, reference_files: Mapping[str, Path], out_dir: Path,
                        monkeypatch: pytest.MonkeyPatch, refcat: Path | None = None,
                        **step_params: dict[str, object]) -> Path:
    """Run ``jwst.pipeline.Image3Pipeline`` on an image3 association of ``_cal`` files; return
    the ``_i2d.fits`` path (the ``_cat.ecsv`` catalog is written next to it)."""
    import json

    pipeline = pytest.importorskip("jwst.pipeline")
    offline_crds(out_dir, monkeypatch)
    steps = image3_overrides(reference_files, refcat)
    for step, params in step_params.items():
        steps.setdefault(step, {}).update(params)
    steps = with_na_defaults(pipeline.Image3Pipeline, steps)
    pipe = pipeline.Image3Pipeline(steps=steps, output_dir=str(out_dir), save_results=True)
    pipe.prefetch_references = False
    pipe.run(str(asn_path))
    product = json.loads(Path(asn_path).read_text())["products"][0]["name"]
    return out_dir / f"{product}_i2d.fits"
