"""Settings declared once, as fields of typed groups, each with its policy beside it.

The mechanism behind the model's options (:mod:`convvit.training.settings`) and the data module's
(:mod:`convvit.data.settings`): a group is a dataclass whose fields are made with :func:`setting`, whose metadata
says how a checkpoint treats the field:

* ``policy=RESUME_MAY_CHANGE``: how the run goes, not what it learns: a resumed run may be given another value.
* ``policy=TRAINING_ONLY``: shapes training only: evaluating a checkpoint (``validate``, ``test``) ignores it.
* ``policy=FROM_DATA``: a model setting linked from the data module by the CLI, not set on the model.
* ``fixed_by_checkpoint=True``: a data setting that decides what the model sees (input size, normalisation):
  a resumed or evaluated run's data must resolve to the checkpoint's value.
* no policy: a resumed or evaluated run must be given the checkpoint's value (or none).

The options stay flat (``--model.lr``, ``--data.batch_size``, as configs write them) and so do checkpoints'
hyper-parameters: :func:`init_signature` is the signature LightningCLI reads, one parameter per field. Standard
library only, so that the fast option check (:mod:`convvit.training.option_names`) can read the names without
importing torch.
"""
import dataclasses
import inspect
from dataclasses import field
from typing import Any

__all__ = [
    "FROM_DATA", "RESUME_MAY_CHANGE", "TRAINING_ONLY", "exempt_from_checkpoint", "fields_of", "fixed_by_checkpoint",
    "init_signature", "setting", "setting_names", "settings_doc", "split_settings", "with_policy",
]

RESUME_MAY_CHANGE = "resume_may_change"
TRAINING_ONLY = "training_only"
FROM_DATA = "from_data"


def setting(default: Any = dataclasses.MISSING, *, doc: str, policy: str | None = None,
            fixed_by_checkpoint: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A group's field: its default, its one-line help (``--help``) and its policy (see the module docstring)."""
    metadata = {"doc": doc, "policy": policy, "fixed_by_checkpoint": fixed_by_checkpoint}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def fields_of(groups: tuple[type, ...]) -> list[dataclasses.Field]:
    return [f for group in groups for f in dataclasses.fields(group)]


def setting_names(groups: tuple[type, ...]) -> list[str]:
    """Every flat setting of ``groups``, as ``--GROUP.KEY`` names it."""
    return [f.name for f in fields_of(groups)]


def with_policy(groups: tuple[type, ...], policy: str) -> tuple[str, ...]:
    """The settings of ``groups`` declared with ``policy``."""
    return tuple(f.name for f in fields_of(groups) if f.metadata.get("policy") == policy)


def fixed_by_checkpoint(groups: tuple[type, ...]) -> tuple[str, ...]:
    """The settings of ``groups`` declared ``fixed_by_checkpoint``."""
    return tuple(f.name for f in fields_of(groups) if f.metadata.get("fixed_by_checkpoint"))


def exempt_from_checkpoint(groups: tuple[type, ...], evaluating: bool) -> tuple[str, ...]:
    """The settings of ``groups`` that a run resumed (``evaluating`` False) or evaluated from a checkpoint does
    not take from it (the others: its values, and another value given is refused): those that may change on
    resume, the training-only ones when evaluating, and those fixed by the checkpoint (compared once resolved)."""
    free = {RESUME_MAY_CHANGE, *([TRAINING_ONLY] if evaluating else [])}
    return tuple(f.name for f in fields_of(groups)
                 if f.metadata.get("policy") in free or f.metadata.get("fixed_by_checkpoint"))


def split_settings(groups: tuple[type, ...], settings: dict[str, Any]) -> dict[type, Any]:
    """Flat settings (every one given: :func:`init_signature` binds the defaults) as one instance per group."""
    return {group: group(**{f.name: settings[f.name] for f in dataclasses.fields(group)}) for group in groups}


def init_signature(groups: tuple[type, ...], positional: int, **after: inspect.Parameter) -> inspect.Signature:
    """``__init__(self, ...)`` with one parameter per field of ``groups`` in order, then ``after`` (nested groups
    such as the model's ``distillation``): what LightningCLI reads to make the ``--GROUP.KEY`` options.

    Only the first ``positional`` fields may be passed by position; the rest are keyword-only, so that a call
    written for another field order is refused (TypeError) instead of filling the wrong settings."""
    generated = [
        inspect.Parameter(
            f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD if i < positional else inspect.Parameter.KEYWORD_ONLY,
            annotation=f.type, default=f.default if f.default is not dataclasses.MISSING else f.default_factory())
        for i, f in enumerate(fields_of(groups))
    ]
    nested = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in after.values()]
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([self, *generated, *nested])


def settings_doc(groups: tuple[type, ...], indent: str = "    ") -> str:
    """The ``Args:`` lines of every field, for the docstring jsonargparse turns into ``--help``."""
    return "\n".join(f"{indent}{f.name}: {f.metadata['doc']}" for f in fields_of(groups))
