"""Every document in engine/shopify/queries.py is valid against the published Partner API schema."""

import json
from pathlib import Path

import graphql
import pytest

from engine.shopify import queries

# The published schema lives next to the repository: ../shared/shopify/ (see its README).
SCHEMA_FILE = Path(__file__).resolve().parents[3].parent / "shared" / "shopify" / "partner-api-schema.2025-07.json"


@pytest.fixture(scope="module")
def schema() -> graphql.GraphQLSchema:
    return graphql.build_client_schema(json.loads(SCHEMA_FILE.read_text())["data"])


@pytest.mark.parametrize("name", sorted(queries.ALL))
def test_document_validates_against_the_schema(schema, name):
    document = graphql.parse(queries.ALL[name])
    errors = graphql.validate(schema, document)
    assert errors == [], [e.message for e in errors]
    operations = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    assert [op.name.value for op in operations] == [name]


def test_validation_catches_a_wrong_field(schema):
    """Negative control: the same check fails on a field the schema does not have."""
    broken = queries.TRANSACTIONS.replace("billingInterval", "billingCycle")
    errors = graphql.validate(schema, graphql.parse(broken))
    assert any("billingCycle" in e.message for e in errors)


def test_every_copied_transaction_type_exists_and_is_selected(schema):
    enum = schema.get_type("TransactionType")
    assert set(queries.APP_TRANSACTION_TYPES) <= set(enum.values)
    possible = {t.name for t in schema.get_possible_types(schema.get_type("Transaction"))}
    assert set(queries.TRANSACTION_TYPENAMES) <= possible
    for typename in queries.TRANSACTION_TYPENAMES:
        assert f"... on {typename} " in queries.TRANSACTIONS


def test_event_query_covers_every_event_interface(schema):
    """Each AppEvent implementation is reached by one of the inline fragments or needs no extra fields."""
    selected_interfaces = {"AppSubscriptionEvent", "AppPurchaseOneTimeEvent", "AppUsageRecordEvent", "AppCreditEvent"}
    for event_type in schema.get_possible_types(schema.get_type("AppEvent")):
        extra = {i.name for i in event_type.interfaces} - {"AppEvent"}
        assert extra <= selected_interfaces, event_type.name
