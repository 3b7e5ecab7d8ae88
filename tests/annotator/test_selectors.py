"""Tests of annotator.selectors: reads not exercised through a service (label search)."""

from __future__ import annotations

from annotator import selectors, services


def test_label_search_ignores_case_and_diacritics_and_ranks_prefix_first(manager):
    project = services.project_create(
        user=manager,
        name="GND",
        labels=["Künstliche Intelligenz", "Geschichte der künstlichen Kunst", "Kunst"],
    )
    names = [label.name for label in selectors.label_search(project=project, query="kunstliche int")]
    assert names == ["Künstliche Intelligenz"]
    names = [label.name for label in selectors.label_search(project=project, query="KUNST")]
    assert names == ["Kunst", "Künstliche Intelligenz", "Geschichte der künstlichen Kunst"]
