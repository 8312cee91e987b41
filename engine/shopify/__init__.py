"""Merchant revenue from the Shopify Partner API: queries, client, pure model, sync, runner.

`queries` holds every GraphQL document we send (validated in the tests against the published
2025-07 schema); `client` talks to the Partner API over aiohttp and turns its failures into
typed exceptions; `model` derives per-merchant plan, status and MRR and the dashboard metrics
(pure, Decimal only); `sync` copies transactions and events into PostgreSQL incrementally;
`runner` polls due connections in the engine worker process.  docs/revenue.md explains it all.
"""
