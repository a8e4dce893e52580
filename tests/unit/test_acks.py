"""TagBook: the fewest acks that settle exactly the handled deliveries, as RabbitMQ reads them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.messaging.acks import TagBook


def _apply(unacked: set[int], covered: list[int], singles: list[int]) -> set[int]:
    """What RabbitMQ settles for these acks; an unknown tag would close the channel."""
    settled: set[int] = set()
    if covered:
        assert covered[-1] in unacked, "a multiple ack's own tag must be unacked"
        settled |= {t for t in unacked if t <= covered[-1]}
    for tag in singles:
        assert tag in unacked - settled, f"tag {tag} acked twice or unknown"
        settled.add(tag)
    return settled


def test_a_run_of_handled_tags_is_one_multiple_ack() -> None:
    book = TagBook(unsettled={1, 2, 3, 4}, handled={1, 2, 3, 4})
    assert book.take() == ([1, 2, 3, 4], [])
    assert book == TagBook()


def test_a_tag_in_hand_holds_back_the_multiple_ack_above_it() -> None:
    book = TagBook(unsettled={1, 2, 3, 4, 5}, handled={1, 2, 4})
    assert book.take() == ([1, 2], [4])
    assert book.unsettled == {3, 5}
    book.handled.add(3)
    assert book.take() == ([3], [])


def test_nothing_handled_sends_nothing() -> None:
    book = TagBook(unsettled={7})
    assert book.take() == ([], [])
    assert book.unsettled == {7}


@given(
    st.integers(min_value=1, max_value=80).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.permutations(range(1, n + 1)),
            st.lists(st.integers(min_value=0, max_value=n), max_size=12),
            st.integers(min_value=0, max_value=n),
        )
    )
)
def test_acks_settle_exactly_the_handled_tags(case: tuple[int, list[int], list[int], int]) -> None:
    count, order, take_after, unhandled = case
    # Deliveries 1..count; handled in *order*, but the last *unhandled* of them never finish.
    book, unacked = TagBook(unsettled=set(range(1, count + 1))), set(range(1, count + 1))
    finishing = order[: count - unhandled]
    for done, tag in enumerate(finishing, start=1):
        book.handled.add(tag)
        if done in take_after or done == len(finishing):
            handled = set(book.handled)
            settled = _apply(unacked, *book.take())
            assert settled == handled
            unacked -= settled
    assert unacked == set(order[count - unhandled :])
    assert book.unsettled == unacked and not book.handled
