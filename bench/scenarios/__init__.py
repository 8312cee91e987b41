"""Bench scenarios; each module exposes ``add_arguments(parser)`` and ``main(args) -> int``."""

SCENARIOS = {
    "steady-chat": "bench.scenarios.steady_chat",
    "fan-out": "bench.scenarios.fan_out",
    "connection-storm": "bench.scenarios.connection_storm",
    "reconnect-storm": "bench.scenarios.reconnect_storm",
    "idle-capacity": "bench.scenarios.idle_capacity",
}
