"""Stage 2 imaging steps (``calwebb_image2``): each module holds one step function."""
