"""The ``jwdask`` command line: simulate, info, run <stage>, demo (program and serve to come)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich_argparse import RichHelpFormatter

from jwdask.errors import JwdaskError

console = Console(stderr=True)
log = logging.getLogger("jwdask")

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwdask", formatter_class=RichHelpFormatter,
        description="The JWST calibration pipeline on Dask: simulate raw exposures, calibrate "
                    "them on a laptop or a cluster, inspect the products.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v: every step, -vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", formatter_class=RichHelpFormatter,
                       help="write a simulated NIRCam imaging program with truth",
                       description="Write raw *_uncal.fits exposures, CRDS-format reference files, "
                                   "associations, a reference catalog and the truth.")
    p.add_argument("--preset", default="small", help="tiny | small | full (default: small)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    p = sub.add_parser("info", formatter_class=RichHelpFormatter,
                       help="summarise an uncal file, a product or a zarr store")
    p.add_argument("files", nargs="+", help="files or URLs")

    p = sub.add_parser("run", formatter_class=RichHelpFormatter, help="run a pipeline stage",
                       description="Run STAGE (detector1, ...) on INPUTS and write its products. "
                                   "Step parameters: --steps.<step>.<param>=<value> (e.g. "
                                   "--steps.jump.rejection_threshold=5, --steps.ipc.skip=true).")
    p.add_argument("stage", help="pipeline name (graphs/<stage>.yaml) or a pipeline YAML file")
    p.add_argument("inputs", nargs="+", help="input files or URLs")
    p.add_argument("--out", required=True, help="output folder or URL")
    _add_run_options(p)

    p = sub.add_parser("demo", formatter_class=RichHelpFormatter,
                       help="simulate a small program, calibrate it, write products and a PNG")
    p.add_argument("--out", type=Path, default=Path("jwdask-demo"), help="output folder (default: jwdask-demo)")
    p.add_argument("--preset", default="small", help="simulation preset (default: small)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default: 2)")
    p.add_argument("--processes", action="store_true",
                   help="LocalCluster workers as separate processes (default: threads in this process)")

    p = sub.add_parser("program", formatter_class=RichHelpFormatter,
                       help="run whole programs (many exposures) durably and resumably",
                       description="Find the exposures and associations of a program (building "
                                   "associations from the headers when none are given), run "
                                   "Detector1 -> Image2 -> Image3 as one dependency graph, record "
                                   "every job in a store; running it again resumes.")
    p.add_argument("action", choices=["run"])
    p.add_argument("inputs", nargs="+", help="folders, *_uncal.fits files, *_asn.json associations")
    p.add_argument("--out", required=True, help="output folder (the job store defaults to OUT/jwdask-jobs.sqlite)")
    p.add_argument("--store-url", help="SQLAlchemy URL of a shared job store (default: SQLite in --out)")
    p.add_argument("--stages", default="detector1,image2,image3", help="stages to run, in order")
    p.add_argument("--retries", type=int, default=2, help="retries of a job after a worker is lost")
    p.add_argument("--pipeline", action="append", default=[], metavar="STAGE=YAML",
                   help="a pipeline YAML for a stage; repeatable")
    _add_run_options(p, program=True)

    p = sub.add_parser("serve", formatter_class=RichHelpFormatter,
                       help="the job service (REST API under /api/v1/) and its dashboard",
                       description="Accept programs over HTTP (bearer token from JWDASK_TOKEN or "
                                   "--token-file), run them on the scheduler, track them in the store.")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: 8000)")
    p.add_argument("--data-root", action="append", required=True,
                   help="folder submitted paths must lie in; repeatable")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--token-file", help="file whose first line is the API token (default: $JWDASK_TOKEN)")
    p.add_argument("--store-url", help="SQLAlchemy URL of the job store (default: SQLite in the output root)")
    p.add_argument("--out-root", help="where programs write their products (default: DATA_ROOT/jwdask-out)")
    p.add_argument("--max-programs", type=int, default=2, help="programs run at the same time")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    p.add_argument("--dashboard-url", help="public link to the Dask dashboard shown on the page")
    return parser


def _add_run_options(p: argparse.ArgumentParser, *, program: bool = False) -> None:
    if not program:
        p.add_argument("--config", type=Path, help="a pipeline YAML overriding the stage's defaults")
    p.add_argument("--ref", action="append", default=[], metavar="REFTYPE=PATH",
                   help="use this reference file (or N/A) for REFTYPE; repeatable")
    p.add_argument("--refs-dir", help="folder of CRDS-format reference files")
    p.add_argument("--crds-cache", help="offline CRDS cache (CRDS_PATH layout)")
    p.add_argument("--crds-context", help="CRDS context, e.g. jwst_1322.pmap")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (tcp://host:port), or threads/sync; default: a LocalCluster")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    p.add_argument("--memory-limit", default="auto", help="LocalCluster memory limit per worker (e.g. 4GB)")
    p.add_argument("--tile", type=int, default=512, help="pixel tile size in y and x (default: 512)")
    if program:
        return
    p.add_argument("--processes", action="store_true",
                   help="LocalCluster workers as separate processes (default: threads in this process, "
                        "which avoids inter-process transfers; processes isolate crashes)")
    p.add_argument("--save-intermediates", default="", metavar="STEP[,STEP...]",
                   help="also write the Dataset after these steps (FITS and zarr)")
    p.add_argument("--zarr", action="store_true", help="also write every product as a zarr store")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jwdask`` command; returns the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [e for e in extra if e.startswith("--steps.")]
    unknown = [e for e in extra if not e.startswith("--steps.")]
    if unknown or (overrides and args.command not in ("run", "program")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.verbose == 0:
        for name in ("tweakwcs", "stpipe", "stcal", "jwst"):
            logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("jwdask.cluster", "jwdask.io.products"):
        logging.getLogger(name).setLevel(min(logging.INFO, logging.getLogger().level))
    try:
        return _dispatch(args, overrides)
    except JwdaskError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, markup=True, highlight=False)
        return EXIT_BAD_INPUT
    except NotImplementedError as exc:
        console.print(f"[bold yellow]not implemented:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return EXIT_BAD_INPUT
    except OSError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        return 130


def _dispatch(args: argparse.Namespace, overrides: list[str]) -> int:
    from jwdask import commands

    if args.command == "simulate":
        return commands.simulate(args.preset, args.out, args.seed)
    if args.command == "info":
        return commands.info(args.files)
    if args.command == "run":
        return commands.run(args, overrides)
    if args.command == "demo":
        return commands.demo(args.out, args.preset, args.seed, args.scheduler, args.workers,
                             processes=args.processes)
    if args.command == "program":
        return commands.program(args, overrides)
    return commands.serve(args)


def entry() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
