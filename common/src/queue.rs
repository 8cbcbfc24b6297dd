//! A small unbounded queue: many senders, one receiver, usable across
//! threads.
//!
//! Every forwarded request makes one of these (the events of its stream) and
//! every tunnel connection keeps one (its outbox), so it is built to be cheap
//! to create and to keep idle: one small allocation, no storage until the
//! first item, and storage given back once a burst has drained. A send is a
//! short critical section and, only when the receiver is parked, one wake.
//!
//! It stays because it pays: with tokio's unbounded channel in its place,
//! both ends spent 0.6 to 1.1 µs more CPU per request in each of three
//! alternating rounds (docs/PERFORMANCE.md, review round). Its concurrency
//! is model-checked with loom:
//! `RUSTFLAGS="--cfg burrow_loom" cargo test -p burrow-common --lib --release queue::model`.

use std::{
    collections::VecDeque,
    fmt,
    future::poll_fn,
    task::{Context, Poll, Waker},
};

// Under the model checker, its own types, so that every interleaving of
// senders, the receiver and their wake-ups is tried (see `model` below).
#[cfg(burrow_loom)]
use loom::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};
#[cfg(not(burrow_loom))]
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

/// Storage kept by an emptied queue after a burst.
const KEEP_CAPACITY: usize = 16;
/// An emptied queue holding more than this gives the rest back.
const SHRINK_ABOVE: usize = 64;

/// A new queue: its sending half (clone it for more senders) and its
/// receiver.
pub fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            waker: None,
            receiver_alive: true,
        }),
        senders: AtomicUsize::new(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    senders: AtomicUsize,
}

struct State<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves the queue itself consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The receiver is gone; the item comes back.
#[derive(PartialEq, Eq)]
pub struct Closed<T>(pub T);

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

/// Sending half of a [`queue`].
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Appends `item`, waking the receiver if it waits. Fails only once the
    /// receiver has been dropped.
    pub fn send(&self, item: T) -> Result<(), Closed<T>> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return Err(Closed(item));
            }
            state.items.push_back(item);
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// `true` once the receiver has been dropped.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().receiver_alive
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.shared.lock().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// Receiving half of a [`queue`]. Items come out in the order they were
/// sent; `None` once every sender is gone and the queue is empty.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, waiting for one if needed.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(item) = Self::pop(&mut state) {
            return Poll::Ready(Some(item));
        }
        // Checked under the lock: the last sender's drop takes the lock
        // after its count reaches zero, so it sees the waker stored here.
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        Self::pop(&mut self.shared.lock())
    }

    /// Takes every queued item at once (one lock for the whole batch). The
    /// queue's storage goes with them, so an idle queue holds none.
    pub fn take_all(&mut self) -> VecDeque<T> {
        std::mem::take(&mut self.shared.lock().items)
    }

    fn pop(state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front();
        if state.items.is_empty() && state.items.capacity() > SHRINK_ABOVE {
            state.items.shrink_to(KEEP_CAPACITY);
        }
        item
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            state.waker = None;
            std::mem::take(&mut state.items)
        };
        // Items are dropped outside the lock: they may own other queues.
        drop(items);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(all(test, burrow_loom))]
mod model {
    use super::*;
    use loom::{future::block_on, thread};

    /// Every interleaving up to `preemptions` forced switches (the rest of
    /// the space is too large to walk in a test's time).
    fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(preemptions);
        builder.check(f);
    }

    #[test]
    fn two_senders_on_two_threads_deliver_everything_in_order_then_end() {
        model(3, || {
            let (tx, mut rx) = queue();
            let tx2 = tx.clone();
            let a = thread::spawn(move || {
                tx.send(1).unwrap();
                tx.send(2).unwrap();
            });
            let b = thread::spawn(move || tx2.send(10).unwrap());
            let mut got = Vec::new();
            while let Some(item) = block_on(rx.recv()) {
                got.push(item);
            }
            a.join().unwrap();
            b.join().unwrap();
            let from_a: Vec<_> = got.iter().filter(|i| **i < 10).collect();
            assert_eq!(from_a, [&1, &2], "{got:?}");
            assert_eq!(got.len(), 3, "{got:?}");
        });
    }

    #[test]
    fn the_last_senders_drop_wakes_a_parked_receiver() {
        loom::model(|| {
            let (tx, mut rx) = queue::<u8>();
            let dropper = thread::spawn(move || drop(tx));
            assert_eq!(block_on(rx.recv()), None);
            dropper.join().unwrap();
        });
    }

    #[test]
    fn a_send_racing_the_receivers_drop_is_refused_or_dropped_never_kept() {
        loom::model(|| {
            let (tx, rx) = queue();
            let item = Arc::new(());
            let sent = item.clone();
            let sender = thread::spawn(move || tx.send(sent).map_err(|Closed(back)| back));
            drop(rx);
            let refused = sender.join().unwrap();
            drop(refused);
            // Sent and then dropped with the queue, or handed back and
            // dropped here: nobody holds it.
            assert_eq!(Arc::strong_count(&item), 1);
        });
    }
}

#[cfg(all(test, not(burrow_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_arrive_in_order_then_none_after_the_last_sender() {
        let (tx, mut rx) = queue();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        drop(tx);
        tx2.send(3).unwrap();
        drop(tx2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_parked_receiver_is_woken_from_another_thread() {
        let (tx, mut rx) = queue();
        let sender = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                tx.send(i).unwrap();
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let mut expect = 0;
        while let Some(i) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("receiver never woken")
        {
            assert_eq!(i, expect);
            expect += 1;
        }
        assert_eq!(expect, 10_000);
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn last_sender_dropped_wakes_a_parked_receiver() {
        let (tx, mut rx) = queue::<u8>();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("receiver never woken")
            .unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone_and_queued_items_are_dropped() {
        let (tx, rx) = queue();
        let item = Arc::new(());
        tx.send(item.clone()).unwrap();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(Arc::strong_count(&item), 1, "queued item not dropped");
        assert_eq!(tx.send(item).unwrap_err().0, Arc::new(()));
    }

    #[test]
    fn take_all_takes_everything_and_storage_shrinks_after_a_burst() {
        let (tx, mut rx) = queue();
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        let out: Vec<_> = rx.take_all().into_iter().collect();
        assert_eq!(out, (0..1000).collect::<Vec<_>>());
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(rx.shared.lock().items.capacity() <= KEEP_CAPACITY);
    }
}
