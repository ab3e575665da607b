"""Shared fixtures of the explain tests: one thread, small models, and one tiny trained checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from single_thread import one_thread  # tests/single_thread.py


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def save_checkpoint(path: Path, name: str, img_size: int = 32, in_chans: int = 3, num_classes: int = 4,
                    **model_kwargs) -> Path:
    """A checkpoint as ``convvit fit`` writes it (hyper-parameters + ``model.``-prefixed state), without training.

    Loading goes through the same ``load_trained_model`` as a trained run's; the weights are the random
    initialisation, which is all the explain command needs to be exercised.
    """
    import convvit

    torch.manual_seed(0)
    model = convvit.create_model(name, num_classes=num_classes, img_size=img_size, in_chans=in_chans, **model_kwargs)
    hp = dict(
        name=name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, model_kwargs=model_kwargs or None,
        class_names=[f"class_{i}" for i in range(num_classes)], mean=None, std=None, crop_pct=1.0,
        interpolation="bicubic",
    )
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": hp, "state_dict": state, "pytorch-lightning_version": "2.0.0"}, path)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Checkpoints of one small model per family that ``convvit explain`` draws differently."""
    root = tmp_path_factory.mktemp("explain_ckpts")
    with one_thread():
        return {
            "vit_c": save_checkpoint(root / "vit_c.ckpt", "vit_c_nano_32px", img_size=32),
            "convit": save_checkpoint(root / "convit.ckpt", "convit_tiny", img_size=32, patch_size=8, depth=4,
                                      local_up_to_layer=3),
            "cvt": save_checkpoint(root / "cvt.ckpt", "cvt_13", img_size=64),
        }


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """Three readable images of different modes and sizes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("explain_images")
    torch.manual_seed(0)
    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy(), "RGB").save(root / "rgb.png")
    Image.fromarray((torch.rand(20, 20) * 255).byte().numpy(), "L").save(root / "gray.png")
    Image.fromarray((torch.rand(33, 17, 4) * 255).byte().numpy(), "RGBA").save(root / "rgba.png")
    return root
