"""ipc kernel: hand-made convolutions, reference pixels, tiles with halos, and bit-equality
with jwst 3.0's ipc_corr."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask.kernels.ipc import correct_ipc, halo_depth, reference_pixel_mask


def test_delta_kernel_is_identity_and_shift_kernel_shifts():
    rng = np.random.default_rng(0)
    sci = rng.normal(size=(2, 3, 6, 7)).astype(np.float32)
    delta = np.zeros((3, 3), np.float32)
    delta[1, 1] = 1.0
    np.testing.assert_array_equal(correct_ipc(sci, delta, np.zeros((6, 7), bool)).sci, sci)
    shift = np.zeros((3, 3), np.float32)
    shift[2, 1] = 1.0
    out = correct_ipc(sci, shift, np.zeros((6, 7), bool)).sci
    np.testing.assert_array_equal(out[..., 1:, :], sci[..., :-1, :])
    np.testing.assert_array_equal(out[..., 0, :], 0.0)


def test_reference_pixels_unchanged_and_excluded():
    sci = np.full((1, 1, 4, 4), 8.0, np.float32)
    kernel = np.full((3, 3), 0.1, np.float32)
    kernel[1, 1] = 0.2
    ref = np.zeros((4, 4), bool)
    ref[:, 0] = True
    out = correct_ipc(sci, kernel, ref).sci[0, 0]
    assert out[:, 0].tolist() == [8.0] * 4
    np.testing.assert_allclose(out[1, 1], 8 * (0.2 + 5 * 0.1), rtol=1e-6)
    np.testing.assert_allclose(out[1, 2], 8 * (0.2 + 8 * 0.1), rtol=1e-6)
    np.testing.assert_allclose(out[0, 3], 8 * (0.2 + 3 * 0.1), rtol=1e-6)


def test_reference_pixel_mask_geometry():
    nir = reference_pixel_mask(np.array([3, 4, 2043, 2044]), np.array([3, 4, 2043, 2044]))
    assert nir.tolist() == [[True] * 4, [True, False, False, True], [True, False, False, True], [True] * 4]
    miri = reference_pixel_mask(np.array([0, 1023]), np.array([3, 4, 1027, 1028]), miri=True)
    assert miri.tolist() == [[True, False, False, True]] * 2


@pytest.mark.parametrize("per_pixel", [False, True])
def test_tiles_with_halo_equal_whole_frame(per_pixel):
    rng = np.random.default_rng(1)
    ny, nx = 23, 29
    sci = rng.normal(100, 10, (1, 2, ny, nx)).astype(np.float32)
    ref = reference_pixel_mask(np.arange(2030, 2030 + ny), np.arange(nx))
    kernel = rng.normal(0.01, 0.002, (5, 5, ny, nx) if per_pixel else (5, 5)).astype(np.float32)
    kernel[2, 2] = 0.9
    whole = correct_ipc(sci, kernel, ref).sci
    depth = halo_depth(kernel.shape)
    assert depth == 2
    for y0, y1 in ((0, 9), (9, ny)):
        for x0, x1 in ((0, 4), (4, 17), (17, nx)):
            top, bottom, left, right = min(depth, y0), min(depth, ny - y1), min(depth, x0), min(depth, nx - x1)
            ys, xs = slice(y0 - top, y1 + bottom), slice(x0 - left, x1 + right)
            k = kernel[..., ys, xs] if per_pixel else kernel
            tile = correct_ipc(sci[..., ys, xs], k, ref[ys, xs], halo=(top, bottom, left, right)).sci
            np.testing.assert_array_equal(tile[..., top:top + y1 - y0, left:left + x1 - x0],
                                          whole[..., y0:y1, x0:x1])


def test_bad_halo_and_shapes():
    sci = np.zeros((1, 1, 6, 6), np.float32)
    with pytest.raises(ValueError, match="halo of 2"):
        correct_ipc(sci, np.zeros((5, 5), np.float32), np.zeros((6, 6), bool), halo=(1, 0, 0, 0))
    with pytest.raises(ValueError, match="cover"):
        correct_ipc(sci, np.zeros((3, 3, 5, 6), np.float32), np.zeros((6, 6), bool))


def _nircam_model(sci, xstart, ystart):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    model = datamodels.RampModel(data=sci.copy())
    model.meta.instrument.name, model.meta.instrument.detector = "NIRCAM", "NRCA1"
    sub = model.meta.subarray
    sub.xstart, sub.ystart, sub.xsize, sub.ysize = xstart, ystart, sci.shape[-1], sci.shape[-2]
    model.meta.exposure.nframes, model.meta.exposure.groupgap = 1, 0
    model.meta.exposure.nints, model.meta.exposure.ngroups = sci.shape[:2]
    return model


@pytest.mark.reference
def test_equal_to_jwst_2d_kernel():
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    ipc_corr = pytest.importorskip("jwst.ipc.ipc_corr")
    rng = np.random.default_rng(2)
    sci = rng.normal(1000, 100, (2, 3, 20, 30)).astype(np.float32)
    kernel = rng.normal(-0.005, 0.001, (3, 3)).astype(np.float32)
    kernel[1, 1] = 1.02
    model = _nircam_model(sci, xstart=1, ystart=2029)
    result = ipc_corr.do_correction(model, datamodels.IPCModel(data=kernel.copy()))
    ref = reference_pixel_mask(np.arange(2028, 2048), np.arange(30))
    out = correct_ipc(sci, kernel, ref)
    np.testing.assert_array_equal(out.sci, result.data)
    assert (out.sci != sci).mean() > 0.5


@pytest.mark.reference
def test_equal_to_jwst_per_pixel_kernel():
    ipc_corr = pytest.importorskip("jwst.ipc.ipc_corr")
    rng = np.random.default_rng(3)
    sci = rng.normal(1000, 100, (1, 1, 16, 18)).astype(np.float32)
    kernel = rng.normal(-0.005, 0.001, (5, 5, 16, 18)).astype(np.float32)
    kernel[2, 2] = 1.05
    model = _nircam_model(sci, xstart=2031, ystart=1)
    plane = sci[0, 0].copy()
    ipc_corr.ipc_convolve(plane, kernel, ipc_corr.get_num_ref_pixels(model))
    ref = reference_pixel_mask(np.arange(16), np.arange(2030, 2048))
    out = correct_ipc(sci, kernel, ref)
    np.testing.assert_array_equal(out.sci[0, 0], plane)
    assert (out.sci != sci).mean() > 0.5
