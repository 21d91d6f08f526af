"""ChatIR for Slack: chat-based image retrieval (Levy et al., NeurIPS 2023) as a product.

Shared pieces live here: the settings object, the dialog model, the CLI, the procedural world and
the evaluation harness. The learned retriever lives in :mod:`retriever_service`, the questioner and
conversation engine in :mod:`agent`, the image-search tool in :mod:`tools`, and the front-ends
(Slack, web, terminal) in :mod:`frontends`.
"""

__version__ = "0.1.0"
