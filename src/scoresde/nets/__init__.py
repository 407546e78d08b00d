"""Score networks in pure PyTorch."""

from scoresde.nets.classifier import TimeClassifier
from scoresde.nets.embeddings import GaussianFourierProjection, SinusoidalEmbedding
from scoresde.nets.mlp import MLP

__all__ = ["MLP", "GaussianFourierProjection", "SinusoidalEmbedding"]
__all__ += ["TimeClassifier"]
