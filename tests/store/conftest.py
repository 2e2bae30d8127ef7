"""Fixtures for the store tests."""

import pytest
from store_helpers import make_metadata, make_reference

from modelloop.store.metadata import ModelMetadata, ReferenceProfile


@pytest.fixture
def meta() -> ModelMetadata:
    return make_metadata()


@pytest.fixture
def reference() -> ReferenceProfile:
    return make_reference()
