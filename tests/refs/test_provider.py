"""RefProvider: overrides, directory selection, errors, lazy opening and cutting."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from jwdask.errors import ReferenceFileError
from jwdask.refs import RefProvider, cut_to
from tests.refs.conftest import exposure_meta, write_ref


def exposure_ds(meta: dict) -> xr.Dataset:
    """An exposure-shaped Dataset with full-frame coordinates from ``meta["subarray"]``."""
    sub = meta["subarray"]
    y = np.arange(sub["ystart"] - 1, sub["ystart"] - 1 + sub["ysize"])
    x = np.arange(sub["xstart"] - 1, sub["xstart"] - 1 + sub["xsize"])
    return xr.Dataset({"data": (("y", "x"), np.zeros((y.size, x.size), np.float32))},
                      coords={"y": y, "x": x}, attrs={"meta": meta})


def test_override_wins_and_na(tmp_path: Path, meta: dict) -> None:
    refs = tmp_path / "refs"
    refs.mkdir()
    write_ref(refs / "gain_dir.fits", "gain")
    mine = write_ref(tmp_path / "my_gain.fits", "gain")
    provider = RefProvider(overrides={"gain": str(mine), "IPC": "N/A"}, refs_dir=refs)
    assert provider.path("gain", meta) == str(mine.resolve())
    assert provider.record("gain", meta) == str(mine.resolve())
    assert provider.path("ipc", meta) is None
    assert provider.record("ipc", meta) == "N/A"
    with pytest.raises(ReferenceFileError, match="'ipc'.*N/A"):
        provider.open("ipc", meta)
    assert RefProvider(refs_dir=refs).path("gain", meta) == str((refs / "gain_dir.fits").resolve())


def test_directory_selects_detector_readpatt_subarray(tmp_path: Path, meta: dict) -> None:
    write_ref(tmp_path / "a1.fits", "readnoise", header={"DETECTOR": "NRCA1", "READPATT": "RAPID"})
    write_ref(tmp_path / "b1_bright.fits", "readnoise", header={"READPATT": "BRIGHT1"})
    write_ref(tmp_path / "b1_rapid.fits", "readnoise", header={"READPATT": "RAPID"})
    write_ref(tmp_path / "b1_full.fits", "readnoise", shape=(2048, 2048), window=None, subarray="FULL",
              header={"READPATT": "RAPID"}, dq=False)
    provider = RefProvider(refs_dir=tmp_path)
    # Exact SUBARRAY name beats a full frame that merely covers the window.
    assert Path(provider.path("readnoise", meta)).name == "b1_rapid.fits"
    assert Path(provider.path("readnoise", exposure_meta(exposure__readpatt="BRIGHT1"))).name == "b1_bright.fits"
    other = exposure_meta(subarray__name="SUB400P", subarray__xsize=400, subarray__ysize=400)
    assert Path(provider.path("readnoise", other)).name == "b1_full.fits"
    assert Path(provider.path("readnoise", exposure_meta(instrument__detector="NRCA1"))).name == "a1.fits"


def test_directory_window_coverage_and_patterns(tmp_path: Path) -> None:
    # A SUB640 gain covering the exposure's window matches a SUB160 exposure; one off to the side does not.
    write_ref(tmp_path / "far.fits", "gain", subarray="SUB64P", window=(1001, 1001), shape=(64, 64))
    write_ref(tmp_path / "covering.fits", "gain", subarray="SUB640", window=(1, 1), shape=(640, 640), dq=False)
    provider = RefProvider(refs_dir=tmp_path)
    assert Path(provider.path("gain", exposure_meta())).name == "covering.fits"
    write_ref(tmp_path / "flat_sw.fits", "flat", window=None, subarray=None, shape=(2048, 2048), dq=False,
              header={"FILTER": "N/A", "P_FILTER": "F150W|F200W|", "PUPIL": "CLEAR"})
    write_ref(tmp_path / "flat_any_pupil.fits", "flat", window=None, subarray=None, shape=(2048, 2048),
              dq=False, header={"FILTER": "F444W", "PUPIL": "ANY"})
    provider = RefProvider(refs_dir=tmp_path)
    assert Path(provider.path("flat", exposure_meta())).name == "flat_sw.fits"
    assert Path(provider.path("flat", exposure_meta(instrument__filter="F444W",
                                                      instrument__pupil="F405N"))).name == "flat_any_pupil.fits"
    with pytest.raises(ReferenceFileError, match="FILTER=F090W"):
        provider.path("flat", exposure_meta(instrument__filter="F090W"))


def test_directory_useafter(tmp_path: Path) -> None:
    write_ref(tmp_path / "old.fits", "mask", useafter="2022-01-01T00:00:00")
    write_ref(tmp_path / "new.fits", "mask", useafter="2025-06-01T00:00:00")
    write_ref(tmp_path / "future.fits", "mask", useafter="2027-01-01T00:00:00")
    provider = RefProvider(refs_dir=tmp_path)
    assert Path(provider.path("mask", exposure_meta())).name == "new.fits"
    assert Path(provider.path("mask", exposure_meta(observation__date="2023-03-03"))).name == "old.fits"
    with pytest.raises(ReferenceFileError, match="DATE-OBS=2021-01-01T00:00:00"):
        provider.path("mask", exposure_meta(observation__date="2021-01-01"))


def test_nircam_dark_selects_on_noutputs(tmp_path: Path) -> None:
    common = {"EXP_TYPE": "NRC_IMAGE", "READPATT": "RAPID"}
    write_ref(tmp_path / "d4.fits", "dark", shape=(3, 40, 56), window=(101, 201), header={**common, "NOUTPUTS": 4})
    write_ref(tmp_path / "d1.fits", "dark", shape=(3, 40, 56), window=(101, 201), header={**common, "NOUTPUTS": 1})
    provider = RefProvider(refs_dir=tmp_path)
    assert Path(provider.path("dark", exposure_meta())).name == "d1.fits"
    assert Path(provider.path("dark", exposure_meta(exposure__noutputs=4))).name == "d4.fits"


def test_missing_reference_error_names_selectors(tmp_path: Path, meta: dict) -> None:
    write_ref(tmp_path / "a1.fits", "dark", header={"DETECTOR": "NRCA1"})
    with pytest.raises(ReferenceFileError) as err:
        RefProvider(refs_dir=tmp_path).path("dark", meta)
    text = str(err.value)
    assert text.startswith("reference file 'dark': no file in")
    for part in ("INSTRUME=NIRCAM", "DETECTOR=NRCB1", "SUBARRAY=SUB160", "DATE-OBS=2026-01-01T00:00:00"):
        assert part in text
    with pytest.raises(ReferenceFileError, match="'gain'"):
        RefProvider().path("gain", meta)


def test_override_mismatch_and_bad_files(tmp_path: Path, meta: dict) -> None:
    wrong_det = write_ref(tmp_path / "a1_gain.fits", "gain", header={"DETECTOR": "NRCA1"})
    with pytest.raises(ReferenceFileError, match=r"'gain'.*a1_gain\.fits.*DETECTOR=NRCA1.*DETECTOR=NRCB1"):
        RefProvider(overrides={"gain": str(wrong_det)}).path("gain", meta)
    wrong_type = write_ref(tmp_path / "flat.fits", "flat")
    with pytest.raises(ReferenceFileError, match=r"'gain'.*flat\.fits.*REFTYPE=FLAT"):
        RefProvider(overrides={"gain": str(wrong_type)}).path("gain", meta)
    text_file = tmp_path / "notes.fits"
    text_file.write_text("this is not FITS\n" * 10)
    with pytest.raises(ReferenceFileError, match=r"'gain'.*notes\.fits.*not a FITS or ASDF"):
        RefProvider(overrides={"gain": str(text_file)}).path("gain", meta)
    with pytest.raises(ReferenceFileError, match=r"'gain'.*missing\.fits.*no such file"):
        RefProvider(overrides={"gain": str(tmp_path / "missing.fits")}).path("gain", meta)


def test_directory_skips_unreadable_files(tmp_path: Path, meta: dict) -> None:
    (tmp_path / "broken.fits").write_bytes(b"garbage")
    write_ref(tmp_path / "gain.fits", "gain")
    assert Path(RefProvider(refs_dir=tmp_path).path("gain", meta)).name == "gain.fits"


def test_open_is_lazy_with_full_frame_coords(tmp_path: Path, meta: dict) -> None:
    path = write_ref(tmp_path / "gain.fits", "gain", shape=(60, 80), window=(81, 191))
    ds = RefProvider(refs_dir=tmp_path).open("gain", meta, tile=(16, 32))
    assert set(ds.data_vars) == {"sci", "dq"}
    assert isinstance(ds.sci.data, da.Array)
    assert ds.sci.data.chunks == ((16, 16, 16, 12), (32, 32, 16))
    assert ds.y.values[0] == 190 and ds.y.values[-1] == 249
    assert ds.x.values[0] == 80 and ds.x.values[-1] == 159
    assert ds.attrs["filename"] == "gain.fits" and ds.attrs["reftype"] == "gain"
    assert ds.attrs["header"]["REFTYPE"] == "GAIN"
    assert ds.attrs["meta"]["instrument"]["detector"] == "NRCB1"
    # Value at full-frame (y=200, x=100) is row 10, column 20 of the file.
    assert float(ds.sci.sel(y=200, x=100)) == 10 * 1000 + 20 + 1
    assert ds.dq.dtype == np.uint32 and ds.dq.dtype.isnative
    assert path.exists()


def test_open_dims_by_hdu(tmp_path: Path, meta: dict) -> None:
    coeffs = np.ones((3, 60, 80), np.float32)
    write_ref(tmp_path / "lin.fits", "linearity", extra={"COEFFS": coeffs, "INV_COEFFS": coeffs})
    write_ref(tmp_path / "dark.fits", "dark", shape=(4, 60, 80))
    provider = RefProvider(refs_dir=tmp_path)
    lin = provider.open("linearity", meta)
    assert lin.coeffs.dims == ("coeff", "y", "x") and lin.inv_coeffs.dims == ("inv_coeff", "y", "x")
    dark = provider.open("dark", meta)
    assert dark.sci.dims == ("group", "y", "x") and dark.dq.dims == ("y", "x")


def test_open_full_frame_and_kernel(tmp_path: Path, meta: dict) -> None:
    write_ref(tmp_path / "flat.fits", "flat", shape=(2048, 2048), window=None, subarray=None, dq=False,
              header={"FILTER": "F200W", "PUPIL": "CLEAR"})
    write_ref(tmp_path / "ipc.fits", "ipc", shape=(3, 3), window=None, subarray=None, dq=False)
    write_ref(tmp_path / "odd.fits", "gain", shape=(100, 100), window=None, subarray=None)
    provider = RefProvider(refs_dir=tmp_path)
    flat = provider.open("flat", meta)
    assert flat.sizes == {"y": 2048, "x": 2048} and flat.y.values[0] == 0
    cut = cut_to(flat, exposure_ds(meta))
    assert cut.sci.shape == (40, 56)
    np.testing.assert_array_equal(cut.sci.values[0, :3], [200 * 1000 + 100 + 1, 200 * 1000 + 101 + 1,
                                                          200 * 1000 + 102 + 1])
    ipc = provider.open("ipc", meta)
    assert ipc.sci.dims == ("ky", "kx") and "y" not in ipc.coords
    assert cut_to(ipc, exposure_ds(meta)) is ipc
    with pytest.raises(ReferenceFileError, match=r"'gain'.*odd\.fits.*not the full frame"):
        provider.open("gain", meta)


def test_cut_to_and_out_of_bounds(tmp_path: Path, meta: dict) -> None:
    write_ref(tmp_path / "gain.fits", "gain", shape=(60, 80), window=(81, 191))
    ref = RefProvider(refs_dir=tmp_path).open("gain", meta)
    ds = exposure_ds(meta)
    cut = cut_to(ref, ds)
    assert isinstance(cut.sci.data, da.Array)
    np.testing.assert_array_equal(cut.y.values, ds.y.values)
    np.testing.assert_array_equal(cut.x.values, ds.x.values)
    # exposure (y0=200, x0=100) is file row 10, column 20
    assert float(cut.sci.values[0, 0]) == 10 * 1000 + 20 + 1
    outside = exposure_ds(exposure_meta(subarray__xstart=150))
    with pytest.raises(ReferenceFileError, match=r"'gain'.*gain\.fits covers y=190\.\.249 x=80\.\.159.*x=149\.\.204"):
        cut_to(ref, outside)


def test_resolution_is_cached(tmp_path: Path, meta: dict) -> None:
    write_ref(tmp_path / "gain.fits", "gain")
    provider = RefProvider(refs_dir=tmp_path)
    first = provider.path("gain", meta)
    write_ref(tmp_path / "gain2.fits", "gain", useafter="2025-01-01T00:00:00")
    assert provider.path("gain", exposure_meta()) == first


def test_asdf_reference_selection_and_tree(tmp_path: Path, meta: dict) -> None:
    import asdf

    for module, offset in (("A", 1.5), ("B", 2.5)):
        tree = {"meta": {"reftype": "filteroffset", "instrument": {"name": "NIRCAM", "channel": "SHORT",
                                                                   "module": module},
                         "useafter": "2022-01-01T00:00:00"},
                "filters": [{"filter": "F200W", "pupil": "CLEAR", "column_offset": offset, "row_offset": 0.0}]}
        asdf.AsdfFile(tree).write_to(tmp_path / f"offset_{module}.asdf")
    provider = RefProvider(refs_dir=tmp_path)
    assert Path(provider.path("filteroffset", meta)).name == "offset_B.asdf"
    tree = provider.open_asdf("filteroffset", meta)
    assert tree["filters"][0]["column_offset"] == 2.5


def test_open_table(tmp_path: Path, meta: dict) -> None:
    from astropy.io import fits
    from astropy.table import Table

    path = write_ref(tmp_path / "photom.fits", "photom", window=None, subarray=None, shape=(2048, 2048), dq=False)
    table = Table({"filter": ["F200W"], "pupil": ["CLEAR"], "photmjsr": np.array([0.5], np.float32),
                   "uncertainty": np.array([0.01], np.float32)})
    with fits.open(path, mode="append") as hdul:
        hdul.append(fits.table_to_hdu(table))
        hdul[-1].name = "PHOTOM"
    provider = RefProvider(refs_dir=tmp_path)
    got = provider.open_table("photom", meta, "PHOTOM")
    assert got["photmjsr"][0] == pytest.approx(0.5)
    with pytest.raises(ReferenceFileError, match=r"'photom'.*photom\.fits.*no table HDU TIMECOEFF"):
        provider.open_table("photom", meta, "TIMECOEFF")


def test_reference_dq_is_decoded_through_dq_def(tmp_path: Path) -> None:
    """As stdatamodels: DQ bits are translated by DQ_DEF (VALUE -> named flag), others dropped."""
    from astropy.io import fits

    from jwdask import dqflags
    from jwdask.refs.readers import open_image

    path = write_ref(tmp_path / "flat.fits", "flat")
    with fits.open(path, mode="update") as hdul:
        hdul["DQ"].data[:] = 0
        hdul["DQ"].data[0, 0] = 2
        hdul["DQ"].data[0, 1] = 4
        hdul["DQ"].data[0, 2] = 6
        table = fits.BinTableHDU.from_columns(
            [fits.Column("BIT", "J", array=[1]), fits.Column("VALUE", "J", array=[2]),
             fits.Column("NAME", "40A", array=["NO_FLAT_FIELD"]),
             fits.Column("DESCRIPTION", "80A", array=["no flat"])], name="DQ_DEF")
        hdul.append(table)
    dq = open_image("flat", str(path)).dq.values
    assert dq[0, 0] == dqflags.NO_FLAT_FIELD
    assert dq[0, 1] == 0
    assert dq[0, 2] == dqflags.NO_FLAT_FIELD
