"""Training losses (LPIPS wrapper; VQ, GAN and the papers' auxiliary losses join as their models land)."""

from .lpips import LPIPSUnavailable, build_lpips, find_trunk_weights

__all__ = ["LPIPSUnavailable", "build_lpips", "find_trunk_weights"]
