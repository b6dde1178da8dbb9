"""labkit: the VAE-GAN lab workbook (Larsen et al. 2016, arXiv 1512.09300)."""


class LabkitError(ValueError):
    """A problem with the user's input, reported as one clear line instead of a traceback."""
