"""The store's decision under its write lock: key replays, conflicts and token limits, in order."""

from __future__ import annotations

import pytest

from services.api.admission import Admission, Candidate, admit
from services.api.errors import Conflict, Forbidden, ParameterError
from services.api.idempotency import Claim, Prior, Replay, parse_key

OWNER = ("alice", "corp")


def at_most(limit: int) -> Admission:
    return Admission(limit=lambda total, _active: "full" if total >= limit else None)


def test_limits_count_the_tokens_admitted_before_in_the_same_batch() -> None:
    candidates = [Candidate(f"S{i}", OWNER, at_most(2)) for i in range(4)]
    verdicts = admit(candidates, {OWNER: [1, 1]}, {})
    assert verdicts[0] is None
    assert [str(v) for v in verdicts[1:]] == ["full", "full", "full"]
    assert all(isinstance(v, Forbidden) for v in verdicts[1:])


def test_a_key_replays_its_first_token_and_refuses_another_body() -> None:
    claim = Claim("admin:root@", "k", "fp")
    other_body = Claim("admin:root@", "k", "other")
    other_caller = Claim("user:alice@corp", "k", "fp")
    candidates = [
        Candidate("S1", OWNER, Admission(claim=claim)),
        Candidate("S2", OWNER, Admission(claim=claim)),
        Candidate("S3", OWNER, Admission(claim=other_body)),
        Candidate("S4", OWNER, Admission(claim=other_caller)),
    ]
    verdicts = admit(candidates, {}, {})
    assert verdicts[0] is None and verdicts[3] is None
    assert verdicts[1] == Replay("S1")
    assert isinstance(verdicts[2], Conflict)
    # A key stored by an earlier batch replays too, and takes no place under a limit.
    limited = Admission(limit=lambda total, _a: "full" if total >= 1 else None, claim=claim)
    earlier = {claim.id: Prior("fp", "S0")}
    assert admit([Candidate("S5", OWNER, limited)], {OWNER: [1, 1]}, earlier) == [Replay("S0")]


@pytest.mark.parametrize("value", ["", "x" * 256, "a\tb", "caf\xe9", "nul\x00"])
def test_malformed_keys_name_the_header(value: str) -> None:
    with pytest.raises(ParameterError, match=r"^Idempotency-Key: "):
        parse_key(value)


def test_well_formed_keys_pass() -> None:
    assert parse_key(None) is None
    assert parse_key("x" * 255) == "x" * 255
    assert parse_key("order 42/retry-1") == "order 42/retry-1"
