"""Run a jwdask program on a Slurm cluster: Dask workers are Slurm jobs (dask-jobqueue).

Needs ``pip install dask-jobqueue`` next to jwdask, and a file system shared by the login
node and the compute nodes (inputs, reference files, ``--out`` and the job store).

    python deploy/slurm/run_program.py /shared/jw01234 --out /shared/jw01234-products \\
        --refs-dir /shared/crds/references --queue compute --jobs 8 --cores 16 --memory 64GB

Rerunning the same command resumes the program (verified products are skipped). Submit it
as a batch job with ``sbatch deploy/slurm/run_program.sbatch ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from distributed import Client

from jwdask.refs import RefProvider
from jwdask.service.runner import program_run

log = logging.getLogger("jwdask.slurm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="program folders, *_uncal.fits, *_asn.json")
    parser.add_argument("--out", required=True, help="output folder on the shared file system")
    parser.add_argument("--refs-dir", help="folder of CRDS-format reference files")
    parser.add_argument("--crds-cache", help="offline CRDS cache")
    parser.add_argument("--store-url", help="SQLAlchemy URL of the job store (default: SQLite in --out)")
    parser.add_argument("--queue", help="Slurm partition")
    parser.add_argument("--account", help="Slurm account")
    parser.add_argument("--jobs", type=int, default=4, help="Slurm jobs (one Dask worker each)")
    parser.add_argument("--cores", type=int, default=8, help="cores per Slurm job")
    parser.add_argument("--memory", default="32GB", help="memory per Slurm job")
    parser.add_argument("--walltime", default="04:00:00", help="Slurm job time limit")
    parser.add_argument("--tile", type=int, default=512, help="pixel tile size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(queue=args.queue, account=args.account, cores=args.cores, processes=1,
                           memory=args.memory, walltime=args.walltime,
                           local_directory="$TMPDIR", log_directory="dask-logs")
    cluster.scale(jobs=args.jobs)
    refs = RefProvider(refs_dir=args.refs_dir, crds_cache=args.crds_cache)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=1800)
        log.info("Dask dashboard: %s", client.dashboard_link)
        return program_run(args.inputs, args.out, scheduler=client, store_url=args.store_url, refs=refs,
                           tile=args.tile)


if __name__ == "__main__":
    sys.exit(main())
