"""Stage 3 imaging steps (calwebb_image3): tweakreg, skymatch, outlier detection, resample, source catalog."""
