"""The ``jwdask`` command line: simulate, info, run <stage>, demo (program and serve to come)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.logging import RichHandler
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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
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

    p = sub.add_parser("program", formatter_class=RichHelpFormatter,
                       help="run whole programs (many exposures) durably (not yet available)")
    p.add_argument("action", choices=["run"])
    p.add_argument("inputs", nargs="*")
    p = sub.add_parser("serve", formatter_class=RichHelpFormatter,
                       help="the job service and dashboard (not yet available)")
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--save-intermediates", default="", metavar="STEP[,STEP...]",
                   help="also write the Dataset after these steps as zarr")
    p.add_argument("--zarr", action="store_true", help="also write every product as a zarr store")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jwdask`` command; returns the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [e for e in extra if e.startswith("--steps.")]
    unknown = [e for e in extra if not e.startswith("--steps.")]
    if unknown or (overrides and args.command != "run"):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose + 1, 2)],
                        format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        return _dispatch(args, overrides)
    except JwdaskError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, markup=True, highlight=False)
        return EXIT_BAD_INPUT
    except NotImplementedError as exc:
        console.print(f"[bold yellow]not implemented:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
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
        return commands.demo(args.out, args.preset, args.seed, args.scheduler, args.workers)
    if args.command == "program":
        msg = "`jwdask program run` (durable multi-exposure programs) is not built yet: issue 7"
        raise NotImplementedError(msg)
    msg = "`jwdask serve` (job service and dashboard) is not built yet: issue 7"
    raise NotImplementedError(msg)


def entry() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
