"""Ranges of the fields several configs share, declared once (batch_size was >= 2 in one
config and >= 1 in another). Inclusive bounds; None: unbounded."""

__all__ = ["EPOCHS", "LR", "BATCH_SIZE", "SEED", "MOMENTUM", "WEIGHT_DECAY", "EVAL_BATCH_SIZE"]

EPOCHS = (1, 10_000)
LR = (1e-6, 10.0)
# Training batches: BatchNorm in training mode needs at least 2 samples per batch.
BATCH_SIZE = (2, 65_536)
EVAL_BATCH_SIZE = (1, 1_000_000)
SEED = (0, 2**31 - 1)  # numpy's seed range (np.random.default_rng takes larger, RandomState does not)
MOMENTUM = (0.0, 0.999)
WEIGHT_DECAY = (0.0, 1.0)
