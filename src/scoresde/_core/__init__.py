"""The leaf layer every package may import; it imports nothing else of scoresde.

Modules:
    tensors: shape-agnostic tensor helpers (``append_dims``, ``sum_except_batch``, ``batch_time``,
        ``as_shape``, ``LOG_2PI``).
    checks: the one contract-check module: argument checks of the public entry points (times,
        tensors, dtypes, seeds, tolerances) and the non-finite guard (``NonFiniteError``).
    progress: progress reports that fit a log file (a tqdm bar on a terminal, lines otherwise).
    seeds: the one seed-derivation scheme (per-sample noise keys, per-step training generators).
    device: device resolution and thread-count scoping.
    defaults: the one default sampling configuration (``DEFAULT_SAMPLING``), free of torch.
"""
