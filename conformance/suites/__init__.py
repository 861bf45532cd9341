"""The conformance suites: run with `pytest --pyargs conformance.suites --gateway-url URL`."""
