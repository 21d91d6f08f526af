"""``chatir eval --protocol chatir`` on ChatIR's own published dialogs and corpus list (../shared/data/chatir),
against a transcription of ChatIR's metric (tests/test_eval_metrics.py) computed here from scratch.

The images are stand-ins (ChatIR's are COCO unlabeled2017, not shipped): small noise pictures written at the
list's paths for the targets and eight of the list's other entries, kept in the list's order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from chatir.settings import Settings
from frontends.main import app
from tests.conftest import CHATIR_DATA_DIR
from tests.test_eval_metrics import chatir_cumulative_hits_per_round, chatir_target_recall

DIALOGS = CHATIR_DATA_DIR / "VisDial_v1.0_queries_val.json"
SPACE = CHATIR_DATA_DIR / "Search_Space_val_50k.json"

pytestmark = pytest.mark.skipif(
    not (DIALOGS.is_file() and SPACE.is_file()), reason=f"no ChatIR data in {CHATIR_DATA_DIR}"
)


@pytest.fixture
def chatir_inputs(tmp_path):
    """(dialogs file, image root, corpus list, the dialogs, the corpus paths) -- 12 dialogs, 20 images."""
    dialogs = json.loads(DIALOGS.read_text())[:12]
    space = json.loads(SPACE.read_text())
    targets = {d["img"] for d in dialogs}
    others = [p for p in space if p not in targets][:8]  # a small corpus: the top 10 must hold targets
    corpus = [p for p in space if p in targets or p in set(others)]  # ChatIR's order
    assert targets <= set(corpus)
    root = tmp_path / "coco"
    rng = np.random.default_rng(3)
    for path in corpus:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / path)
    (tmp_path / "dialogs.json").write_text(json.dumps(dialogs))
    (tmp_path / "space.json").write_text(json.dumps(corpus))
    return tmp_path / "dialogs.json", root, tmp_path / "space.json", dialogs, corpus


def _eval(tmp_path, *args):
    return CliRunner().invoke(
        app, ["eval", "--no-cache", "--no-progress", "--out", str(tmp_path / "out"), *args]
    )


def test_protocol_chatir_equals_chatirs_own_metric(chatir_inputs, tiny_blip_dir, tmp_path, monkeypatch):
    dialogs_file, root, space_file, dialogs, corpus = chatir_inputs
    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    result = _eval(
        tmp_path,
        "--protocol",
        "chatir",
        "--dialogs",
        str(dialogs_file),
        "--images",
        str(root),
        "--corpus",
        str(space_file),
        "--model",
        str(tiny_blip_dir),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    protocol = report["meta"]["protocol"]
    assert (protocol["truncation"], protocol["max_text_tokens"], protocol["ties"]) == ("tail", 200, "index")
    assert protocol["model_dtype"] == "torch.float32"
    assert report["meta"]["text_path"] == "fp32"  # ChatIR's arithmetic: no fast path under this protocol
    ours = report["systems"][0]["hits"]["10"]

    # ChatIR's eval.py, transcribed: ", ".join(dialog[:i + 1]) tokenized with truncation at 200, scores
    # against the corpus in the list's order, stable descending argsort, first hitting time.
    from retriever_service.models import load_model

    model = load_model(
        str(tiny_blip_dir), device="cpu", settings=Settings(home=tmp_path / "h"), dtype=torch.float32
    )
    model.max_text_tokens = 200
    images = model.encode_images([Image.open(root / path) for path in corpus])
    target_ids = torch.tensor([corpus.index(d["img"]) for d in dialogs])
    recalls = []
    for round_ in range(11):
        texts = [", ".join(d["dialog"][: round_ + 1]) for d in dialogs]
        scores = torch.from_numpy(model.encode_texts(texts) @ images.T)
        recalls.append(chatir_target_recall(scores, target_ids))
    theirs = chatir_cumulative_hits_per_round(torch.cat(recalls), 10, 11).tolist()
    assert max(theirs) > 0  # not vacuous: some targets do reach the top 10
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert "protocol chatir" in (tmp_path / "out" / "results.md").read_text()


def test_protocol_chatir_refuses_what_chatir_does_not_define(chatir_inputs, tiny_blip_dir, tmp_path):
    dialogs_file, root, space_file, _, corpus = chatir_inputs
    base = [
        "--protocol",
        "chatir",
        "--dialogs",
        str(dialogs_file),
        "--images",
        str(root),
        "--model",
        str(tiny_blip_dir),
    ]
    no_list = _eval(tmp_path, *base)
    assert no_list.exit_code != 0 and "needs --corpus" in str(no_list.exception or no_list.output)
    optimistic = _eval(tmp_path, *base, "--corpus", str(space_file), "--ties", "optimistic")
    assert optimistic.exit_code != 0 and "--ties index" in str(optimistic.exception or optimistic.output)
    for path in corpus[1:4]:
        (root / path).unlink()
    missing = _eval(tmp_path, *base, "--corpus", str(space_file))
    assert missing.exit_code != 0
    assert "3 of the 20 images" in str(missing.exception or missing.output)
