"""Billing of Convot itself through Stripe: plans and limits, Checkout and the billing portal,
the signed webhook and its out-of-order-safe state machine.  docs/billing.md explains it."""
