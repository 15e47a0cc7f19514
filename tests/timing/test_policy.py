"""The waiter's move, over random carts, rules, histories and clocks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cartnudge.db.models import CartStatus
from cartnudge.timing.policy import CartClock, GiveUp, Leave, Remind, Wait, decide, next_due
from cartnudge.timing.rules import MAX_STEPS, Rules, Tier

T0 = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
waits = st.integers(min_value=60, max_value=30 * 86400).map(lambda s: timedelta(seconds=s))


@st.composite
def rules(draw: st.DrawFn) -> Rules:
    steps = draw(st.integers(min_value=1, max_value=MAX_STEPS))
    starts = sorted(draw(st.sets(st.integers(min_value=1, max_value=1000), max_size=3)))
    tiers = [
        Tier.model_validate(
            {
                "name": f"t{i}",
                "from": start,
                "waits": draw(st.lists(waits, min_size=steps, max_size=MAX_STEPS)),
            }
        )
        for i, start in enumerate([0, *starts])
    ]
    return Rules(
        tiers=tuple(tiers),
        steps=steps,
        give_up_after=draw(waits),
        minimum_cart_value=Decimal(draw(st.integers(min_value=0, max_value=50))),
    )


instants = st.integers(min_value=0, max_value=60 * 86400).map(lambda s: T0 + timedelta(seconds=s))


@st.composite
def carts(draw: st.DrawFn) -> CartClock:
    last_activity = draw(instants)
    sent = draw(st.integers(min_value=0, max_value=MAX_STEPS + 1))
    last_reminder = draw(st.none() | instants) if sent else None
    return CartClock(
        status=draw(st.sampled_from(list(CartStatus))),
        last_activity_at=last_activity,
        total_minor=draw(st.none() | st.integers(min_value=0, max_value=10**7)),
        currency=draw(st.sampled_from(["EUR", "JPY", "KWD", "USD"])),
        reminders_sent=sent,
        last_reminder_at=last_reminder,
        reachable=draw(st.booleans()),
    )


@given(carts(), rules(), instants)
def test_the_move_is_a_function_of_its_inputs(cart: CartClock, r: Rules, now: datetime) -> None:
    assert decide(cart, r, now) == decide(cart, r, now)


@given(carts(), rules(), instants)
def test_only_open_carts_are_ever_reminded(cart: CartClock, r: Rules, now: datetime) -> None:
    move = decide(cart, r, now)

    if cart.status is not CartStatus.OPEN:
        assert isinstance(move, Leave)
    if isinstance(move, Remind):
        assert cart.status is CartStatus.OPEN


@given(carts(), rules(), instants)
def test_a_cart_without_an_address_is_never_reminded(
    cart: CartClock, r: Rules, now: datetime
) -> None:
    assert not isinstance(decide(replace(cart, reachable=False), r, now), Remind)


def test_a_cart_without_an_address_is_closed_when_it_would_have_been_given_up() -> None:
    r = Rules(tiers=(Tier.model_validate({"name": "all", "from": 0, "waits": ["1h", "1d"]}),))
    anonymous = CartClock(CartStatus.OPEN, T0, 1000, "EUR", 0, None, reachable=False)
    # 1 h + 1 d of waits, then the rules' 2 d: as late as a cart whose steps all went out.
    closing = T0 + timedelta(hours=1, days=3)

    assert decide(anonymous, r, T0 + timedelta(hours=1)) == Wait(closing)
    assert decide(anonymous, r, closing) == GiveUp("no address to remind")
    # Given an address, the same cart's first reminder is due after the first wait.
    assert decide(replace(anonymous, reachable=True), r, T0 + timedelta(hours=1)) == Remind(1)


@given(carts(), rules(), instants)
def test_a_reminder_is_due_and_within_the_cap(cart: CartClock, r: Rules, now: datetime) -> None:
    move = decide(cart, r, now)

    if isinstance(move, Remind):
        assert 1 <= move.step <= r.steps <= MAX_STEPS
        assert move.step == cart.reminders_sent + 1
        assert now >= next_due(cart, r)
    if isinstance(move, Wait):
        assert move.until > now


@settings(max_examples=300)
@given(
    rules(),
    st.integers(min_value=0, max_value=10**6),
    st.lists(
        st.tuples(st.sampled_from(["activity", "bought", "tick"]), st.integers(1, 5 * 86400)),
        max_size=30,
    ),
)
def test_a_carts_whole_life_never_exceeds_the_cap_nor_reminds_after_purchase(
    r: Rules, total: int, history: list[tuple[str, int]]
) -> None:
    cart = CartClock(CartStatus.OPEN, T0, total, "EUR", 0, None)
    now, reminders, bought = T0, 0, False
    for what, seconds in history:
        now += timedelta(seconds=seconds)
        if what == "activity" and not bought:
            cart = replace(cart, last_activity_at=now)
        elif what == "bought":
            cart, bought = replace(cart, status=CartStatus.BOUGHT), True
        # The waiter runs whenever a timer is due (here: at every history step).
        move = decide(cart, r, now)
        while isinstance(move, Remind):
            assert not bought
            reminders += 1
            cart = replace(cart, reminders_sent=move.step, last_reminder_at=now)
            move = decide(cart, r, now)
        if isinstance(move, GiveUp | Leave):
            if isinstance(move, GiveUp):
                cart = replace(cart, status=CartStatus.CLOSED)
            continue
    assert reminders <= r.steps


def test_activity_after_a_reminder_restarts_the_wait() -> None:
    r = Rules(tiers=(Tier.model_validate({"name": "all", "from": 0, "waits": ["1h", "1d"]}),))
    reminded = CartClock(CartStatus.OPEN, T0, 1000, "EUR", 1, T0 + timedelta(hours=1))

    assert decide(reminded, r, T0 + timedelta(hours=2)) == Wait(T0 + timedelta(hours=25))
    came_back = replace(reminded, last_activity_at=T0 + timedelta(hours=5))
    assert decide(came_back, r, T0 + timedelta(hours=25)) == Wait(T0 + timedelta(hours=29))
    assert decide(came_back, r, T0 + timedelta(hours=29)) == Remind(2)


def test_after_the_last_step_the_cart_is_given_up_later() -> None:
    r = Rules(tiers=(Tier.model_validate({"name": "all", "from": 0, "waits": ["1h", "1d"]}),))
    done = CartClock(CartStatus.OPEN, T0, 1000, "EUR", 2, T0 + timedelta(days=1))

    assert decide(done, r, T0 + timedelta(days=2)) == Wait(T0 + timedelta(days=3))
    assert isinstance(decide(done, r, T0 + timedelta(days=3)), GiveUp)


def test_carts_below_the_minimum_are_given_up_at_once() -> None:
    r = Rules(
        tiers=(Tier.model_validate({"name": "all", "from": 0, "waits": ["1h", "1d"]}),),
        minimum_cart_value=Decimal(20),
    )
    small = CartClock(CartStatus.OPEN, T0, 1999, "EUR", 0, None)

    assert isinstance(decide(small, r, T0), GiveUp)
    assert decide(replace(small, total_minor=2000), r, T0) == Wait(T0 + timedelta(hours=1))
