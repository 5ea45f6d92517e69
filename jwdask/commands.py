"""What each ``jwdask`` CLI command does; :mod:`jwdask.cli` only parses arguments."""

from __future__ import annotations

import argparse
import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr
import yaml
from dask.delayed import Delayed
from rich.console import Console
from rich.table import Table

from jwdask import cluster
from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords
from jwdask.io.fitsfile import scan
from jwdask.io.products import PendingWrite, compute_writes, open_product, prepare_write
from jwdask.io.uncal import open_uncal
from jwdask.io.zarr_store import open_zarr, to_zarr
from jwdask.pipeline import Pipeline, parse_overrides

log = logging.getLogger(__name__)
console = Console()


def simulate(preset: str, out: Path, seed: int) -> int:
    """Write a simulated program; print where its parts are."""
    from jwdask.simulate import simulate_program

    prog = simulate_program(preset, out, seed=seed)
    console.print(f"[bold green]simulated[/] preset {preset!r} (seed {seed}) in {prog.out_dir}")
    console.print(f"  {len(prog.uncal)} raw exposures, references in {prog.refs_dir}, truth in {prog.truth_dir}")
    return 0


def info(files: Sequence[str]) -> int:
    """Print a summary of each file: kind, instrument setup, arrays, steps and references."""
    for url in files:
        if url.rstrip("/").endswith(".zarr"):
            _print_dataset(url, open_zarr(url))
            continue
        scanned = scan(url)
        ds = open_uncal(url) if "SCI" in scanned.images and scanned.images["SCI"].ndim == 4 \
            and scanned.headers["PRIMARY"].get("DATAMODL") == "Level1bModel" else open_product(url)
        _print_dataset(url, ds)
    return 0


