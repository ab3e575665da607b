"""The models package's import layers: the registry builds, the checkpoint loader fits weights, the factory joins them.

Read from the source (every import, top-level or inside a function), so that a lazy import that ties the
layers back into a knot fails here even though Python would run it.
"""
import ast
from pathlib import Path

import convvit

SRC = Path(convvit.__file__).parent


def _imported_modules(relative_path: str) -> set[str]:
    tree = ast.parse((SRC / relative_path).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_registry_imports_no_checkpoint_code():
    convvit_imports = {m for m in _imported_modules("models/registry.py") if m.startswith("convvit")}
    assert not {m for m in convvit_imports if "checkpoints" in m or m == "convvit.models.factory"}, convvit_imports


def test_checkpoint_loader_builds_through_the_registry_only():
    imports = _imported_modules("models/checkpoints/loading.py")
    assert "convvit.models.registry" in imports
    assert "convvit.models.factory" not in imports and "convvit.models" not in imports


def test_create_model_loads_weights_through_the_factory(tmp_path):
    import torch

    from convvit.checkpoints.files import save_weights

    source = convvit.create_model("vit_c_nano_32px", num_classes=3, img_size=32)
    save_weights(source, tmp_path / "w.safetensors")
    loaded = convvit.create_model("vit_c_nano_32px", num_classes=3, img_size=32,
                                  checkpoint_path=tmp_path / "w.safetensors")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
