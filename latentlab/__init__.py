"""latentlab: the helper package of a course on the latent space of latent diffusion models.

Lessons import the modules they need (`from latentlab import data, images`); docs/architecture.md maps every
module to its layer and to the lessons that import it.
"""

__version__ = "0.1.0"
