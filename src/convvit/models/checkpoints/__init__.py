"""Model weights: reading, unwrapping, renaming, fitting and writing checkpoints, one layer a module.

* :mod:`.files` -- safe reading (never executes a file) and atomic writing (:func:`atomic_write`,
  :func:`save_weights`); knows nothing of models;
* :mod:`.layout` -- the layout of convvit's own training checkpoints (``model.`` / ``ema_model.module.``,
  hyper-parameters, the ``convvit`` metadata);
* :mod:`.containers` -- pulling the weights out of Lightning, timm (EMA) and Hugging Face containers;
* :mod:`.formats` -- key formats, which each model family registers in its own file;
* :mod:`.fit` -- fitting a state dict to a model (head reset, position-embedding resampling, in_chans);
* :mod:`.loading` -- :func:`load_checkpoint`, :func:`convert_checkpoint`: the layers above, put together.
"""
from convvit.errors import CheckpointError, UnsafeCheckpointError
from convvit.models.checkpoints.files import (
    atomic_write,
    is_safetensors_file,
    load_error,
    read_checkpoint_file,
    save_weights,
)
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
