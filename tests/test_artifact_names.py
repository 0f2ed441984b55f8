"""The artifact names `components` exposes are exactly components/artifacts.py's types."""

from __future__ import annotations


def test_the_lazy_names_match_the_artifact_module():
    import components
    from components import artifacts

    assert set(components.__all__) == {t.__name__ for t in artifacts.ALL_ARTIFACT_TYPES}
    for artifact_type in artifacts.ALL_ARTIFACT_TYPES:
        assert getattr(components, artifact_type.__name__) is artifact_type
        assert f"components.{artifact_type.__name__}" == artifact_type.TYPE_NAME


def test_every_variant_kind_names_an_artifact_type():
    from components import artifacts
    from components.variant_kinds import all_kinds

    names = {t.__name__ for t in artifacts.ALL_ARTIFACT_TYPES}
    for kind in all_kinds():
        assert kind.artifact_type in names, kind.name
