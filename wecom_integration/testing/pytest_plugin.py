"""pytest fixtures for the fake WeCom. Register with
``pytest_plugins = ["wecom_integration.testing.pytest_plugin"]`` in a root conftest.py."""

from __future__ import annotations

import pytest

from wecom_integration.testing.server import FakeWeCom


@pytest.fixture
def fake_wecom():
    """A small fake corp (60 members, 8 departments, seed 1), listening for this test only."""
    with FakeWeCom(users=60, departments=8, seed=1) as fake:
        yield fake


@pytest.fixture
def make_fake_wecom():
    """Factory: ``make_fake_wecom(**FakeWeCom kwargs)`` returns a started fake; all stop at teardown.
    Use it for a second corp (multi-tenant tests) or non-default settings."""
    fakes: list[FakeWeCom] = []

    def make(**kwargs) -> FakeWeCom:
        fake = FakeWeCom(**kwargs).start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.stop()
