import math

import torch
from skimage.metrics import structural_similarity

from onefield.app.metrics import psnr, ssim


def test_psnr_of_a_known_error():
    a = torch.zeros(8, 8, 3)
    assert math.isclose(psnr(a + 0.1, a), 20.0, rel_tol=1e-6)
    assert psnr(a, a) > 100  # identical images: capped, finite


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(40, 50, 3, generator=g)
    b = (a + 0.1 * torch.randn(40, 50, 3, generator=g)).clamp(0, 1)
    expected = structural_similarity(a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, channel_axis=2)
    assert math.isclose(ssim(a, b), expected, abs_tol=1e-6)
    assert math.isclose(ssim(a, a), 1.0, abs_tol=1e-9)
