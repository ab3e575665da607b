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


class PooledKeyAttention(torch.nn.Module):
    """A test family's attention: keys and values are the patch tokens average-pooled 2 x 2 (the class token kept),
    so its keys sit on a coarser grid than its queries, as CvT's do, by another route."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.kv, self.proj = torch.nn.Linear(dim, dim), torch.nn.Linear(dim, 2 * dim), torch.nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)  # (B, h, T, d)

    def _qkv(self, x: torch.Tensor, grid):
        B, _, C = x.shape
        patches = x[:, 1:].transpose(1, 2).reshape(B, C, grid[0], grid[1])
        pooled = torch.nn.functional.avg_pool2d(patches, 2).flatten(2).transpose(1, 2)  # (B, H/2 * W/2, C)
        k, v = self.kv(torch.cat([x[:, :1], pooled], dim=1)).chunk(2, dim=-1)
        return self._heads(self.q(x)), self._heads(k), self._heads(v)

    def attention_probs(self, x: torch.Tensor, grid):
        q, k, _ = self._qkv(x, grid)
        return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1), (grid[0] // 2, grid[1] // 2)

    def forward(self, x: torch.Tensor, grid) -> torch.Tensor:
        q, k, v = self._qkv(x, grid)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # (B, h, T, d)
        return self.proj(out.transpose(1, 2).reshape(x.shape))


@pytest.fixture
def outside_family():
    """A TokenModel family that convvit does not know: a patchify embedding, a class token, pooled-key attention,
    and two panels of its own (the class token's last attention, and channels of its embedding)."""
    from convvit.models._base import TokenModel
    from convvit.models.layers import Block

    class PooledKeyViT(TokenModel):
        def __init__(self, dim: int = 16, depth: int = 2) -> None:
            super().__init__(3, "token", 1, 3)
            self.patch_embed = torch.nn.Conv2d(3, dim, kernel_size=4, stride=4)
            self.cls_token = torch.nn.Parameter(torch.randn(1, 1, dim))
            self.blocks = torch.nn.ModuleList(Block(dim, PooledKeyAttention(dim, 2), 2 * dim) for _ in range(depth))
            self._init_head(dim, torch.nn.LayerNorm, 0.0)

        def _iter_blocks(self, x):
            x = self.patch_embed(x)
            grid = (x.shape[2], x.shape[3])
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
            for block in self.blocks:
                x = block(x, grid)
                yield x, 1, grid

        def forward_features(self, x):
            *_, (tokens, _, _) = self._iter_blocks(x)
            return self.norm(tokens)

        def explain_taps(self):
            return {"embedding": self.patch_embed}

        def explain_panels(self, maps, taps):
            info = maps.infos[-1]
            embedding = taps["embedding"][0]  # (C, H', W')
            return dict(cls_attention=maps[-1][0, :, 0, info.num_prefix:].mean(dim=0).reshape(info.key_grid),
                        stem_maps=(embedding[:4], embedding[4:8]))

    torch.manual_seed(0)
    return PooledKeyViT().eval()
