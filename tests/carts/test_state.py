"""Property tests of the pure cart rules: order, repetition and splitting never matter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from cartnudge.carts.state import CartState, fold, give_up, join, new_state
from cartnudge.db.models import CartStatus
from cartnudge.events import CartEvent, EventKind, Item, KeyKind, OrderInfo

BASE = datetime(2026, 5, 1, tzinfo=UTC)
KEYS = ((KeyKind.STOREFRONT_CART, "c1"),)


@st.composite
def events(draw: st.DrawFn) -> CartEvent:
    kind = draw(st.sampled_from(list(EventKind)))
    at = BASE + timedelta(seconds=draw(st.integers(0, 86_400 * 3)))
    has_items = draw(st.booleans())
    items = (
        tuple(
            Item(
                title=draw(st.sampled_from(["mug", "tea", "pot"])), quantity=q, unit_price_minor=500
            )
            for q in draw(st.lists(st.integers(1, 3), max_size=3))
        )
        if has_items
        else None
    )
    order = None
    if kind is EventKind.ORDER_PLACED:
        order = OrderInfo(external_id=draw(st.sampled_from(["o1", "o2"])), placed_at=at)
    return CartEvent(
        source=draw(st.sampled_from(["storefront", "shopify"])),
        external_id=draw(st.text("abcdef0123", min_size=1, max_size=6)),
        topic=kind.value,
        kind=kind,
        occurred_at=at,
        keys=KEYS,
        items=items,
        currency="EUR" if has_items else None,
        total_minor=sum(i.quantity * 500 for i in items) if items is not None else None,
        email=draw(st.sampled_from([None, "a@example.com", "b@example.com"])),
        first_name=draw(st.sampled_from([None, "Ana", "Bo"])),
        accepts_marketing=draw(st.sampled_from([None, True, False])),
        consent_source="test",
        order=order,
    )


def histories(min_size: int = 1) -> st.SearchStrategy[list[CartEvent]]:
    """Distinct events of one cart: a (source, id) pair names one event, as the inbox
    guarantees (the same delivery twice is the same event)."""
    return st.lists(
        events(), min_size=min_size, max_size=8, unique_by=lambda e: (e.source, e.external_id)
    )


def fold_all(sequence: list[CartEvent]) -> CartState:
    first, *rest = sequence
    return reduce(fold, rest, new_state(first))


@settings(max_examples=300)
@given(histories(), st.randoms(use_true_random=False))
def test_any_order_and_any_repetition_give_the_same_state(
    sequence: list[CartEvent], rnd: object
) -> None:
    shuffled = sequence * 2
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold_all(shuffled) == fold_all(sequence)


@settings(max_examples=200)
@given(histories(min_size=2), st.integers(1, 7))
def test_joining_two_halves_equals_folding_the_whole(sequence: list[CartEvent], cut: int) -> None:
    cut = min(cut, len(sequence) - 1)
    left, right = sequence[:cut], sequence[cut:]
    assert join(fold_all(left), fold_all(right)) == fold_all(sequence)
    assert join(fold_all(right), fold_all(left)) == fold_all(sequence)


@given(histories())
def test_a_purchase_is_terminal(sequence: list[CartEvent]) -> None:
    state = fold_all(sequence)
    purchases = [e for e in sequence if e.is_purchase]
    assert (state.status is CartStatus.BOUGHT) == bool(purchases)
    if purchases:
        assert state.bought_at == min(
            e.order.placed_at if e.order else e.occurred_at for e in purchases
        )


@given(histories())
def test_the_newest_event_that_speaks_for_a_field_wins(sequence: list[CartEvent]) -> None:
    state = fold_all(sequence)
    speakers = [e for e in sequence if e.email is not None]
    if speakers:
        assert state.email == max(speakers, key=lambda e: e.version).email
    else:
        assert state.email is None
    assert state.last_activity_at == max(e.occurred_at for e in sequence)
    assert state.first_activity_at == min(e.occurred_at for e in sequence)


# -- the waiter's give-ups, among the events ------------------------------------------------
@dataclass(frozen=True, slots=True)
class GiveUp:
    at: datetime
    reason: str


Step = CartEvent | GiveUp

give_ups = st.builds(
    GiveUp,
    at=st.integers(0, 86_400 * 3).map(lambda s: BASE + timedelta(seconds=s)),
    reason=st.sampled_from(["no purchase after 2 reminder(s)", "no address to remind"]),
)


def apply(state: CartState, step: Step) -> CartState:
    if isinstance(step, GiveUp):
        return give_up(state, at=step.at, reason=step.reason)
    return fold(state, step)


def run_all(steps: list[Step]) -> CartState:
    """From the first event (a cart exists once an event names it), in the given order."""
    first = next(s for s in steps if isinstance(s, CartEvent))
    return reduce(apply, steps, new_state(first))


@settings(max_examples=300)
@given(histories(), st.lists(give_ups, max_size=3), st.randoms(use_true_random=False))
def test_give_ups_and_events_in_any_order_give_the_same_state(
    sequence: list[CartEvent], stops: list[GiveUp], rnd: object
) -> None:
    steps: list[Step] = [*sequence, *stops]
    shuffled = steps * 2
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert run_all(shuffled) == run_all(steps)


@settings(max_examples=200)
@given(histories(min_size=2), st.lists(give_ups, max_size=3), st.integers(1, 7), st.integers(0, 3))
def test_joining_two_halves_with_give_ups_equals_the_whole(
    sequence: list[CartEvent], stops: list[GiveUp], cut: int, stop_cut: int
) -> None:
    cut = min(cut, len(sequence) - 1)
    left: list[Step] = [*sequence[:cut], *stops[:stop_cut]]
    right: list[Step] = [*sequence[cut:], *stops[stop_cut:]]
    whole = run_all([*sequence, *stops])
    assert join(run_all(left), run_all(right)) == whole
    assert join(run_all(right), run_all(left)) == whole


@given(histories(), st.lists(give_ups, max_size=3))
def test_a_cart_is_expired_exactly_while_no_activity_is_after_the_latest_give_up(
    sequence: list[CartEvent], stops: list[GiveUp]
) -> None:
    state = run_all([*sequence, *stops])
    closing = [e for e in sequence if e.is_purchase or e.kind is EventKind.CART_DELETED]
    latest = max((s.at for s in stops), default=None)
    last_activity = max(e.shopper_acted_at for e in sequence)
    if closing:
        assert state.status not in (CartStatus.OPEN, CartStatus.EXPIRED)
    elif latest is not None and last_activity <= latest:
        assert state.status is CartStatus.EXPIRED
        assert state.status_reason == min(s.reason for s in stops if s.at == latest)
    else:
        assert (state.status, state.status_reason) == (CartStatus.OPEN, None)
    assert state.given_up_at == latest
