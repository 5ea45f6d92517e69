"""jwdask: the James Webb Space Telescope calibration pipeline on Dask."""

from __future__ import annotations

__version__ = "0.1.0"

from jwdask.io.products import open_product, write_product  # noqa: E402
from jwdask.io.uncal import open_uncal  # noqa: E402

__all__ = ["__version__", "open_product", "open_uncal", "write_product"]
