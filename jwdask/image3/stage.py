"""The Image3 stage as a pipeline: what flows between its steps and how its products are written.

Detector1 and Image2 steps take one exposure; Image3 steps take an association. An
:class:`Image3Data` carries the association's exposures (cal Datasets, aligned and flagged
step by step), then the mosaic (i2d, lazy, chunked by output tile) and the source catalog
(a delayed table computed from the mosaic when the products are written). The adapters
below let the Image3 step functions (lists of Datasets in, lists out) be pipeline steps.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import logging
import posixpath
from collections.abc import Callable, Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr

from jwdask.asn import AssociationFile
from jwdask.errors import ParameterError
from jwdask.image3 import outlier_detection as _outlier
from jwdask.image3 import resample as _resample
from jwdask.image3 import skymatch as _skymatch
from jwdask.image3 import source_catalog as _catalog
from jwdask.image3 import tweakreg as _tweakreg
from jwdask.io import keywords
from jwdask.io.products import PendingWrite, prepare_write
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Image3Data:
    """An association on its way through Image3."""

    exposures: tuple[xr.Dataset, ...]
    """Calibrated exposures (``_cal`` Datasets), updated by tweakreg, skymatch, outlier_detection."""
    product_name: str
    """The association's product name: the root of ``_i2d``, ``_segm``, ``_cat.ecsv``."""
    asn_id: str
    """The association id (``o001``...): part of each exposure's ``_crf`` name."""
    mosaic: xr.Dataset | None = None
    """The drizzled mosaic (i2d layout), once resample has run."""
    catalog: Any = None
    """A delayed ``(QTable or None, segmentation labels or None)`` once source_catalog has run."""
    singles: tuple[xr.Dataset, ...] = ()
    """With resample ``single=True``: one i2d per exposure group instead of the mosaic."""
    intermediates: tuple[tuple[str, str, xr.Dataset], ...] = ()
    """Extra products ``(file name, product kind, Dataset)``: outlier_detection's
    ``save_intermediate_results`` (``_outlier_i2d``, ``_median``, ``_blot``)."""

    @classmethod
    def from_association(cls, asn: AssociationFile, exposures: Sequence[xr.Dataset]) -> Image3Data:
        """The association's science exposures on their way through Image3, each carrying the
        association's pool and file name (``meta.asn.pool_name``/``table_name``: ASNPOOL,
        ASNTABLE) as jwst's ModelLibrary gives its members; the crf files, the HDRTAB rows and
        the products made from the exposures (i2d, segm, intermediates) inherit them. A
        missing ``asn_pool`` leaves each exposure's own value, as jwst."""
        return cls(tuple(with_association(ds, asn.pool_name, asn.table_name) for ds in exposures),
                   asn.product_name, asn.asn_id or "a3001")

    def mark_skipped(self, step: str, reason: str) -> Image3Data:
        """Every exposure (and the mosaic) with the step marked SKIPPED."""
        log.info("%s: skipped (%s)", step, reason)
        return dataclasses.replace(
            self, exposures=tuple(skipped(ds, step, reason) for ds in self.exposures),
            mosaic=None if self.mosaic is None else skipped(self.mosaic, step, reason))


def with_association(exposure: xr.Dataset, pool_name: str | None, table_name: str) -> xr.Dataset:
    """The exposure with ``meta.asn.table_name`` (and ``pool_name`` unless None) set."""
    meta = copy.deepcopy(dict(exposure.attrs.get("meta", {})))
    keywords.put(meta, "asn.table_name", table_name)
    if pool_name is not None:
        keywords.put(meta, "asn.pool_name", pool_name)
    return exposure.assign_attrs(meta=meta)


def _on_exposures(function: Callable[..., list[xr.Dataset]]) -> Callable[..., Image3Data]:
    """A pipeline step from an Image3 function of ``(datasets, refs, **params) -> datasets``."""
    @functools.wraps(function)
    def step(data: Image3Data, refs: Any = None, **params: Any) -> Image3Data:
        return dataclasses.replace(data, exposures=tuple(function(list(data.exposures), refs, **params)))
    return step


def assign_mtwcs(data: Image3Data, refs: Any = None) -> Image3Data:
    """Moving-target WCS for moving-target associations (TARGTYPE = moving); others pass as in
    jwst, which runs the step only for moving targets."""
    moving = [str(keywords.get(ds.attrs.get("meta", {}), "target.type", "")).lower() == "moving"
              for ds in data.exposures]
    if not any(moving):
        return data
    return dataclasses.replace(data, exposures=tuple(_tweakreg.assign_mtwcs(list(data.exposures))))


tweakreg = _on_exposures(_tweakreg.tweakreg)
skymatch = _on_exposures(_skymatch.skymatch)


def outlier_detection(data: Image3Data, refs: Any = None, **params: Any) -> Image3Data:
    """Flag outliers in the exposures; with ``save_intermediate_results`` also queue jwst's
    intermediate products, named ``<root>_<asn id>_<suffix>.fits``. Parameters as
    :data:`jwdask.image3.outlier_detection.DEFAULTS`."""
    exposures, extras = _outlier.detect_outliers(list(data.exposures), refs, **params)
    products = tuple((f"{x.root}_{data.asn_id}_{x.suffix}.fits", x.kind, x.dataset) for x in extras)
    return dataclasses.replace(data, exposures=tuple(exposures), intermediates=data.intermediates + products)


