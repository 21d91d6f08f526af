"""The retriever service's HTTP API (FastAPI): ``create_app`` builds it, ``chatir serve`` runs it."""

from retriever_service.api.app import create_app

__all__ = ["create_app"]
