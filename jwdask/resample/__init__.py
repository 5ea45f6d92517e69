"""Resample (drizzle) engine: output grid, per-(input, tile) drizzle tasks, tile reduction.

``grid.output_grid`` builds the mosaic WCS like jwst; ``drizzle.input_from_dataset`` describes
a cal Dataset; ``reduce.drizzle_mosaic`` returns the
mosaic arrays as dask arrays chunked by output tile, each tile the reduction of the drizzle
partials (``drizzle.drizzle_overlap``) of the inputs that reach it. The step wrappers are
``jwdask.image2.resample.resample`` and ``jwdask.image3.resample.resample_mosaic``.
"""

from jwdask.resample.drizzle import DrizzleParams, InputInfo, input_from_dataset
from jwdask.resample.grid import OutputGrid, custom_grid, output_grid
from jwdask.resample.reduce import drizzle_mosaic

__all__ = ["DrizzleParams", "InputInfo", "OutputGrid", "custom_grid", "drizzle_mosaic", "input_from_dataset",
           "output_grid"]
