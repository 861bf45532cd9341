"""`python -m loadtests`: print the load-test options (Locust's own --help does not list a locustfile's options)."""

from __future__ import annotations

import argparse

from loadtests.settings import add_arguments


def main() -> None:
    """Print the options the load-test locustfile adds to Locust's."""
    parser = argparse.ArgumentParser(
        prog="locust -f loadtests/locustfile.py -H URL",
        description="LLM gateway load tests (docs/loadtests.md). Locust's own options also apply; the key comes "
        "from GATEWAY_API_KEY, then ANTHROPIC_API_KEY.",
    )
    add_arguments(parser)
    parser.print_help()


if __name__ == "__main__":
    main()
