"""Convot: shared foundation (configuration, database, logging, embedded servers, CLI)."""
