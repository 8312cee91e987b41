"""Every GraphQL document Convot sends to the Partner API.

Each one is validated in tests/engine/shopify/test_queries.py against the published 2025-07
schema (/work/shared/shopify/partner-api-schema.2025-07.json); nothing else is ever sent.
Names start with ``Convot`` so the Partner API's logs show who asked.
"""

from __future__ import annotations

# App transaction types we copy: subscription, usage and one-time sales, adjustments, credits.
APP_TRANSACTION_TYPES = (
    "APP_SUBSCRIPTION_SALE",
    "APP_USAGE_SALE",
    "APP_ONE_TIME_SALE",
    "APP_SALE_ADJUSTMENT",
    "APP_SALE_CREDIT",
)

# The GraphQL object type behind each transaction type above.
TRANSACTION_TYPENAMES = {
    "AppSubscriptionSale": "APP_SUBSCRIPTION_SALE",
    "AppUsageSale": "APP_USAGE_SALE",
    "AppOneTimeSale": "APP_ONE_TIME_SALE",
    "AppSaleAdjustment": "APP_SALE_ADJUSTMENT",
    "AppSaleCredit": "APP_SALE_CREDIT",
}

_MONEY = "{ amount currencyCode }"
_SALE_FIELDS = (
    "app { id name } shop { id myshopifyDomain name } chargeId "
    f"grossAmount {_MONEY} netAmount {_MONEY} shopifyFee {_MONEY}"
)

# A cheap read of the organisation's own data: proves the id and token belong together.
CONNECTION_CHECK = """
query ConvotConnectionCheck {
  transactions(first: 1) {
    edges { node { id createdAt } }
  }
}
"""

TRANSACTIONS = f"""
query ConvotTransactions($first: Int!, $after: String, $createdAtMin: DateTime, $types: [TransactionType!]) {{
  transactions(first: $first, after: $after, createdAtMin: $createdAtMin, types: $types) {{
    edges {{
      cursor
      node {{
        __typename
        id
        createdAt
        ... on AppSubscriptionSale {{ billingInterval {_SALE_FIELDS} }}
        ... on AppUsageSale {{ {_SALE_FIELDS} }}
        ... on AppOneTimeSale {{ {_SALE_FIELDS} }}
        ... on AppSaleAdjustment {{ {_SALE_FIELDS} }}
        ... on AppSaleCredit {{ {_SALE_FIELDS} }}
      }}
    }}
    pageInfo {{ hasNextPage }}
  }}
}}
"""

_CHARGE = f"id name test amount {_MONEY}"

APP_EVENTS = f"""
query ConvotAppEvents($appId: ID!, $first: Int!, $after: String, $occurredAtMin: DateTime) {{
  app(id: $appId) {{
    id
    name
    events(first: $first, after: $after, occurredAtMin: $occurredAtMin) {{
      edges {{
        cursor
        node {{
          __typename
          type
          occurredAt
          shop {{ id myshopifyDomain name }}
          ... on AppSubscriptionEvent {{ charge {{ {_CHARGE} billingOn }} }}
          ... on AppPurchaseOneTimeEvent {{ charge {{ {_CHARGE} }} }}
          ... on AppUsageRecordEvent {{ charge {{ {_CHARGE} }} }}
          ... on AppCreditEvent {{ appCredit {{ {_CHARGE} }} }}
          ... on RelationshipUninstalled {{ reason description }}
        }}
      }}
      pageInfo {{ hasNextPage }}
    }}
  }}
}}
"""

ALL = {
    "ConvotConnectionCheck": CONNECTION_CHECK,
    "ConvotTransactions": TRANSACTIONS,
    "ConvotAppEvents": APP_EVENTS,
}
