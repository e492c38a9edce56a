"""Shared by the GUI tests: free local ports for the launched apps."""

import socket
from collections.abc import Callable

import pytest


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick
