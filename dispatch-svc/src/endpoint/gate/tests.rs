use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::*;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// A queued job: its entry id `id-0`, its message length and its partition.
#[derive(Debug)]
struct Job {
    id: u64,
    len: usize,
    settled: Rc<Cell<bool>>,
}

impl Queued for Job {
    fn order(&self) -> (u64, u64) {
        (self.id, 0)
    }

    fn envelope_len(&self) -> usize {
        self.len
    }

    fn partition_settled(&self) -> bool {
        self.settled.get()
    }
}

fn job(id: u64) -> Job {
    Job { id, len: 10, settled: Rc::new(Cell::new(true)) }
}

/// The pause and breaker, writing down what they were asked.
#[derive(Default)]
struct Fake {
    paused_until: Option<Instant>,
    open_until: Option<Instant>,
    asked: RefCell<Vec<&'static str>>,
    admitted: Cell<usize>,
}

impl Outside for Fake {
    fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.asked.borrow_mut().push("pause");
        self.paused_until.filter(|until| now < *until)
    }

    fn admit(&self, now: Instant) -> Result<(), Instant> {
        self.asked.borrow_mut().push("breaker");
        match self.open_until {
            Some(until) if now < until => Err(until),
            _ => {
                self.admitted.set(self.admitted.get() + 1);
                Ok(())
            }
        }
    }
}

fn gate(fifo: bool, max_in_flight: usize, rate: Option<usize>, jobs: impl IntoIterator<Item = u64>) -> Gate<Job> {
    let mut gate = Gate::new(100, usize::MAX);
    gate.configure(fifo, max_in_flight, rate);
    for id in jobs {
        assert!(gate.enqueue(job(id), Instant::now()).is_ok());
    }
    gate
}

/// The entry ids of a started attempt, or what else was answered.
fn started(decision: Decision<Job>) -> Vec<u64> {
    match decision {
        Decision::Start(jobs) => jobs.iter().map(|j| j.id).collect(),
        other => panic!("expected a start, got {other:?}"),
    }
}

#[test]
fn at_most_max_in_flight_attempts_run() {
    let mut g = gate(false, 2, None, 1..=4);
    let (now, outside) = (Instant::now(), Fake::default());
    assert_eq!(started(g.next(now, &outside)), [1]);
    assert_eq!(started(g.next(now, &outside)), [2]);
    assert!(matches!(g.next(now, &outside), Decision::Idle));
    g.finished();
    assert_eq!(started(g.next(now, &outside)), [3]);
    assert_eq!(outside.admitted.get(), 3);
    assert_eq!(g.len(), 1);
}

#[test]
fn rate_window_starts_n_per_second_and_answers_the_next_allowed_instant() {
    let mut g = gate(false, 10, Some(2), 1..=5);
    let (t, outside) = (Instant::now(), Fake::default());
    assert_eq!(started(g.next(t, &outside)), [1]);
    assert_eq!(started(g.next(t + 300 * MS, &outside)), [2]);
    assert!(matches!(g.next(t + 500 * MS, &outside), Decision::AskAt(at) if at == t + SECOND));
    // The first start has left the window; the second has not.
    assert_eq!(started(g.next(t + SECOND, &outside)), [3]);
    assert!(matches!(g.next(t + SECOND, &outside), Decision::AskAt(at) if at == t + 1300 * MS));
    assert_eq!(outside.admitted.get(), 3, "a refusal of the window asks no breaker");
}

#[test]
fn zero_rate_is_unlimited() {
    let mut g = gate(false, 10, Some(0), 1..=5);
    let (t, outside) = (Instant::now(), Fake::default());
    for id in 1..=5 {
        assert_eq!(started(g.next(t, &outside)), [id]);
    }
}

#[test]
fn fifo_runs_one_at_a_time_in_entry_order() {
    let mut g = gate(true, 8, None, [3, 1, 2]);
    let (t, outside) = (Instant::now(), Fake::default());
    assert_eq!(started(g.next(t, &outside)), [1]);
    assert!(matches!(g.next(t, &outside), Decision::Idle), "fifo: one in flight");
    g.finished();
    assert_eq!(started(g.next(t, &outside)), [2]);
}

