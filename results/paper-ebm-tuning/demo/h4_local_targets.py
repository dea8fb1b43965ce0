"""Local stand-in (not shipped): the digits EBM with sigma0 = 0.1 until EBMTarget defines it."""
from targets.ebm.target import EBMDigits


class DigitsWithSigma(EBMDigits):
    denoise_sigma = 0.1
