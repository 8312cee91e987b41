"""Bench scenarios; each module exposes ``add_arguments(parser)`` and ``main(args) -> int``."""

SCENARIOS = {"steady-chat": "bench.scenarios.steady_chat"}
