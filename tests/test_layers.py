"""The packages import only downward (docs/ARCHITECTURE.md): import-linter's contracts in pyproject.toml.

The first test checks the code as it is; the others add one forbidden import to the real import graph and
check that a contract breaks -- so the contracts would catch each edge the layering review found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is a test dependency")

from importlinter import configuration
from importlinter.adapters.building import GraphBuilder
from importlinter.application import use_cases
from importlinter.application.app_config import settings as linter_settings

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class _GraphWithExtraImport(GraphBuilder):
    """The real import graph of the project plus one import that is not in the code."""

    def __init__(self, importer: str, imported: str) -> None:
        self.importer, self.imported = importer, imported

    def build(self, *args, **kwargs):
        graph = super().build(*args, **kwargs)
        graph.add_import(
            importer=self.importer, imported=self.imported, line_number=1, line_contents="import"
        )
        return graph


def _report(builder: GraphBuilder | None = None):
    configuration.configure()
    if builder is not None:
        linter_settings.configure(GRAPH_BUILDER=builder)
    try:
        use_cases._register_built_in_contract_types()  # what `lint-imports` does first
        options = use_cases.read_user_options(str(PYPROJECT))
        return use_cases.create_report(options, cache_dir=None)
    finally:
        configuration.configure()


def _broken(report) -> set[str]:
    return {contract.name for contract, check in report.get_contracts_and_checks() if not check.kept}


def test_the_code_keeps_every_contract():
    report = _report()
    assert not report.could_not_run
    assert report.kept_count == 2 and report.broken_count == 0, _broken(report)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("chatir.settings", "world.scene"),  # the base reaching up
        ("retriever_service.models.loader", "training.starter"),  # serving starting a build
        ("training.dialog_task", "frontends.demo"),  # training reaching a front-end
        ("evaluation.live", "training.joint"),  # evaluation below training
        ("agent.factory", "retriever_service.models"),  # the agent loading its own model
        ("agent.questioners.scoring", "torch"),  # the agent needing torch
        ("tools.client", "agent.engine"),  # the tool reaching up into the agent
        ("tools.client", "retriever_service.service"),  # the tool importing the service instead of HTTP
        ("world.generator", "agent.questioners.bank"),  # world and agent are independent
        ("agent.questioners.bank", "world.questions"),
        ("frontends.slack.app", "retriever_service.service"),  # the bot reaching into the service object
        ("frontends.web.app", "transformers"),  # the web chat needing a model
    ],
)
def test_a_forbidden_import_breaks_a_contract(importer, imported):
    report = _report(_GraphWithExtraImport(importer, imported))
    assert report.broken_count >= 1, f"{importer} -> {imported} kept every contract"