@functools.wraps(_resample.resample_mosaic)
def resample(data: Image3Data, refs: Any = None, **params: Any) -> Image3Data:
    """Drizzle the exposures into the mosaic (lazy, per output tile), or with ``single=True``
    each exposure group into its own ``<root>_<asn id>_outlier_i2d.fits`` (no mosaic, so no
    catalog).

    The header table (HDRTAB) lists each exposure under its ``_crf`` name and writing time, as
    jwst's Image3Pipeline does once outlier_detection has saved the exposures."""
    named = [_as_crf(ds, data.asn_id) for ds in data.exposures]
    if params.get("single"):
        return dataclasses.replace(data, mosaic=None, singles=tuple(_resample.resample_single(named, refs, **params)))
    mosaic = _resample.resample_mosaic(named, refs, **params)
    return dataclasses.replace(data, mosaic=mosaic, singles=())


def _as_crf(exposure: xr.Dataset, asn_id: str) -> xr.Dataset:
    meta = {**exposure.attrs.get("meta", {}), "filename": crf_name(exposure, asn_id),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]}
    return exposure.assign_attrs(meta=meta)


def source_catalog(data: Image3Data, refs: Any = None, **params: Any) -> Image3Data:
    """Detect and measure sources on the mosaic when the products are computed (a delayed task
    that receives the computed mosaic); parameters as jwst's SourceCatalogStep. Without a
    mosaic because resample made single-group images, nothing to do (as jwst)."""
    if data.mosaic is None and data.singles:
        log.info("source_catalog: resample made single-group images (single=True); no mosaic to measure")
        return data
    if data.mosaic is None:
        msg = "source_catalog needs the mosaic: run resample first"
        raise ParameterError(msg)
    _catalog._parameters(params)
    mosaic = data.mosaic
    # The arrays go in by their own task keys: the Dataset itself would reach the task as a
    # renamed copy of its whole graph, and outlier detection and resample would run twice.
    layout = {k: (v.dims, v.attrs) for k, v in mosaic.data_vars.items()}
    arrays = {k: as_delayed(v.data) for k, v in mosaic.data_vars.items()}
    catalog = dask.delayed(_measure_arrays, pure=True)(mosaic.drop_vars(list(layout)), layout, arrays, refs, params)
    return dataclasses.replace(data, mosaic=completed(data.mosaic, "source_catalog"), catalog=catalog)


def _measure_arrays(template: xr.Dataset, layout: dict[str, tuple[tuple[str, ...], dict[str, Any]]],
                    arrays: dict[str, np.ndarray], refs: Any,
                    params: dict[str, Any]) -> tuple[Any, np.ndarray | None]:
    mosaic = template.assign({k: xr.DataArray(arrays[k], dims=layout[k][0], attrs=layout[k][1]) for k in arrays})
    return _measure(mosaic, refs, params)


def _measure(mosaic: xr.Dataset, refs: Any, params: dict[str, Any]) -> tuple[Any, np.ndarray | None]:
    catalog, segm = _catalog.source_catalog(mosaic, refs, **params)
    return catalog, None if segm is None else np.asarray(segm.sci.values)


# ------------------------------------------------------------------------------ products

def crf_name(exposure: xr.Dataset, asn_id: str) -> str:
    """``<exposure root>_<asn id>_crf.fits`` as jwst names the outlier-flagged exposures."""
    filename = str(keywords.get(exposure.attrs.get("meta", {}), "filename", exposure.attrs.get("source", "exposure")))
    root = posixpath.basename(filename).rsplit("_", 1)[0]
    return f"{root}_{asn_id}_crf.fits"


def prepare_products(data: Image3Data, out_dir: str) -> tuple[list[PendingWrite], list[Any]]:
    """Pending FITS writes (crf, i2d, single-group i2d, intermediate products, segm) and delayed
    writes (cat.ecsv) of an Image3 run; each FITS file is written under a temporary name and
    renamed into place when complete."""
    pending = [prepare_write(ds, posixpath.join(out_dir, crf_name(ds, data.asn_id)), "crf")
               for ds in data.exposures]
    extras = {name: (kind, ds) for name, kind, ds in data.intermediates}
    # A single-group image takes the name of outlier_detection's one (jwst overwrites it too).
    extras.update({ds.attrs["meta"]["filename"]: ("i2d", ds) for ds in data.singles})
    pending += [prepare_write(ds, posixpath.join(out_dir, name), kind) for name, (kind, ds) in extras.items()]
    delayed = []
    if data.mosaic is not None:
        pending.append(prepare_write(data.mosaic, posixpath.join(out_dir, f"{data.product_name}_i2d.fits"), "i2d"))
    if data.catalog is not None:
        delayed.append(dask.delayed(_write_catalog_and_segm, pure=False)(
            data.catalog, dict(data.mosaic.attrs), posixpath.join(out_dir, data.product_name)))
    return pending, delayed


def _write_catalog_and_segm(result: tuple[Any, np.ndarray | None], attrs: dict[str, Any], root: str) -> list[str]:
    catalog, labels = result
    written = []
    if catalog is None:
        log.warning("source_catalog: no sources; no %s_cat.ecsv", root)
        return written
    written.append(_catalog.write_catalog(catalog, f"{root}_cat.ecsv"))
    if labels is not None:
        segm = xr.Dataset({"sci": (("y", "x"), labels.astype(np.uint32))}, attrs=attrs)
        written.append(_catalog.write_segmentation(segm, f"{root}_segm.fits"))
    return written

