"""Model weights: key formats, fitting a state dict to a model, and loading and converting checkpoints.

The layers that know nothing of models -- reading and writing files, the layout of convvit's training
checkpoints, pulling weights out of containers -- are :mod:`convvit.checkpoints` (importing them registers no
model); this package adds the model-aware ones:

* :mod:`.formats` -- key formats, which each model family registers in its own file;
* :mod:`.fit` -- fitting a state dict to a model (head reset, position-embedding resampling, in_chans);
* :mod:`.loading` -- :func:`load_checkpoint`, :func:`convert_checkpoint`: all the layers, put together.
"""
from convvit.checkpoints.files import (
    atomic_write,
    is_safetensors_file,
    load_error,
    read_checkpoint_file,
    save_weights,
)
from convvit.errors import CheckpointError, UnsafeCheckpointError
from convvit.models.checkpoints.loading import (
    convert_checkpoint,
    load_checkpoint,
    read_checkpoint,
    read_checkpoint_metadata,
)

__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "atomic_write", "convert_checkpoint", "is_safetensors_file",
    "load_checkpoint", "load_error", "read_checkpoint", "read_checkpoint_file", "read_checkpoint_metadata",
    "save_weights",
]
