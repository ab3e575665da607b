"""Helpers the command modules share."""
from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator

from convvit.errors import ConvvitError, UsageError
from convvit.precision import AUTO, INFERENCE_PRECISIONS


def model_arguments(run: Callable[..., int]) -> Callable[..., int]:
    """For commands whose arguments name a model: an unknown model name, or a size it cannot take (ValueError,
    TypeError from the model), is a bad command line (exit status 2)."""

    @functools.wraps(run)
    def wrapped(*args, **kwargs) -> int:
        try:
            return run(*args, **kwargs)
        except ConvvitError:
            raise
        except (ValueError, TypeError) as err:
            raise UsageError(str(err)) from err

    return wrapped


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show convvit's library warnings (e.g. each skipped image) as ``convvit: warning: ...`` lines."""
    logger = logging.getLogger("convvit")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("convvit: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def add_precision_argument(parser) -> None:
    """``--precision auto|32|bf16`` of the inference commands (predict, explain)."""
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default=AUTO,
                        help="auto (default): bf16 where the GPU or CPU has bf16 units and the model is large enough "
                        "to gain (the rule of `fit --trainer.precision auto`), else 32")


def precision_line(requested: str, precision: str, reason: str) -> str:
    """``precision: bf16 (auto: CPU with amx_bf16)``: the line training prints, for an inference command."""
    return f"precision: {precision} ({'auto: ' if requested == AUTO else ''}{reason})"
