"""The batch commands' process tuning: the collector paused until settled, the caller's setting restored."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from runtime.commands.tuning import batch_process


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the test process's collector enabled and nothing frozen, whatever the test did."""
    yield
    gc.enable()
    gc.unfreeze()


@pytest.mark.usefixtures("collector")
def test_the_collector_is_paused_until_settled_and_the_heap_frozen() -> None:
    gc.enable()
    with batch_process() as settle:
        assert not gc.isenabled()
        survivor = [object() for _ in range(1000)]
        frozen = gc.get_freeze_count()
        settle()
        assert gc.isenabled() and gc.get_freeze_count() > frozen
    assert gc.isenabled() and survivor


@pytest.mark.usefixtures("collector")
def test_the_callers_setting_comes_back_even_after_an_error() -> None:
    gc.disable()
    with pytest.raises(RuntimeError), batch_process() as settle:
        settle()
        raise RuntimeError("the command failed")
    assert not gc.isenabled()
