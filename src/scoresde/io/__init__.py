"""Reading and writing what the library makes: checkpoints (safetensors + JSON), the run folder,
model sources and sample files.

Shared by training (``scoresde.train``) and inference (``scoresde.cli``, user code), so it
lives outside both.
"""

from scoresde.io.checkpoint import Checkpoint, load_checkpoint, read_checkpoint_metadata, save_checkpoint

__all__ = ["Checkpoint", "load_checkpoint", "read_checkpoint_metadata", "save_checkpoint"]
