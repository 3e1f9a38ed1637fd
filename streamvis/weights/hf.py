"""Loading transformers models: hub ids or local folders, offline mode, device and dtype choice.

Every transformers-backed model (Florence-2, SAM 2.1, EdgeTAM, SAM) is loaded through `load_pretrained`, so a
user's hub id, a local folder and the tiny test models all take the same path.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from streamvis import env
from streamvis.errors import ModelError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: how long the one reachability check of the hub may take before a missing model is reported
HUB_CHECK_TIMEOUT_S = 5.0


def resolve_device(device: str) -> str:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an error, not a fallback."""
    import torch

    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if device == "auto":
        return next(name for name in ("cuda", "mps", "cpu") if available[name])
    if not available.get(device, False):
        raise ModelError(f"device '{device}' was asked for but is not available here (use device: auto or cpu)")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """`auto`: bfloat16 on GPUs that support it, else float16 on cuda/mps; float32 on CPU."""
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _how_to_provide(model_id: str, field: str) -> str:
    return (f"download it where the hub is reachable (`hf download {model_id}`) and copy the Hugging Face cache, "
            f"or set {field} to a local folder")


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from here (checked once per process, one connection attempt
    of at most `HUB_CHECK_TIMEOUT_S`), or None when it can. Without this, a missing model would wait minutes
    through the hub client's retries before failing."""
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_CHECK_TIMEOUT_S).close()
    except OSError as exc:
        return f"cannot reach {host}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}"
    return None


def _is_hub_id(model_id: str) -> bool:
    """`owner/name`, and no such path here (registry names such as `yolox-nano` have no owner)."""
    return (model_id.count("/") == 1 and not model_id.startswith((".", "/", "~")) and not model_id.endswith(".onnx")
            and not Path(model_id).expanduser().exists())


def check_reachable(model_id: str, field: str) -> None:
    """Fail at once, before any heavy import, when hub model `model_id` is neither cached nor downloadable."""
    if not _is_hub_id(model_id) or env.offline():
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return
    unreachable = hub_unreachable()
    if unreachable:
        raise ModelError(f"{field}: model '{model_id}' is not in the local cache and the Hugging Face hub "
                         f"cannot be reached ({unreachable}); {_how_to_provide(model_id, field)}")


def load_pretrained(loader: Any, model_id: str, field: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(model_id)` with one-line errors naming the model, the field and the way out.

    `model_id` is a hub id (`facebook/sam2.1-hiera-tiny`) or a folder holding `config.json`. In offline mode
    only the local cache is consulted.
    """
    path = Path(model_id).expanduser()
    is_folder = path.is_dir()
    looks_local = is_folder or model_id.startswith((".", "/", "~")) or os.sep + os.sep in model_id
    if looks_local and not is_folder:
        raise ModelError(f"{field}: folder {model_id} does not exist")
    offline = env.offline()
    source = str(path) if is_folder else model_id
    try:
        if is_folder or offline:
            return loader.from_pretrained(source, local_files_only=True, **kwargs)
        try:  # the local cache first: no network when the model is there
            return loader.from_pretrained(source, local_files_only=True, **kwargs)
        except OSError:
            check_reachable(model_id, field)
        return loader.from_pretrained(source, **kwargs)
    except OSError as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if is_folder:
            raise ModelError(f"{field}: folder {model_id} is not a usable model ({text})") from None
        if offline:
            raise ModelError(f"{field}: model '{model_id}' is not in the local cache and offline mode is on "
                             f"(HF_HUB_OFFLINE/STREAMVIS_OFFLINE); {_how_to_provide(model_id, field)}") from None
        raise ModelError(f"{field}: model '{model_id}' could not be fetched from the Hugging Face hub ({text}); "
                         f"{_how_to_provide(model_id, field)}") from None
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{field}: '{model_id}' could not be loaded as {getattr(loader, '__name__', loader)} "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def load_model(loader: Any, model_id: str, field: str, device: str, dtype: str,
               attention: str = "auto") -> tuple[Any, str, Any, str]:
    """Load a transformers model onto the configured device and dtype, in eval mode, with `attention` kernels
    (`sdpa`: torch's fused attention; `eager`: the reference implementation; `auto`: transformers' choice, sdpa
    where the model has it).

    Returns (model, device, torch dtype, provider) where provider reads like `torch:cuda:bfloat16` for logs.
    """
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    kwargs = {} if attention == "auto" else {"attn_implementation": attention}
    model = load_pretrained(loader, model_id, field, dtype=torch_dtype, **kwargs).to(resolved_device).eval()
    provider = f"torch:{resolved_device}:{str(torch_dtype).removeprefix('torch.')}"
    return model, resolved_device, torch_dtype, provider