def _print_dataset(url: str, ds: xr.Dataset) -> None:
    meta = ds.attrs.get("meta", {})
    table = Table(title=f"{url}  [dim]({ds.attrs.get('kind', meta.get('model_type', '?'))})[/]",
                  show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    get = keywords.get
    rows = [
        ("instrument", " ".join(str(get(meta, p, "")) for p in
                                ("instrument.name", "instrument.detector", "instrument.filter", "instrument.pupil"))),
        ("exposure", (f"{get(meta, 'exposure.type', '')}  {get(meta, 'exposure.readpatt', '')}  "
                     f"NINTS={get(meta, 'exposure.nints', '')} NGROUPS={get(meta, 'exposure.ngroups', '')}")),
        ("subarray", (f"{get(meta, 'subarray.name', '')}  start=({get(meta, 'subarray.xstart', '')}, "
                     f"{get(meta, 'subarray.ystart', '')})")),
        ("pointing", f"RA_REF={get(meta, 'wcsinfo.ra_ref', '')} DEC_REF={get(meta, 'wcsinfo.dec_ref', '')}"),
    ]
    for name, var in ds.data_vars.items():
        if "." not in str(name):
            unit = var.attrs.get("units", "")
            rows.append((str(name), f"{dict(var.sizes)}  {var.dtype}  {unit}"))
    for name in ds.attrs.get("tables", {}):
        rows.append((f"table {name}", f"{ds.sizes[f'{name}_row']} rows"))
    steps = get(meta, "cal_step", {})
    if steps:
        rows.append(("steps", ", ".join(f"{k}={v}" for k, v in steps.items())))
    refs = {k: v.get("name") for k, v in get(meta, "ref_file", {}).items() if isinstance(v, dict) and "name" in v}
    if refs:
        rows.append(("references", ", ".join(f"{k}={v}" for k, v in refs.items())))
    if "wcs" in ds.attrs:
        rows.append(("wcs", str(ds.attrs["wcs"].output_frame)))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def ref_provider(args: argparse.Namespace) -> Any:
    """The RefProvider of the ``--ref``/``--refs-dir``/``--crds-*`` options."""
    from jwdask.refs import RefProvider

    overrides = {reftype.lower(): path for reftype, path in _pairs(args.ref, "--ref", "REFTYPE=PATH").items()}
    return RefProvider(overrides=overrides, refs_dir=args.refs_dir, crds_cache=args.crds_cache,
                       crds_context=args.crds_context)


def _pairs(items: Sequence[str], option: str, form: str) -> dict[str, str]:
    """``{key: value}`` of an option's ``KEY=VALUE`` items."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"{option} takes {form}, got '{item}'"
            raise ParameterError(msg)
        out[key] = value
    return out


def load_pipeline(stage: str, config: Path | None, overrides: Sequence[str]) -> Pipeline:
    """The stage's pipeline with the user's YAML and ``--steps.*`` overrides applied."""
    pipeline = Pipeline.load(stage)
    if config is not None:
        spec = yaml.safe_load(config.read_text()) or {}
        pipeline = pipeline.with_params(**spec.get("steps", {}))
    return pipeline.with_params(**parse_overrides(overrides))


def open_input(url: str, kind: str, tile: int) -> xr.Dataset:
    """Open one pipeline input of the kind the pipeline takes."""
    if url.rstrip("/").endswith(".zarr"):
        return open_zarr(url)
    if kind == "uncal":
        return open_uncal(url, tile=(tile, tile))
    return open_product(url, tile=(tile, tile))


def run(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """``jwdask run``: build every input's graph, then compute all products together."""
    pipeline = load_pipeline(args.stage, args.config, overrides)
    refs = ref_provider(args)
    save = [s for s in args.save_intermediates.split(",") if s]
    with cluster.client(args.scheduler, n_workers=args.workers, memory_limit=args.memory_limit,
                        processes=args.processes):
        if pipeline.input == "association":
            urls = run_association_pipeline(pipeline, args.inputs, args.out, refs, tile=args.tile, zarr=args.zarr)
        else:
            urls = run_pipeline(pipeline, args.inputs, args.out, refs, tile=args.tile, save_after=save,
                                zarr=args.zarr)
    for url in urls:
        console.print(f"[green]wrote[/] {url}")
    return 0


def run_pipeline(pipeline: Pipeline, inputs: Sequence[str], out: str, refs: Any, *, tile: int = 512,
                 save_after: Sequence[str] = (), zarr: bool = False) -> list[str]:
    """Run ``pipeline`` on every input on the current backend; return the written URLs."""
    return compute_prepared(_prepare_all(
        inputs, lambda url: prepare_exposure(pipeline, url, out, refs, tile=tile, save_after=save_after,
                                             zarr=zarr)))


@dataclass
class PreparedWrites:
    """One input turned into lazy product writes; nothing is computed yet.

    Attributes
    ----------
    pending : list of PendingWrite
        FITS products laid out under temporary names; computing them fills and renames them.
    delayed : list of Delayed
        Other writers (catalogs), each returning the list of URLs it wrote.
    stores : list of (Dataset, str)
        Datasets written as Zarr stores once the rest is computed.
    """

    pending: list[PendingWrite] = field(default_factory=list)
    delayed: list[Delayed] = field(default_factory=list)
    stores: list[tuple[xr.Dataset, str]] = field(default_factory=list)

    def cleanup(self) -> None:
        """Remove the temporary files of writes that did not complete."""
        for p in self.pending:
            p.cleanup()


def prepare_exposure(pipeline: Pipeline, url: str, out: str, refs: Any, *, tile: int = 512,
                     kind: str | None = None, save_after: Sequence[str] = (),
                     zarr: bool = False) -> PreparedWrites:
    """The product writes of one exposure through a per-exposure pipeline: open ``url`` (as
    ``kind``, default the pipeline's input), pick the instrument's variant of the pipeline,
    build its graph and lay out its products (and the ``save_after`` intermediates) in ``out``."""
    ds = open_input(url, kind or pipeline.input, tile)
    chosen = pipeline.for_exposure(ds.attrs.get("meta", {}))
    final, intermediates = chosen.run_all(ds, refs, save_after=save_after)
    prepared = PreparedWrites(chosen.prepare(final, out, intermediates=intermediates))
    root = posixpath.basename(url).rsplit("_", 1)[0]
    try:
        for step in save_after:
            inter = intermediates[step]
            prepared.stores.append((inter, posixpath.join(out, f"{root}_{step}.zarr")))
            if _is_ramp(inter):
                suffix = "ramp" if step == "jump" else step
                prepared.pending.append(prepare_write(inter, posixpath.join(out, f"{root}_{suffix}.fits"), "ramp"))
    except BaseException:
        prepared.cleanup()
        raise
    if zarr:
        for suffix, product in chosen.product_datasets(final, intermediates).items():
            prepared.stores.append((product, posixpath.join(out, f"{root}_{suffix}.zarr")))
    return prepared


def prepare_association(pipeline: Pipeline, url: str, out: str, refs: Any, *, tile: int = 512,
                        zarr: bool = False) -> PreparedWrites:
    """The product writes of one association through an association pipeline (Image3): open
    its science members (calibrated products), build the graph and lay out the products
    (mosaic, catalog, ...) in ``out``."""
    from jwdask.asn import load_association
    from jwdask.image3.stage import Image3Data, prepare_products

    asn = load_association(url)
    science = asn.of_type("science")
    if not science:
        raise InputError(url, "products[0].members", "no science members")
    exposures = tuple(open_input(member, "cal", tile) for member in science)
    data = Image3Data.from_association(asn, exposures)
    final, _ = pipeline.run_all(data, refs)
    writes, tasks = prepare_products(final, out)
    prepared = PreparedWrites(list(writes), list(tasks))
    if zarr and final.mosaic is not None:
        prepared.stores.append((final.mosaic, posixpath.join(out, f"{asn.product_name}_i2d.zarr")))
    return prepared


def compute_prepared(prepared: Sequence[PreparedWrites], *, progress: bool = True) -> list[str]:
    """Compute the writes of several inputs together on the current backend (temporary files
    are removed on failure); returns the FITS URLs, the other writers' and the Zarr stores'."""
    urls = compute_writes([p for x in prepared for p in x.pending], also=[d for x in prepared for d in x.delayed],
                          progress=progress)
    for x in prepared:
        for ds, store in x.stores:
            urls.append(to_zarr(ds, store, overwrite=True))
    return urls


def _prepare_all(inputs: Sequence[str], prepare: Callable[[str], PreparedWrites]) -> list[PreparedWrites]:
    """``prepare`` of every input; if one fails, the temporary files of the others are removed."""
    prepared: list[PreparedWrites] = []
    try:
        for url in inputs:
            prepared.append(prepare(url))
    except BaseException:
        for x in prepared:
            x.cleanup()
        raise
    return prepared


def program(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """``jwdask program run``: a whole program through the durable, resumable runner."""
    from jwdask.service.runner import program_run, steps_by_stage

    pipelines = _pairs(args.pipeline, "--pipeline", "STAGE=YAML")
    stages = [s for s in args.stages.split(",") if s]
    steps = steps_by_stage(parse_overrides(overrides), pipelines or None, stages)
    return program_run(args.inputs, args.out, scheduler=args.scheduler, store_url=args.store_url,
                       refs=ref_provider(args), pipelines=pipelines or None, steps=steps, stages=stages,
                       tile=args.tile, retries=args.retries, n_workers=args.workers,
                       memory_limit=args.memory_limit, console=console)


def serve(args: argparse.Namespace) -> int:
    """``jwdask serve``: the job service until interrupted."""
    from jwdask.service.api import read_token
    from jwdask.service.api import serve as run_service

    run_service(args.host, args.port, args.data_root, args.scheduler, read_token(args.token_file),
                store_url=args.store_url, out_root=args.out_root, max_programs=args.max_programs,
                n_workers=args.workers, dashboard_url=args.dashboard_url)
    return 0


def run_association_pipeline(pipeline: Pipeline, associations: Sequence[str], out: str, refs: Any, *,
                             tile: int = 512, zarr: bool = False) -> list[str]:
    """Run an association-level pipeline (Image3) on each association file; return the URLs.

    The exposures' graphs, the mosaic's and the catalog's are computed together.
    """
    return compute_prepared(_prepare_all(
        associations, lambda url: prepare_association(pipeline, url, out, refs, tile=tile, zarr=zarr)))


def _is_ramp(ds: xr.Dataset) -> bool:
    """Whether ``ds`` is a ramp (before ramp_fit): written as a jwst RampModel file."""
    return all(v in ds for v in ("sci", "groupdq", "pixeldq")) and ds.sci.ndim == 4


def demo(out: Path, preset: str, seed: int, scheduler: str | None, workers: int, *,
         processes: bool = False) -> int:
    """Simulate a small dithered program and run Detector1 -> Image2 -> Image3 on it: raw
    exposures to rates, calibrated exposures, a mosaic, its catalog and a quick-look PNG."""
    from jwdask.quicklook import quicklook_png
    from jwdask.refs import RefProvider
    from jwdask.simulate import simulate_program

    prog = simulate_program(preset, out / "simulated", seed=seed)
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    products = out / "products"
    with cluster.client(scheduler, n_workers=workers, processes=processes):
        console.print("[bold]Detector1[/]: raw ramps -> count rates")
        rates = run_pipeline(Pipeline.load("detector1"), [str(p) for p in prog.uncal], str(products), refs)
        console.print("[bold]Image2[/]: count rates -> calibrated exposures")
        cals = run_pipeline(Pipeline.load("image2"), [u for u in rates if u.endswith("_rate.fits")],
                            str(products), refs)
        asn = products / prog.image3_asn.name
        asn.write_text(prog.image3_asn.read_text())
        console.print("[bold]Image3[/]: calibrated exposures -> mosaic and catalog")
        image3 = Pipeline.load("image3").with_params(tweakreg={"abs_refcat": str(prog.refcat)})
        mosaic = run_association_pipeline(image3, [str(asn)], str(products), refs)
    i2d = [u for u in mosaic if u.endswith("_i2d.fits")]
    png = quicklook_png(i2d + [u for u in rates if u.endswith("_rate.fits")][:3], out / "quicklook.png")
    written = len(rates) + len(cals) + len(mosaic)
    console.print(f"[bold green]demo done[/]: {written} products in {products}, quick look {png}")
    return 0
