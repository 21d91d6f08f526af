"""Training the dialog encoder F ChatIR's way, and the project's starter model.

- ``losses``: the Recall@K surrogate (Patel et al., CVPR 2022) and InfoNCE;
- ``masking``: caption masking and the ablation's other masks;
- ``data``: ChatIR dialog files -> partial dialogs D_i, galleries with in-batch and hard negatives;
- ``trainer``: the loop (AdamW, lr decay, AMP, accumulation, checkpoints that resume exactly, JSONL log);
- ``dialog_task``: ``train_dialog_encoder`` (``chatir train``);
- ``contrastive``: image-caption contrastive stage of the starter;
- ``starter`` / ``starter_eval``: building, shipping, assembling and evaluating the starter model.

Submodules import torch; this package itself stays light so ``chatir --help`` is instant.
"""
