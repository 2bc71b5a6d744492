"""What the archive accounts for, per model, day or month: predictions, output files, bytes,
model time (`metrics.predict_time`), and with a price table the estimated cost.

The price table is a TOML file (`ARCHIVER_PRICES` or `usage --prices`), one table per model:

    [models."black-forest-labs/flux-schnell"]
    per_output = 0.003          # USD per output file

    [models."stability-ai/sdxl"]
    per_second = 0.000975       # USD per second of predict_time

    [models."owner/name"]
    per_prediction = 0.01       # USD per prediction (any of the three may be combined)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from archiver.errors import ConfigurationError

from .query import Filters
from .store import Catalog

GroupBy = Literal["model", "day", "month"]
_GROUPS = {
    "model": "m.model",
    "day": "substr(m.created_at, 1, 10)",
    "month": "substr(m.created_at, 1, 7)",
}


class Price(BaseModel, extra="forbid"):
    per_second: float = Field(default=0, ge=0)
    per_output: float = Field(default=0, ge=0)
    per_prediction: float = Field(default=0, ge=0)


class Prices(BaseModel, extra="forbid"):
    models: dict[str, Price] = {}

    @classmethod
    def load(cls, path: str) -> Prices:
        """Read a price table; ConfigurationError naming the file and what is wrong."""
        try:
            return cls.model_validate(tomllib.loads(Path(path).expanduser().read_text()))
        except OSError as exc:
            raise ConfigurationError(f"cannot read the price table {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"price table {path} is not valid TOML: {exc}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigurationError(f"price table {path}: {where}: {first['msg']}") from exc


class UsageRow(BaseModel):
    group: str
    predictions: int = 0
    files: int = 0
    bytes: int = 0
    predict_time: float = 0.0
    cost: float | None = None
    unpriced: list[str] = Field(default=[], description="Models in the group without a price.")


class UsageReport(BaseModel):
    dest: str
    by: GroupBy
    since: str | None
    until: str | None
    rows: list[UsageRow]
    total: UsageRow


def usage(
    catalog: Catalog, filters: Filters, *, by: GroupBy, prices: Prices | None, dest: str
) -> UsageReport:
    where, args = filters.where()
    rows = catalog.db.execute(
        f"SELECT {_GROUPS[by]}, m.model, count(*), sum(m.outputs), sum(m.output_bytes),"  # noqa: S608
        f" total(m.predict_time) FROM manifests m WHERE {where} GROUP BY 1, 2 ORDER BY 1",
        args,
    ).fetchall()
    groups: dict[str, UsageRow] = {}
    total = UsageRow(group="total", cost=0.0 if prices else None)
    for group, model, count, files, size, seconds in rows:
        for row in (
            groups.setdefault(group, UsageRow(group=group, cost=0.0 if prices else None)),
            total,
        ):
            row.predictions += count
            row.files += files or 0
            row.bytes += size or 0
            row.predict_time += seconds or 0.0
            if prices is not None:
                price = prices.models.get(model)
                if price is None:
                    if model not in row.unpriced:
                        row.unpriced.append(model)
                    continue
                row.cost = (row.cost or 0.0) + (
                    price.per_second * (seconds or 0.0)
                    + price.per_output * (files or 0)
                    + price.per_prediction * count
                )
    ordered = sorted(groups.values(), key=lambda r: r.group, reverse=by != "model")
    return UsageReport(
        dest=dest, by=by, since=filters.since, until=filters.until, rows=ordered, total=total
    )