#[test]
fn fifo_head_is_held_until_its_retry_time() {
    let mut g = gate(true, 1, None, 1..=3);
    let (t, outside) = (Instant::now(), Fake::default());
    let first = match g.next(t, &outside) {
        Decision::Start(jobs) => jobs,
        other => panic!("expected a start, got {other:?}"),
    };
    g.finished();
    g.hold(first, Some(t + 5 * SECOND));
    assert!(matches!(g.next(t + SECOND, &outside), Decision::AskAt(at) if at == t + 5 * SECOND));
    assert_eq!(outside.admitted.get(), 1, "a held head asks no breaker");
    assert_eq!(started(g.next(t + 5 * SECOND, &outside)), [1]);
}

#[test]
fn fifo_waits_for_the_partition_to_settle() {
    let mut g = gate(true, 1, None, []);
    let settled = Rc::new(Cell::new(false));
    let (t, outside) = (Instant::now(), Fake::default());
    assert!(g.enqueue(Job { id: 1, len: 10, settled: settled.clone() }, t).is_ok());
    assert!(matches!(g.next(t, &outside), Decision::AskAt(at) if at == t + SETTLE_POLL));
    assert!(outside.asked.borrow().is_empty());
    settled.set(true);
    assert_eq!(started(g.next(t + SETTLE_POLL, &outside)), [1]);
}

#[test]
fn fifo_lets_the_newest_go_when_full_and_starts_nothing_newer_until_it_is_back() {
    let mut g = Gate::new(2, usize::MAX);
    g.configure(true, 1, None);
    g.set_max_batch(5);
    let (t, outside) = (Instant::now(), Fake::default());
    for id in [2, 4, 1] {
        assert!(g.enqueue(job(id), t).is_ok());
    }
    // 4 was let go for 1; 3 is newer than the queue and let go itself.
    assert!(g.enqueue(job(3), t).is_ok());
    assert_eq!(g.len(), 2);
    assert_eq!(started(g.next(t, &outside)), [1, 2]);
    g.finished();
    assert!(g.enqueue(job(5), t).is_ok());
    assert!(matches!(g.next(t, &outside), Decision::AskAt(at) if at == t + LET_GO_FORGET));
    assert!(g.enqueue(job(3), t).is_ok());
    assert_eq!(started(g.next(t, &outside)), [3], "4 is still out");
    g.finished();
    assert!(!g.is_idle());
    // Forgotten after a while, so the queue moves on.
    assert_eq!(started(g.next(t + LET_GO_FORGET, &outside)), [5]);
    g.finished();
    assert!(g.is_idle());
}

#[test]
fn a_full_queue_hands_other_jobs_back() {
    let mut g = Gate::new(1, usize::MAX);
    g.configure(false, 1, None);
    assert!(g.enqueue(job(1), Instant::now()).is_ok());
    assert!(matches!(g.enqueue(job(2), Instant::now()), Err(Job { id: 2, .. })));
}

#[test]
fn batches_are_as_large_as_the_batch_size_and_the_body_allow() {
    let (t, outside) = (Instant::now(), Fake::default());
    let mut g = gate(false, 10, None, 1..=5);
    g.set_max_batch(3);
    assert_eq!(started(g.next(t, &outside)), [1, 2, 3]);
    assert_eq!(started(g.next(t, &outside)), [4, 5]);

    // Room for two messages of 10 bytes and the comma between them.
    let mut g = Gate::new(100, envelope::FRAME + 10 + 1 + 10);
    g.configure(false, 10, None);
    g.set_max_batch(5);
    for id in 1..=5 {
        assert!(g.enqueue(job(id), t).is_ok());
    }
    assert_eq!(started(g.next(t, &outside)), [1, 2]);

    // Never fewer than one.
    let mut g = Gate::new(100, 0);
    g.configure(false, 10, None);
    g.set_max_batch(5);
    assert!(g.enqueue(job(1), t).is_ok());
    assert_eq!(started(g.next(t, &outside)), [1]);
}

