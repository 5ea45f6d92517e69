"""A mosaic larger than a worker's memory limit drizzles tile by tile on a LocalCluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
from astropy.io import fits
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from jwdask.image3.resample import resample_mosaic
from jwdask.io.products import write_product
from tests.resample.helpers import exposure


class LargestResult(SchedulerPlugin):
    """Remember the largest task result [bytes] held anywhere on the cluster."""

    def __init__(self, scheduler: Any) -> None:
        self.largest = 0
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            ts = self.scheduler.tasks.get(key)
            if ts is not None and ts.nbytes is not None:
                self.largest = max(self.largest, int(ts.nbytes))


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _set_memory_limit(limit: int, dask_worker: Any) -> None:
    dask_worker.memory_manager.memory_limit = limit


@pytest.mark.slow
def test_mosaic_larger_than_worker_memory(tmp_path: Path) -> None:
    inputs = [exposure(k, offset=o, ny=100, nx=120) for k, o in enumerate([(0.0, 0.0), (9.5, 6.1), (-7.2, 11.3)])]
    out = resample_mosaic(inputs, output_shape=[2400, 2300], crpix=[1200.0, 1150.0], tile=256)
    images = {str(k): v.data for k, v in out.data_vars.items() if "." not in str(k)}  # not HDRTAB columns
    mosaic_bytes = sum(v.nbytes for v in images.values())
    assert mosaic_bytes > 150e6
    config = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}
    with dask.config.set(config), \
            LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="4GB", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        warm_up = resample_mosaic(inputs[:2], tile=64)
        write_product(warm_up, str(tmp_path / "warm_up_i2d.fits"), "i2d")
        baseline = max(client.run(_rss).values())
        limit = int(baseline + mosaic_bytes / 4)
        client.run(_set_memory_limit, limit, nanny=True)
        client.run(_set_memory_limit, limit)
        plugin = LargestResult(cluster.scheduler)
        cluster.scheduler.add_plugin(plugin)
        worker_before = set(client.scheduler_info()["workers"])
        path = write_product(out, str(tmp_path / "big_i2d.fits"), "i2d")
        assert set(client.scheduler_info()["workers"]) == worker_before, "the worker was restarted"
    assert 0 < plugin.largest < mosaic_bytes / 20, (plugin.largest, mosaic_bytes)
    with dask.config.set(scheduler="threads"):
        expected = dask.compute(images)[0]
    with fits.open(path, memmap=True) as hdul:
        for name, values in expected.items():
            np.testing.assert_array_equal(hdul[name.upper()].data, values, err_msg=name)
        assert np.isfinite(hdul["SCI"].data).sum() > 10000
