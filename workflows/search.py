"""The search attributes a round keeps current in Temporal's visibility store.

With them `temporal workflow list --query` and the Temporal UI can filter
rounds without the ledger. A server must have them registered (`amend dev` and
the tests' dev server do); `start_round` sets their first values, and the
workflow upserts only what its round was started with, so a cluster without
them still runs rounds.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

ROUND_STATE = SearchAttributeKey.for_keyword("RoundState")
PENDING_DECISIONS = SearchAttributeKey.for_int("PendingDecisions")
CONSTITUTION_VERSION = SearchAttributeKey.for_int("ConstitutionVersion")

ROUND_SEARCH_ATTRIBUTES = (ROUND_STATE, PENDING_DECISIONS, CONSTITUTION_VERSION)

# The type names `temporal server start-dev --search-attribute` takes.
_CLI_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
}


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register the attributes."""
    flags: list[str] = []
    for key in ROUND_SEARCH_ATTRIBUTES:
        kind = _CLI_TYPES[key.indexed_value_type]
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
