"""Checkpoint files, one layer a module, none of which knows a model or imports the model registry.

* :mod:`.files` -- safe reading (never executes a file) and atomic writing (:func:`~.files.atomic_write`,
  :func:`~.files.save_weights`);
* :mod:`.layout` -- the layout of convvit's own training checkpoints (``model.`` / ``ema_model.module.``,
  hyper-parameters, the ``convvit`` metadata);
* :mod:`.containers` -- pulling the weights out of Lightning, timm (EMA) and Hugging Face containers.

Fitting weights to a model and loading them into it is :mod:`convvit.models.checkpoints`. They live outside
:mod:`convvit.models` because importing anything in that package first runs its ``__init__``, which builds the
registry by importing every model family: the training loop, which writes checkpoints every epoch, and
``convvit export``/``predict`` would pay for that (and depend on it) only to read or write a file.
"""