#[test]
fn a_pause_answers_its_end_and_counts_no_attempt() {
    let mut g = gate(false, 1, Some(1), [1, 2]);
    let t = Instant::now();
    let paused = Fake { paused_until: Some(t + MS), ..Fake::default() };
    assert!(matches!(g.next(t, &paused), Decision::AskAt(at) if at == t + MS));
    assert_eq!(*paused.asked.borrow(), ["pause"], "the breaker is not asked");
    assert_eq!(g.len(), 2);
    // Neither the rate window nor the in-flight count took the refusal.
    assert_eq!(started(g.next(t + MS, &paused)), [1]);
}

#[test]
fn an_open_breaker_answers_when_to_retry_and_counts_no_attempt() {
    let mut g = gate(false, 1, Some(1), [1, 2]);
    let t = Instant::now();
    let open = Fake { open_until: Some(t + MS), ..Fake::default() };
    assert!(matches!(g.next(t, &open), Decision::AskAt(at) if at == t + MS));
    assert_eq!(open.admitted.get(), 0);
    assert_eq!(g.len(), 2);
    // Neither the rate window nor the in-flight count took the refusal.
    assert_eq!(started(g.next(t + MS, &open)), [1]);
    g.finished();
    // An admitted attempt is in the window.
    assert!(matches!(g.next(t + MS, &open), Decision::AskAt(at) if at == t + MS + SECOND));
}

#[test]
fn checks_are_asked_in_order_and_the_breaker_last() {
    let t = Instant::now();
    let closed = || Fake { paused_until: Some(t + SECOND), open_until: Some(t + SECOND), ..Fake::default() };

    // maxInFlight before anything else.
    let mut g = gate(false, 1, None, [1, 2]);
    assert_eq!(started(g.next(t, &Fake::default())), [1]);
    let outside = closed();
    assert!(matches!(g.next(t, &outside), Decision::Idle));
    assert!(outside.asked.borrow().is_empty());

    // The fifo hold before the rate window and what is outside.
    let mut g = gate(true, 1, Some(1), [1, 2]);
    g.hold(Vec::new(), Some(t + 7 * SECOND));
    let outside = closed();
    assert!(matches!(g.next(t, &outside), Decision::AskAt(at) if at == t + 7 * SECOND));
    assert!(outside.asked.borrow().is_empty());

    // The rate window before the pause.
    let mut g = gate(false, 5, Some(1), [1, 2]);
    assert_eq!(started(g.next(t, &Fake::default())), [1]);
    let outside = closed();
    assert!(matches!(g.next(t + 100 * MS, &outside), Decision::AskAt(at) if at == t + SECOND));
    assert!(outside.asked.borrow().is_empty());

    // The pause before the breaker, and the breaker last.
    let mut g = gate(false, 5, None, [1]);
    let outside = closed();
    assert!(matches!(g.next(t, &outside), Decision::AskAt(_)));
    assert_eq!(*outside.asked.borrow(), ["pause"]);
    let outside = Fake::default();
    assert_eq!(started(g.next(t, &outside)), [1]);
    assert_eq!(*outside.asked.borrow(), ["pause", "breaker"]);
}

#[test]
fn leaving_fifo_drops_the_hold_and_taking_all_empties_the_queue() {
    let t = Instant::now();
    let mut g = gate(true, 4, None, [1, 2]);
    g.hold(Vec::new(), Some(t + SECOND));
    g.configure(false, 4, None);
    assert_eq!(started(g.next(t, &Fake::default())), [1]);

    let mut g = gate(true, 1, None, [1, 2, 3]);
    let refused = g.remove_where(|j| (j.id == 2).then_some("refused"));
    assert_eq!(refused.iter().map(|(r, j)| (*r, j.id)).collect::<Vec<_>>(), [("refused", 2)]);
    g.hold(Vec::new(), Some(t + SECOND));
    assert_eq!(g.take_all().iter().map(|j| j.id).collect::<Vec<_>>(), [1, 3]);
    assert!(g.is_empty());
    assert!(g.enqueue(job(4), t).is_ok());
    assert_eq!(started(g.next(t, &Fake::default())), [4], "the hold went with the queue");
}
