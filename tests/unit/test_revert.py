"""Rollback in the domain: a revert makes a new version with an earlier
version's principles, on top of the latest, retiring what came since and
bringing back what had been retired; and every version says who made it."""

from __future__ import annotations

import pytest

from constitution import ConstitutionVersion, Principle
from constitution.documents import (
    DocumentError,
    imported_version,
    principles_hash,
    reverted_version,
)
from ledger.dashboards import VersionOrigin

P1 = Principle(id="P1", title="Avoid harm", text="Do not help cause serious harm.")
P2 = Principle(id="P2", title="Honesty", text="Do not mislead.")
P2_REWORDED = Principle(id="P2", title="Honesty", text="Never state what you believe false.")
P3 = Principle(id="P3", title="Helpfulness", text="Help with benign requests.")

V1 = ConstitutionVersion(number=1, principles=(P1, P2))
# v2 retires P2 and adds P3; v3 rewords nothing but is a later version still.
V2 = imported_version((P1, P3), V1)
V3 = imported_version((P1, P3, P2_REWORDED.model_copy(update={"id": "P4"})), V2)


def test_a_revert_restores_the_earlier_principles_as_the_next_version() -> None:
    reverted = reverted_version(V1, V3)
    assert reverted.number == 4
    assert reverted.principles == V1.principles
    assert reverted.content_hash == V1.content_hash
    assert reverted.parent_hash == V3.content_hash


def test_a_revert_retires_what_came_since_and_revives_what_it_restores() -> None:
    assert "P2" in V3.retired
    reverted = reverted_version(V1, V3)
    assert set(reverted.retired) == {"P3", "P4"}
    # No id is given out twice: the next new principle is past every one used.
    assert reverted.next_principle_id() == "P5"


def test_after_a_revert_the_same_document_imports_as_the_latest_version() -> None:
    reverted = reverted_version(V1, V3)
    # The revived P2 is live again, so importing v1's document is no longer refused.
    again = imported_version(V1.principles, reverted)
    assert again.content_hash == reverted.content_hash


def test_an_import_may_not_revive_a_retired_id_under_new_text() -> None:
    with pytest.raises(DocumentError, match="P2 was retired"):
        imported_version((P1, P3, P2_REWORDED), V3)


def test_the_hash_of_a_document_is_the_hash_of_the_version_it_would_make() -> None:
    assert principles_hash(V1.principles) == V1.content_hash
    with pytest.raises(DocumentError, match="duplicate principle ids"):
        principles_hash((P1, P1))


@pytest.mark.parametrize(
    ("origin", "said"),
    [
        (VersionOrigin(round_id="r7"), "round r7"),
        (
            VersionOrigin(round_id=None, imported_by="operator:ann", source="/tmp/c.md"),
            "import by operator:ann from /tmp/c.md",
        ),
        (
            VersionOrigin(
                round_id=None, imported_by="operator:ann", reverts=3, reason="too strict"
            ),
            "revert to v3 by operator:ann: too strict",
        ),
    ],
    ids=["round", "import", "revert"],
)
def test_every_version_says_what_made_it(origin: VersionOrigin, said: str) -> None:
    assert origin.made_by == said
