"""The argument contract: JSON in, the function's own types out, clear errors on bad input."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel

from app.taskflow.arguments import ArgumentError, Signature, decode, encode


class Invoice(BaseModel):
    number: int
    total: Decimal


def charge(invoice: Invoice, when: datetime, customer: uuid.UUID, amount: Decimal, note: str = "") -> None:
    return None


def test_rich_types_round_trip_through_json_as_their_own_types() -> None:
    signature = Signature.of(charge)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    customer = uuid.uuid4()
    stored = encode(
        signature.dump(
            "charge",
            (Invoice(number=1, total=Decimal("9.99")), when),
            {"customer": customer, "amount": Decimal("1.10")},
        )
    )
    # What is stored is plain JSON, never a repr.
    assert "Invoice(" not in stored and "datetime.datetime" not in stored
    args, kwargs = signature.load("charge", json.loads(stored))
    assert args[0] == Invoice(number=1, total=Decimal("9.99"))
    assert args[1] == when
    assert kwargs == {"customer": customer, "amount": Decimal("1.10")}
    assert isinstance(kwargs["amount"], Decimal)


def test_an_unserialisable_argument_is_named_in_the_error() -> None:
    def task(path: object) -> None:
        return None

    with pytest.raises(TypeError, match=r"argument 'path' of task 'task' is a object"):
        Signature.of(task).dump("task", (object(),), {})


def test_a_call_that_does_not_fit_the_function_is_refused_at_enqueue() -> None:
    with pytest.raises(ArgumentError, match="cannot be called with these arguments"):
        Signature.of(charge).dump("charge", (), {"nope": 1})


def test_nan_is_refused_because_json_cannot_hold_it() -> None:
    def task(x: float) -> None:
        return None

    with pytest.raises(ArgumentError, match="argument 'x'"):
        Signature.of(task).dump("task", (float("nan"),), {})


def test_stored_values_that_no_longer_fit_the_type_hints_raise_a_clear_error() -> None:
    with pytest.raises(ArgumentError, match="argument 'when'"):
        Signature.of(charge).load(
            "charge", {"args": [{"number": 1, "total": "1"}, "not a date", str(uuid.uuid4()), "1"], "kwargs": {}}
        )


def test_decode_reads_what_encode_wrote() -> None:
    value = {"args": [1, "a"], "kwargs": {"b": [True, None]}}
    assert decode(encode(value)) == value
