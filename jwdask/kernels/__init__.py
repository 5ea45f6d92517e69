"""Per-pixel numeric kernels: plain ndarrays in, NamedTuples of new arrays out (no xarray, no I/O)."""
