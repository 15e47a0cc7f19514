"""kill -9 of worker processes in the middle of delivering: no reminder reaches a shopper
twice, and none is left in limbo.

Real ``cartnudge worker`` processes share one database (PostgreSQL: three workers, the
multi-worker deployment; SQLite: the one worker it allows) and deliver to a real SMTP
server that accepts one email at a time, a little slowly, so a batch stays in the lanes
for a while. Each cycle makes a few hundred carts due; once their reminders flow, at a
random moment, the worker that has just handed an email to the server is killed with
SIGKILL and another is started in its place. At the end, once the dead workers' leases
have run out and a living worker has settled what they left, every due reminder must be
``sent`` or ``ambiguous`` (never resent: plain SMTP has no idempotency), the server must
have received at most one email per (cart, step), and each ``sent`` reminder exactly one.

The sender's lease (60 s) and heartbeat (15 s) are module constants in
``cartnudge.delivery.sender``, not settings; the workers run with them shortened to
``LEASE_S`` and ``HEARTBEAT_S`` (the same 4:1 ratio) so a cycle does not wait a minute.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, and_, func, select

from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import reading
from tests.chaos.delivery_helpers import (
    Child,
    TimedSink,
    Workers,
    add_sending_shop,
    carts_t,
    child_env,
    insert_carts,
    send_id_counts,
    send_rows,
    sends_t,
    status_counts,
    troubles,
    utcnow,
    wait_until,
)
from tests.tally import record, scaled

LEASE_S = 5.0  # a killed worker's sends are settled this long after its last claim/renewal
HEARTBEAT_S = 1.25  # a living worker renews its lease this often (a quarter, as in production)
SINK_DELAY_S = 0.002  # the relay takes this long over each email, one at a time
KILL_JITTER_S = 0.01  # after the email that picks the victim: mid-DATA, composing, waiting
SETTLE_TIMEOUT_S = 180.0  # everything settled after the last kill, on a busy machine
STRANDED = "a worker stopped while handing it to"


@dataclass(frozen=True, slots=True)
class Case:
    workers: int
    cycles: int
    per_cycle: int  # carts made due at the start of each cycle


CASES = {
    # More than a batch (200) each cycle: on PostgreSQL the other workers deliver theirs.
    "postgresql": Case(workers=3, cycles=scaled(4, 30), per_cycle=scaled(220, 500)),
    "sqlite": Case(workers=1, cycles=scaled(2, 12), per_cycle=scaled(200, 400)),
}
CHECK = {"postgresql": "kill -9 workers", "sqlite": "kill -9 worker (SQLite)"}


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_kill_9_mid_batch_sends_each_reminder_at_most_once_and_strands_none(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    case = CASES[kind]
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    with ExitStack() as stack:
        if kind == "postgresql":
            server = request.getfixturevalue("postgres_server")
            url = stack.enter_context(server.database("chaos_kill"))
        else:
            url = f"sqlite:///{tmp_path / 'kill.db'}"
        engine = make_engine(url, pool_size=2)
        stack.callback(engine.dispose)
        upgrade(engine)
        sink = stack.enter_context(TimedSink(delay_s=SINK_DELAY_S))
        shop = add_sending_shop(engine, sink.port)
        env = child_env(url, tmp_path / "home")
        workers = stack.enter_context(
            Workers(env, tmp_path / "logs", lease_s=LEASE_S, heartbeat_s=HEARTBEAT_S)
        )
        for slot in range(case.workers):
            workers.start(slot)
        workers.wait_ready()

        due = 0
        frozen: list[set[int]] = []  # per kill: the sends `sending` just after it
        killed: list[Child] = []
        last_handed: list[int | None] = []  # per kill: the victim's email that chose it
        for cycle in range(case.cycles):
            insert_carts(engine, shop.id, case.per_cycle, tag=f"c{cycle}", due_at=utcnow())
            due += case.per_cycle
            # The random moment: after a random share of this cycle's reminders went out,
            # the worker that hands the next email to the server.
            sink.wait_count(sink.count() + rng.randint(1, case.per_cycle // 2), timeout_s=120)
            victim = None
            deadline = time.monotonic() + 60
            while victim is None:
                assert time.monotonic() < deadline, "no living worker is delivering"
                arrival = sink.wait_count(sink.count() + 1, timeout_s=60)
                if arrival.peer_port is not None:
                    victim = workers.owner_of(arrival.peer_port)
            time.sleep(rng.uniform(0, KILL_JITTER_S))
            slot, child = victim
            child.kill9()
            killed.append(child)
            last_handed.append(arrival.send_id)
            frozen.append(_sending(engine))
            workers.start(slot)

        def settled() -> bool:
            counts = status_counts(engine)
            return sum(counts.values()) == due and not counts["queued"] and not counts["sending"]

        with contextlib.suppress(TimeoutError):  # counted as stuck below, with what is stuck
            wait_until(settled, SETTLE_TIMEOUT_S, "every due reminder settled")
        workers.wait_ready()  # a worker still starting has no SIGTERM handler yet
        stopped = workers.stop_all()
        sends = send_rows(engine)
        counts = status_counts(engine)
        unreminded = _due_without_send(engine)
        arrivals = sink.arrivals

    per_send = send_id_counts(arrivals)
    per_cart_step = Counter({sends[s][:2]: n for s, n in per_send.items() if s in sends})
    per_address = Counter(a.rcpt for a in arrivals)
    duplicates = sum(n - 1 for n in per_send.values() if n > 1)
    stuck = counts["queued"] + counts["sending"] + unreminded
    stranded = {
        s for s, row in sends.items() if row[2] == "ambiguous" and STRANDED in (row[3] or "")
    }
    # A kill landed mid-batch when the email the victim had just handed over was never
    # recorded by it: a living worker settled it, as `ambiguous`, once the lease ran out.
    kills_mid_batch = sum(1 for s in last_handed if s in stranded)
    record(
        CHECK[kind],
        cycles=case.cycles,
        kills_mid_batch=kills_mid_batch,
        due=due,
        sent=counts["sent"],
        ambiguous=counts["ambiguous"],
        ambiguous_received=sum(1 for s in stranded if per_send[s]),
        duplicates=duplicates,
        stuck=stuck,
    )

    context = f"seed {seed}, logs in {tmp_path / 'logs'}"
    assert duplicates == 0, f"emails received more than once per send: {per_send.most_common(5)}"
    assert max(per_cart_step.values(), default=0) <= 1, per_cart_step.most_common(5)
    assert max(per_address.values(), default=0) <= 1, per_address.most_common(5)
    assert stuck == 0, f"stuck: {counts}, due carts without a send: {unreminded} ({context})"
    assert len(sends) == due, f"{len(sends)} sends for {due} due carts ({context})"
    assert set(counts) <= {"sent", "ambiguous"}, f"{counts} ({context})"
    # `sent` means the server said yes: exactly one email each. An email the server has
    # only belongs to a send that says it may have gone.
    wrong = [s for s, row in sends.items() if row[2] == "sent" and per_send[s] != 1]
    assert not wrong, f"sent but received {[per_send[s] for s in wrong[:5]]} times: {wrong[:5]}"
    unknown = [s for s in per_send if s not in sends or sends[s][2] not in ("sent", "ambiguous")]
    assert not unknown, f"emails for sends that are not sent or ambiguous: {unknown[:5]}"
    # Every ambiguous send was left by a killed worker (it was `sending` just after a kill),
    # not by a living worker that lost its lease or by the server.
    outside = [s for s in stranded if not any(s in ids for ids in frozen)]
    assert not outside and counts["ambiguous"] == len(stranded), f"{outside[:5]} {counts}"
    # The kills landed mid-batch (else the test would prove nothing).
    assert kills_mid_batch >= case.cycles * 3 // 4, f"{kills_mid_batch} of {case.cycles} kills"
    for child in stopped:
        assert child.process.returncode == 0, f"{child.name}: {child.output()[-2000:]}"
    for child in workers.stopped + killed:  # a pass that failed is logged as an error
        assert not troubles(child), f"{child.name}: {troubles(child)[:3]}"


def _sending(engine: Engine) -> set[int]:
    with reading(engine) as conn:
        return set(
            conn.execute(select(sends_t.c.id).where(sends_t.c.status == "sending")).scalars()
        )


def _due_without_send(engine: Engine) -> int:
    """Open carts whose timer has come and that have no reminder (the waiter never got
    to them)."""
    with reading(engine) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(carts_t.outerjoin(sends_t, sends_t.c.cart_id == carts_t.c.id))
                .where(
                    and_(
                        carts_t.c.status == "open",
                        carts_t.c.next_wake_at <= utcnow(),
                        sends_t.c.id.is_(None),
                    )
                )
            ).scalar_one()
        )
