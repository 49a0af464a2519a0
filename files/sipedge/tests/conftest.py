"""Fixtures for the core's unit tests."""

import pytest

from harness import Harness


@pytest.fixture
def edge():
    return Harness()


@pytest.fixture
def make_edge():
    return Harness
