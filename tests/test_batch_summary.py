"""A batch summary: a JSON list of item results, and a leaf for Prefect's walk of flow results."""

import pickle

from prefect.utilities.collections import visit_collection

from archiver.batch import BatchSummary, ItemResult, ItemResults
from archiver.pipeline import FileSummary


def _items(count: int) -> list[ItemResult]:
    file = FileSummary(name="out-0.png", path="a/out-0.png", url="/a/out-0.png", size=1, sha256="0")
    return [
        ItemResult(
            index=i, line=i + 1, model="o/m", input={"seed": i}, outcome="archived"
        ).model_copy(update={"files": [file]})
        for i in range(count)
    ]


def test_prefect_does_not_walk_into_the_items_of_a_returned_summary():
    """Prefect's look for futures in a flow's return value stops at the items (no per-item cost)."""
    summary = BatchSummary(file="f.jsonl", dest="/archive", items=_items(200))
    visited: list[object] = []
    visit_collection(summary, visit_fn=visited.append, return_data=False)
    assert not any(isinstance(v, ItemResult | FileSummary) for v in visited)
    assert any(isinstance(v, ItemResults) for v in visited)


def test_items_read_as_a_list_and_round_trip_through_json_and_pickle():
    """Items index, iterate and compare like the list they were given as; JSON and pickle keep them."""
    items = _items(3)
    summary = BatchSummary(file="f.jsonl", dest="/archive", items=items)
    assert summary.items == items and len(summary.items) == 3
    assert summary.items[-1].index == 2 and [i.index for i in summary.items[1:]] == [1, 2]
    assert BatchSummary.model_validate_json(summary.model_dump_json()) == summary
    assert pickle.loads(pickle.dumps(summary)) == summary
    dumped = summary.model_dump(mode="json")
    assert (
        isinstance(dumped["items"], list) and dumped["items"][0]["files"][0]["name"] == "out-0.png"
    )
    assert "previews" not in dumped["items"][0]
    assert summary.counts == {"archived": 3, "cached": 0, "failed": 0}
