"""Fakes of third-party SaaS at their HTTP boundary (Shopify Partner API, Stripe API)."""
