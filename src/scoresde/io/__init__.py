"""Reading and writing what the library makes: checkpoints (safetensors + JSON), the run folder,
model sources and sample files.

Shared by training (``scoresde.train``) and inference (``scoresde.cli``, user code), so it
lives outside both.  The package imports none of its modules (``scoresde.io.outputs``, which
the CLI backbone needs for ``--help``, must not pull in torch): import them by name, e.g.
:mod:`scoresde.io.checkpoint` (``save_checkpoint``, ``load_checkpoint``, ``Checkpoint``),
:mod:`scoresde.io.run_folder`, :mod:`scoresde.io.sources`, :mod:`scoresde.io.samples`.
"""
