"""Programs at scale: the durable program runner, its job store, and the job service.

- :mod:`jwdask.service.runner`: :func:`program_run` (``jwdask program run``) and
  :func:`run_program` (used by the service).
- :mod:`jwdask.service.jobs`: one job as a task that builds and computes its graph on a worker.
- :mod:`jwdask.service.lease`: a runner's lease on a program (replicas sharing a store).
- :mod:`jwdask.service.store`: programs, jobs and logs via SQLAlchemy.
- :mod:`jwdask.service.associations`: exposures and associations of a program.
- :mod:`jwdask.service.api`: the FastAPI app and dashboard (``jwdask serve``).
"""

from jwdask.service.runner import program_run, run_program

__all__ = ["program_run", "run_program"]
