"""Benchmark: jwdask Image3 against jwst's on the same simulated 8-exposure program.

An 8-exposure variant of the simulator's ``small`` preset (SUB400P, eight dithers; ``--base full``:
the 2048 x 2048 ``full`` preset with the same dithers) is made
once (kept in ``--workdir``) and reduced to ``_cal`` files with jwdask Detector1 + Image2.
Then, each in its own subprocess tree with one thread per worker:

* resample alone: jwdask ``resample_mosaic`` writing the ``_i2d`` on a LocalCluster of 1 and
  of 2 workers (worker scaling), and jwst's ``ResampleStep`` on the same association;
* the whole stage: ``jwdask.commands.run_association_pipeline(Pipeline.load("image3"))`` on 2
  workers, and jwst's ``Image3Pipeline`` (``tests/official.py``), both aligning to the
  simulator's reference catalog.

Every jwdask configuration runs twice: with thread workers in one process
(``cluster.client(processes=False)``, the ``jwdask run`` default) and with worker processes.
Reports wall and CPU seconds (CPU of the whole process tree; steadier on a shared machine),
peak RSS of each process tree (jwdask with worker processes: client/scheduler process plus
each worker; with thread workers: the one process; and the psutil-sampled sum), and how far
the mosaics agree (SCI on pixels with WHT > max/2).
Targets: >= 2x faster than jwst (wall), <= 0.5x jwst's peak memory, >= 0.8x linear scaling
from 1 to 2 workers.

``--scale N`` instead drizzles N (default 60) exposures synthesized from one cal file of the
program (``--scale-source`` picks another, e.g. a full-frame cal) by shifting its WCS on a
grid with 25 % overlap, on a 2-worker LocalCluster with ``memory_limit="4GB"`` per worker, and
reports completion, wall time, output size and each worker's peak RSS.

Usage: ``python benchmarks/image3.py [--workdir DIR] [--tile 512] [--only resample|stage]`` or
``python benchmarks/image3.py --scale 60 [--workdir DIR] [--scale-source CAL]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    emit,
    jwst_child,
    machine,
    read_job,
    run_child,
    timed,
    tree_cpu_seconds,
    workdir_or_temporary,
    worker_usage,
)
from image2 import TreePeakRSS

SPEED_TARGET = 2.0
MEMORY_TARGET = 0.5
SCALING_TARGET = 0.8
DITHERS = ((0.0, 0.0), (1.2, 0.9), (-0.8, 1.5), (0.6, -1.3), (2.1, -0.4), (-1.7, -1.1), (0.3, 2.4),
           (-2.2, 0.6))
"""Offsets [arcsec] of the eight exposures (the ``small`` preset's four plus four more)."""


def preset(base: str = "small") -> Any:
    """The ``base`` preset (``small``: SUB400P, ``full``: 2048 x 2048) with eight dithers."""
    from jwdask.simulate import PRESETS

    return dataclasses.replace(PRESETS[base], name=f"{base}8", dithers=DITHERS)


def prepare(workdir: Path, seed: int, base: str = "small") -> dict[str, Any]:
    """Simulate the program and make its cal files with jwdask (both reused when in
    ``workdir``); return the job description the children read."""
    job_file = workdir / f"{base}8_job.json"
    if job_file.exists():
        print(f"reusing the simulated program and cal files in {workdir}")
        return json.loads(job_file.read_text())
    from jwdask import cluster
    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider
    from jwdask.simulate import simulate_program

    start = time.perf_counter()
    prog = simulate_program(preset(base), workdir / f"{base}8", seed=seed)
    print(f"simulated 8 {preset(base).subarray} exposures in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    cal_dir = workdir / f"{base}8_cal"
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    with cluster.client(None, n_workers=2, dashboard=False):
        rates = run_pipeline(Pipeline.load("detector1"), [str(p) for p in prog.uncal], str(workdir / f"{base}8_rate"),
                             refs, tile=1024)
        urls = run_pipeline(Pipeline.load("image2").with_params(resample={"skip": True}),
                            [u for u in rates if u.endswith("_rate.fits")], str(cal_dir), refs)
    cals = sorted(u for u in urls if u.endswith("_cal.fits"))
    print(f"made {len(cals)} cal files with jwdask Detector1 + Image2 in {time.perf_counter() - start:.0f} s")
    asn = json.loads(prog.image3_asn.read_text())
    asn["products"][0]["members"] = [{"expname": c, "exptype": "science"} for c in cals]
    asn_path = cal_dir / prog.image3_asn.name
    asn_path.write_text(json.dumps(asn))
    job = {"cal": cals, "asn": str(asn_path), "refs_dir": str(prog.refs_dir), "refcat": str(prog.refcat),
           "reference_files": {k: str(v) for k, v in prog.reference_files.items()},
           "product": asn["products"][0]["name"]}
    job_file.write_text(json.dumps(job))
    return job


def _jwdask_usage(client: Any, run: dict[str, Any], rss: TreePeakRSS, processes: bool) -> dict[str, Any]:
    """``run`` with the peak RSS and CPU of the client process and of each worker process
    (thread workers live in the client process: no separate figures)."""
    workers = list(client.run(worker_usage).values()) if processes else []
    client_usage = worker_usage()
    run.update({"workers": workers, "client": client_usage, "tree_peak_rss_mb": rss.peak_mb,
                "peak_rss_sum_mb": client_usage["peak_rss_mb"] + sum(w["peak_rss_mb"] for w in workers)})
    return run


def child_jwdask_resample(folder: Path, workers: int, tile: int, processes: bool) -> dict[str, Any]:
    """Child: jwdask resample of the cal files into an i2d on ``workers`` workers (worker
    processes or threads)."""
    from jwdask import cluster
    from jwdask.image3.resample import resample_mosaic
    from jwdask.io.products import compute_writes, open_product, prepare_write

    job = read_job(folder)
    out = folder / f"jwdask-resample-{workers}-{'processes' if processes else 'threads'}"
    out.mkdir(exist_ok=True)
    with TreePeakRSS() as rss, cluster.client(None, n_workers=workers, dashboard=False,
                                              processes=processes) as client:
        def work() -> list[str]:
            mosaic = resample_mosaic([open_product(c, tile=(tile, tile)) for c in job["cal"]], tile=tile)
            return compute_writes([prepare_write(mosaic, str(out / f"{job['product']}_i2d.fits"), "i2d")])

        cpu = tree_cpu_seconds()
        urls, run = timed(work)
        run.update({"cpu_seconds": tree_cpu_seconds() - cpu, "i2d": urls[0]})
        return _jwdask_usage(client, run, rss, processes)


def child_jwdask_stage(folder: Path, tile: int, processes: bool) -> dict[str, Any]:
    """Child: the jwdask Image3 pipeline on the association on 2 workers (processes or threads)."""
    from jwdask import cluster
    from jwdask.commands import run_association_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider

    job = read_job(folder)
    out = folder / f"jwdask-stage-{'processes' if processes else 'threads'}"
    out.mkdir(exist_ok=True)
    pipeline = Pipeline.load("image3").with_params(tweakreg={"abs_refcat": job["refcat"]})
    with TreePeakRSS() as rss, cluster.client(None, n_workers=2, dashboard=False, processes=processes) as client:
        cpu = tree_cpu_seconds()
        urls, run = timed(lambda: run_association_pipeline(pipeline, [job["asn"]], str(out),
                                                           RefProvider(refs_dir=job["refs_dir"]), tile=tile))
        run.update({"cpu_seconds": tree_cpu_seconds() - cpu, "i2d": next(u for u in urls if u.endswith("_i2d.fits"))})
        return _jwdask_usage(client, run, rss, processes)


def child_jwst_resample(folder: Path) -> dict[str, Any]:
    """Child: jwst's ResampleStep on the association of cal files."""
    with TreePeakRSS() as rss, jwst_child(folder, "jwst-resample") as child:
        from jwst.resample import ResampleStep

        def work() -> str:
            path = child.out / f"{child.job['product']}_i2d.fits"
            result = ResampleStep.call(child.job["asn"])
            result.save(str(path))
            return str(path)

        cpu = tree_cpu_seconds()
        i2d, run = timed(work)
    run.update({"cpu_seconds": tree_cpu_seconds() - cpu, "i2d": i2d, "tree_peak_rss_mb": rss.peak_mb})
    return run


def child_jwst_stage(folder: Path) -> dict[str, Any]:
    """Child: jwst's Image3Pipeline on the association."""
    with TreePeakRSS() as rss, jwst_child(folder, "jwst-stage") as child:
        from tests.official import run_official_image3

        job = child.job
        cpu = tree_cpu_seconds()
        i2d, run = timed(lambda: str(run_official_image3(Path(job["asn"]), child.reference_files, child.out,
                                                         child.monkeypatch, refcat=Path(job["refcat"]))))
    run.update({"cpu_seconds": tree_cpu_seconds() - cpu, "i2d": i2d, "tree_peak_rss_mb": rss.peak_mb})
    return run


def shifted(ds: Any, dra: float, ddec: float) -> Any:
    """``ds`` with its WCS moved by (``dra``, ``ddec``) degrees on the sky (an RA/Dec shift
    after the last transform; RA_REF/DEC_REF, CRVAL and S_REGION, which sets the mosaic grid, follow)."""
    from astropy.modeling.models import Shift
    from gwcs import WCS

    wcs = ds.attrs["wcs"]
    steps = list(wcs.pipeline)
    moved = WCS([*[(s.frame, s.transform) for s in steps[:-2]],
                 (steps[-2].frame, steps[-2].transform | (Shift(dra) & Shift(ddec))), (steps[-1].frame, None)])
    moved.bounding_box = wcs.bounding_box
    meta = copy.deepcopy(ds.attrs["meta"])
    info = meta.get("wcsinfo", {})
    for key, delta in (("ra_ref", dra), ("dec_ref", ddec), ("crval1", dra), ("crval2", ddec)):
        info[key] += delta
    words = info["s_region"].split()
    values = [float(w) for w in words[2:]]
    values[0::2] = [ra + dra for ra in values[0::2]]
    values[1::2] = [dec + ddec for dec in values[1::2]]
    info["s_region"] = " ".join([*words[:2], *(f"{v:.9f}" for v in values)])
    return ds.assign_attrs(wcs=moved, meta=meta)


def synthetic_program(source: str, n: int, tile: int) -> list[Any]:
    """``n`` copies of one cal exposure on a grid of pointings overlapping by 25 % (lazy:
    every copy reads the same file)."""
    from jwdask.io.products import open_product

    base = open_product(source, tile=(tile, tile))
    ny, nx = base["sci"].shape
    ra, dec = base.attrs["wcs"](nx / 2, ny / 2)
    ra1, dec1 = base.attrs["wcs"](nx / 2 + 1, ny / 2)
    scale = math.hypot((ra1 - ra) * math.cos(math.radians(dec)), dec1 - dec)
    step = 0.75 * max(nx, ny) * scale
    cols = math.ceil(math.sqrt(n))
    out = []
    for k in range(n):
        i, j = k % cols, k // cols
        out.append(shifted(base, i * step / math.cos(math.radians(dec)), j * step))
    return out


def child_scale(folder: Path, n: int, source: str, tile: int) -> dict[str, Any]:
    """Child: drizzle ``n`` synthesized exposures on 2 workers limited to 4 GB each."""
    from jwdask import cluster
    from jwdask.image3.resample import resample_mosaic
    from jwdask.io.products import compute_writes, prepare_write

    out = folder / "scale"
    out.mkdir(exist_ok=True)
    result: dict[str, Any] = {"n": n, "source": source}
    with TreePeakRSS() as rss, cluster.client(None, n_workers=2, memory_limit="4GB", dashboard=False) as client:
        start, cpu = time.perf_counter(), tree_cpu_seconds()
        try:
            mosaic = resample_mosaic(synthetic_program(source, n, tile), tile=tile)
            result["shape"] = list(mosaic["sci"].shape)
            result["graph_seconds"] = time.perf_counter() - start
            compute_writes([prepare_write(mosaic, str(out / "scale_i2d.fits"), "i2d")])
            result["completed"] = True
        except Exception as exc:  # noqa: BLE001 - the benchmark reports any failure
            result.update({"completed": False, "error": f"{type(exc).__name__}: {exc}"})
        result.update({"seconds": time.perf_counter() - start, "cpu_seconds": tree_cpu_seconds() - cpu})
        return _jwdask_usage(client, result, rss, True)


def compare_i2d(ours: str, theirs: str) -> dict[str, Any]:
    """Shape equality and SCI agreement on well-covered pixels (WHT > max/2)."""
    from astropy.io import fits

    with fits.open(ours) as a, fits.open(theirs) as b:
        if a["SCI"].data.shape != b["SCI"].data.shape:
            return {"same_shape": False, "shapes": [a["SCI"].data.shape, b["SCI"].data.shape]}
        wht = b["WHT"].data
        good = np.isfinite(wht) & (wht > 0.5 * np.nanmax(wht))
        x, y = a["SCI"].data[good].astype(np.float64), b["SCI"].data[good].astype(np.float64)
        floor = float(np.nanmedian(np.abs(b["ERR"].data[good])))
        diff = np.abs(x - y) / np.maximum(np.abs(y), floor)
        return {"same_shape": True, "max_relative_difference": float(np.nanmax(diff)),
                "beyond_1e-3": int(np.count_nonzero(diff > 1e-3)), "pixels": int(good.sum())}


def _tree_peak(run: dict[str, Any]) -> float:
    return run.get("peak_rss_sum_mb", run["peak_rss_mb"])


def _peaks(run: dict[str, Any], sep: str) -> str:
    return sep.join(f"{w['peak_rss_mb']:.0f}" for w in run["workers"])


def _line(label: str, run: dict[str, Any]) -> str:
    text = f"{label:36s} {run['seconds']:7.1f} s wall, {run['cpu_seconds']:7.1f} s CPU, peak RSS {_tree_peak(run):6.0f} MB"
    if run.get("workers"):
        text += (f" (client/scheduler {run['client']['peak_rss_mb']:.0f} + workers "
                 f"{_peaks(run, ' + ')}; psutil-sampled tree "
                 f"{run['tree_peak_rss_mb']:.0f})")
    elif "workers" in run:
        text += f" (one process: client, scheduler and thread workers; psutil-sampled {run['tree_peak_rss_mb']:.0f})"
    else:
        text += f" (psutil-sampled tree {run['tree_peak_rss_mb']:.0f})"
    return text


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


KINDS = {"threads": "thread workers", "processes": "worker processes"}
"""The two jwdask LocalCluster configurations: ``processes=False`` (the ``jwdask run``
default) and ``processes=True``."""


def compare(workdir: Path, tile: int, seed: int, parts: tuple[str, ...] = ("resample", "stage"),
            base: str = "small") -> None:
    """Resample alone (1 and 2 workers) and/or the whole stage, jwdask (thread workers and
    worker processes) vs jwst; print the results."""
    job = prepare(workdir, seed, base)
    children: dict[str, dict[str, list[str]]] = {"resample": {}, "stage": {}}
    for kind, text in KINDS.items():
        flag = ["--processes"] if kind == "processes" else []
        for n in (1, 2):
            children["resample"][f"jwdask resample, {n} {text}"] = ["--child", "jwdask-resample", "--workers", str(n),
                                                                     *flag]
        children["stage"][f"jwdask Image3, 2 {text}"] = ["--child", "jwdask-stage", *flag]
    children["resample"]["jwst ResampleStep"] = ["--child", "jwst-resample"]
    children["stage"]["jwst Image3Pipeline"] = ["--child", "jwst-stage"]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps(job))
        runs = {label: run_child(__file__, [*args, "--folder", tmp, "--tile", str(tile)])
                for part in parts for label, args in children[part].items()}
        pairs = {f"{what} ({text})": (f"{ours}, 2 {text}", theirs) for text in KINDS.values()
                 for what, ours, theirs in (("resample", "jwdask resample", "jwst ResampleStep"),
                                            ("whole stage", "jwdask Image3", "jwst Image3Pipeline"))}
        pairs = {what: pair for what, pair in pairs.items() if pair[0] in runs}
        agree = {what: compare_i2d(runs[ours]["i2d"], runs[theirs]["i2d"]) for what, (ours, theirs) in pairs.items()}
    print(f"== Image3 on 8 dithered exposures (simulated '{base}' with 8 dithers); jwdask tile {tile} ==")
    for label, run in runs.items():
        print(_line(label, run))
    for what, (ours, theirs) in pairs.items():
        ours, theirs = runs[ours], runs[theirs]
        speed, speed_cpu = theirs["seconds"] / ours["seconds"], theirs["cpu_seconds"] / ours["cpu_seconds"]
        memory = _tree_peak(ours) / _tree_peak(theirs)
        print(f"{what}: speed {speed:.2f}x wall ({speed_cpu:.2f}x CPU) vs target >= {SPEED_TARGET:.0f}x: "
              f"{_verdict(speed >= SPEED_TARGET)} (wall), {_verdict(speed_cpu >= SPEED_TARGET)} (CPU); "
              f"memory {memory:.2f}x vs target <= {MEMORY_TARGET}x: "
              f"{_verdict(memory <= MEMORY_TARGET)}; mosaic vs jwst: {agree[what]}")
    if "resample" not in parts:
        return
    for text in KINDS.values():
        one, two = runs[f"jwdask resample, 1 {text}"], runs[f"jwdask resample, 2 {text}"]
        scaling = one["seconds"] / two["seconds"] / 2
        print(f"resample scaling 1 -> 2 {text}: {one['seconds'] / two['seconds']:.2f}x speed-up = {scaling:.2f} of "
              f"linear vs target >= {SCALING_TARGET}: {_verdict(scaling >= SCALING_TARGET)} (CPU "
              f"{one['cpu_seconds']:.1f} -> {two['cpu_seconds']:.1f} s; on a loaded machine the wall ratio "
              f"understates it)")


def scale(workdir: Path, n: int, source: str | None, tile: int, seed: int) -> None:
    """Drizzle ``n`` synthesized exposures on 2 workers with 4 GB each; print the outcome."""
    if source is None:
        source = prepare(workdir, seed)["cal"][0]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        run = run_child(__file__, ["--child", "scale", "--folder", tmp, "--scale", str(n),
                                   "--scale-source", source, "--tile", str(tile)])
    print(f"== resample of {n} exposures synthesized from {Path(source).name} (shifted WCS, 25 % overlap), "
          f"LocalCluster 2 workers x memory_limit 4GB, output tile {tile} ==")
    if run["completed"]:
        print(f"completed: mosaic {run['shape'][1]} x {run['shape'][0]} pixels in {run['seconds']:.1f} s wall "
              f"({run['graph_seconds']:.1f} s building the graph), {run['cpu_seconds']:.1f} s CPU")
    else:
        print(f"FAILED after {run['seconds']:.1f} s: {run['error']}")
    print(f"peak worker RSS: {_peaks(run, ', ')} MB (limit 4000 MB); "
          f"client/scheduler {run['client']['peak_rss_mb']:.0f} MB; psutil-sampled tree {run['tree_peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where the simulated program and cal files are kept (default: temporary)")
    parser.add_argument("--tile", type=int, default=512, help="jwdask input/output tile [pixels]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, nargs="?", const=60, help="drizzle this many synthesized exposures")
    parser.add_argument("--scale-source", help="the cal file the --scale exposures are made from")
    parser.add_argument("--base", choices=("small", "full"), default="small",
                        help="the preset given 8 dithers: small (SUB400P, default) or full (2048 x 2048)")
    parser.add_argument("--only", choices=("resample", "stage"),
                        help="compare only resample alone (1 and 2 workers) or only the whole stage")
    parser.add_argument("--child", choices=("jwdask-resample", "jwdask-stage", "jwst-resample", "jwst-stage", "scale"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--processes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    children = {"jwdask-resample": lambda: child_jwdask_resample(args.folder, args.workers, args.tile, args.processes),
                "jwdask-stage": lambda: child_jwdask_stage(args.folder, args.tile, args.processes),
                "jwst-resample": lambda: child_jwst_resample(args.folder),
                "jwst-stage": lambda: child_jwst_stage(args.folder),
                "scale": lambda: child_scale(args.folder, args.scale, args.scale_source, args.tile)}
    if args.child:
        emit(children[args.child]())
        return
    print(f"machine: {machine()}")
    with workdir_or_temporary(args.workdir) as folder:
        if args.scale:
            scale(folder, args.scale, args.scale_source, args.tile, args.seed)
        else:
            compare(folder, args.tile, args.seed, (args.only,) if args.only else ("resample", "stage"), args.base)


if __name__ == "__main__":
    main()
