"""Score networks in pure PyTorch."""

from scoresde.nets.embeddings import GaussianFourierProjection, SinusoidalEmbedding
from scoresde.nets.mlp import MLP

__all__ = ["MLP", "GaussianFourierProjection", "SinusoidalEmbedding"]
