"""`python -m bench <scenario> [options]` (also `convot bench <scenario>`)."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description="Convot load-test scenarios")
    sub = parser.add_subparsers(dest="scenario", required=True)
    modules = {}
    for name, module_name in SCENARIOS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=module.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    return modules[args.scenario].main(args)


if __name__ == "__main__":
    sys.exit(main())
