"""latentlab: the helper package of a course on the latent space of latent diffusion models.

Lessons import the modules they need (`from latentlab import data, images`); see the README for the map.
"""

__version__ = "0.1.0"
