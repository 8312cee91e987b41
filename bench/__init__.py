"""Convot's load-test suite: scenarios (bench/scenarios/), a lean websocket client
(bench/client.py), the system under test started as real processes (bench/stack.py) and a
results writer with HDR-histogram percentiles (bench/results.py).

    python -m bench steady-chat --shoppers 1000 --orgs 50 --agents 3 --rate 1000 --duration 60
    convot bench steady-chat ...            (same thing)
"""
