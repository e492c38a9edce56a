"""Image metrics of the evaluation protocol: PSNR and SSIM on sRGB [0, 1] images."""

import torch
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (any matching shape)."""
    mse = torch.mean((pred.float() - target.float()) ** 2)
    return float(-10.0 * torch.log10(mse.clamp(min=1e-12)))


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity of two [H, W, C] images in [0, 1] (Wang et al. 2004): Gaussian window
    11x11 with sigma 1.5, K1=0.01, K2=0.03, mean over the valid region and the channels, as
    scikit-image's `structural_similarity(gaussian_weights=True, use_sample_covariance=False)`
    and the NeRF papers compute it."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"ssim takes two [H, W, C] images of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    x = pred.permute(2, 0, 1)[:, None].double()  # [C, 1, H, W]
    y = target.permute(2, 0, 1)[:, None].double()
    half = window // 2
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - half) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    rows, cols = g.view(1, 1, window, 1).to(x), g.view(1, 1, 1, window).to(x)

    def blur(t: Tensor) -> Tensor:  # the 2-D Gaussian is separable: two 1-D passes, 2w instead of w^2 taps
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(t, rows), cols)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())
