//! Per-stream flow control and body transfer.
//!
//! Each stream starts with [`INITIAL_WINDOW`] bytes of credit in each
//! direction. A sender takes credit before queueing `Data` and waits, on its
//! own task, when there is none; a receiver hands credit back with `Window`
//! frames as its consumer drains (once half a window has been consumed, to
//! keep control frames few). A slow reader therefore holds back its own
//! stream only, and each stream buffers at most one window at the receiver.
//!
//! A window smaller than what the path holds (its bandwidth times its
//! round trip) is what limits a fast transfer, so a receiver widens the
//! window of a reader that drains half of it within two round trips of its
//! connection ([`PathState`], measured by pings), and narrows it again for
//! a reader slower than that (the policy is in `flow::window`). The widening
//! of a connection and of a process draws on budgets ([`WindowBudget`]), so
//! readers that drain fast and then all stall cannot make a receiver hold
//! more than those on top of their initial windows.

mod body;
mod credit;
mod in_flight;
mod opening;
mod path;
mod pump;
mod window;

pub use body::{BodyError, BodyEvent, CancelOnDrop, RecvBody};
pub use credit::{Activity, RecvCredit, SendCredit, StreamClosed};
pub use in_flight::{InFlight, InFlightSlot};
pub use opening::{OpeningAllowance, OpeningCredit, Overdrawn};
pub use path::{PathState, CONNECTION_WINDOW_BUDGET};
pub use pump::{pump_body, PumpError, MIN_PIECE};
pub use window::{
    OpenedWindow, WindowBudget, WindowMemory, GROW_WITHIN, MAX_WINDOW, SHORT_MAX_WINDOW,
    SHRINK_AFTER, WIDE_WINDOW_BUDGET,
};

#[cfg(test)]
mod tests {
    use std::sync::{atomic::Ordering, Arc};

    use bytes::Bytes;
    use futures_util::StreamExt;

    use super::*;
    use crate::outbox::Outgoing;
    use crate::{
        outbox::Outbox,
        protocol::{ResetCode, INITIAL_WINDOW, MAX_DATA_PAYLOAD},
        Frame,
    };
    use futures_util::stream;
    use std::convert::Infallible;

    #[tokio::test]
    async fn pump_splits_and_waits_for_credit() {
        let (outbox, mut rx) = Outbox::new();
        let credit = SendCredit::new();
        let big = Bytes::from(vec![7u8; INITIAL_WINDOW as usize + 100]);
        let body = stream::iter(vec![Ok::<_, Infallible>(big)]);
        let pump = tokio::spawn({
            let credit = credit.clone();
            let outbox = outbox.clone();
            async move { pump_body(1, body, &credit, &outbox).await.map_err(|_| ()) }
        });
        let mut got = 0usize;
        while got < INITIAL_WINDOW as usize {
            match rx.recv().await.unwrap().decode().unwrap() {
                Frame::Data { data, .. } => {
                    assert!(data.len() <= MAX_DATA_PAYLOAD);
                    got += data.len();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, INITIAL_WINDOW as usize);
        // No credit left: the pump must be waiting, not sending.
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_none());
        credit.grant(1000);
        match rx.recv().await.unwrap().decode().unwrap() {
            Frame::Data { data, .. } => assert_eq!(data.len(), 100),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            rx.recv().await.unwrap().decode().unwrap(),
            Frame::End { stream: 1 }
        );
        assert_eq!(pump.await.unwrap(), Ok(INITIAL_WINDOW as u64 + 100));
    }

    #[tokio::test]
    async fn ready_small_chunks_share_a_frame() {
        let (outbox, mut rx) = Outbox::new();
        let credit = SendCredit::new();
        let chunks: Vec<Result<Bytes, Infallible>> =
            (0..100u8).map(|i| Ok(Bytes::from(vec![i; 1000]))).collect();
        let sent = pump_body(5, stream::iter(chunks), &credit, &outbox)
            .await
            .map_err(|_| ())
            .unwrap();
        assert_eq!(sent, 100_000);
        let mut frames = Vec::new();
        while let Some(b) = rx.try_recv() {
            frames.push(b.decode().unwrap());
        }
        // 100 kB in 1 kB chunks: two frames (64 KiB + the rest) and End.
        assert_eq!(
            frames.len(),
            3,
            "{:?}",
            frames.iter().map(|f| f.stream()).collect::<Vec<_>>()
        );
        let mut all = Vec::new();
        for f in &frames[..2] {
            match f {
                Frame::Data { data, .. } => all.extend_from_slice(data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(frames[2], Frame::End { stream: 5 });
        let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; 1000]).collect();
        assert_eq!(all, expected);
        // Unused credit was handed back: all but what was sent is available.
        assert_eq!(
            credit.acquire(usize::MAX).await,
            Ok(INITIAL_WINDOW as usize - 100_000)
        );
    }

    #[tokio::test]
    async fn large_chunks_are_queued_without_a_copy() {
        let (outbox, mut rx) = Outbox::new();
        let credit = SendCredit::new();
        let big = Bytes::from(vec![3u8; MAX_DATA_PAYLOAD + 20_000]);
        let body = stream::iter(vec![Ok::<_, Infallible>(big.clone())]);
        let sent = pump_body(9, body, &credit, &outbox)
            .await
            .map_err(|_| ())
            .unwrap();
        assert_eq!(sent, big.len() as u64);
        // Two entries pointing into the source's own buffer, then End.
        for (len, offset) in [(MAX_DATA_PAYLOAD, 0), (20_000, MAX_DATA_PAYLOAD)] {
            match rx.try_recv() {
                Some(Outgoing::Data { stream, pieces }) => {
                    assert_eq!((stream, pieces.len(), pieces[0].len()), (9, 1, len));
                    assert_eq!(pieces[0].as_ptr(), big[offset..].as_ptr(), "copied");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            rx.try_recv().unwrap().decode().unwrap(),
            Frame::End { stream: 9 }
        );

        // Socket-sized chunks ready together: one frame of those very chunks.
        let chunks: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 8192])).collect();
        let body = stream::iter(chunks.clone().into_iter().map(Ok::<_, Infallible>));
        pump_body(11, body, &credit, &outbox)
            .await
            .map_err(|_| ())
            .unwrap();
        match rx.try_recv() {
            Some(Outgoing::Data { stream: 11, pieces }) => {
                let same = pieces
                    .iter()
                    .zip(&chunks)
                    .all(|(p, c)| p.as_ptr() == c.as_ptr());
                assert!(pieces.len() == 8 && same, "copied or regrouped");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn closing_credit_stops_a_waiting_pump() {
        let (outbox, _rx) = Outbox::new();
        let credit = SendCredit::new();
        let body = stream::iter(vec![Ok::<_, Infallible>(Bytes::from(vec![
            0u8;
            INITIAL_WINDOW
                as usize
                * 2
        ]))]);
        let pump = tokio::spawn({
            let credit = credit.clone();
            async move {
                matches!(
                    pump_body(1, body, &credit, &outbox).await,
                    Err(PumpError::StreamClosed)
                )
            }
        });
        tokio::task::yield_now().await;
        credit.close();
        assert!(pump.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn recv_body_grants_credit_and_reports_end() {
        let (outbox, mut out_rx) = Outbox::new();
        let (tx, rx) = crate::queue::queue();
        let credit = RecvCredit::new();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cancelled.clone();
        let mut body = RecvBody::new(
            3,
            rx,
            outbox,
            credit.clone(),
            CancelOnDrop::new(move || flag.store(true, Ordering::SeqCst)),
        );
        // Half a window, read slowly: credit for exactly that comes back.
        let half = INITIAL_WINDOW as usize / 2;
        assert!(credit.take(half));
        tx.send(BodyEvent::Data(Bytes::from(vec![1u8; half - 1])))
            .unwrap();
        tx.send(BodyEvent::Data(Bytes::from(vec![1u8; 1]))).unwrap();
        tx.send(BodyEvent::End).unwrap();
        assert_eq!(body.next().await.unwrap().unwrap().len(), half - 1);
        tokio::time::advance(GROW_WITHIN).await;
        assert_eq!(body.next().await.unwrap().unwrap().len(), 1);
        assert_eq!(
            out_rx.try_recv().unwrap().decode().unwrap(),
            Frame::Window {
                stream: 3,
                increment: INITIAL_WINDOW / 2
            }
        );
        assert!(body.next().await.is_none());
        drop(body);
        assert!(
            !cancelled.load(Ordering::SeqCst),
            "completed body must not cancel"
        );
        // The credit given back lets the peer send a full window again.
        assert!(credit.take(INITIAL_WINDOW as usize));
        assert!(!credit.take(1));
    }

    /// A stream's receiving end, fed by a peer that stays within its credit.
    struct Fed {
        credit: Arc<RecvCredit>,
        tx: crate::queue::Sender<BodyEvent>,
        body: RecvBody,
        out_rx: crate::outbox::Pending,
    }

    impl Fed {
        fn new(budget: &'static WindowBudget) -> Fed {
            let (outbox, out_rx) = Outbox::new();
            let (tx, rx) = crate::queue::queue();
            let credit = RecvCredit::new();
            let body = RecvBody::new(3, rx, outbox, credit.clone(), CancelOnDrop::none())
                .with_budget(budget);
            Fed {
                credit,
                tx,
                body,
                out_rx,
            }
        }

        /// Sends `n` bytes at once and reads them: the credit granted back.
        async fn grant_after(&mut self, n: usize) -> u32 {
            assert!(self.credit.take(n), "the peer stays within its credit");
            self.tx
                .send(BodyEvent::Data(Bytes::from(vec![0u8; n])))
                .unwrap();
            assert_eq!(self.body.next().await.unwrap().unwrap().len(), n);
            match self.out_rx.try_recv().unwrap().decode().unwrap() {
                Frame::Window { increment, .. } => increment,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_reader_gets_a_wider_window_up_to_the_limit() {
        static BUDGET: WindowBudget = WindowBudget::new(64 << 20);
        let mut fed = Fed::new(&BUDGET);
        let mut window = INITIAL_WINDOW;
        let mut grants = Vec::new();
        for _ in 0..6 {
            // Half the current window, read at once.
            grants.push(fed.grant_after(window as usize / 2).await);
            window = (window * 2).min(SHORT_MAX_WINDOW);
        }
        // Doubling: each grant returns what was read plus the widening.
        let k = 1024;
        assert_eq!(
            grants,
            [768 * k, 1536 * k, 3072 * k, 2048 * k, 2048 * k, 2048 * k]
        );
        // The peer may now have a whole SHORT_MAX_WINDOW outstanding, and no
        // more: with no round trip measured, the short path's limit.
        assert!(fed.credit.take(SHORT_MAX_WINDOW as usize));
        assert!(!fed.credit.take(1));
        // The widening came from the budget, and goes back with the body.
        assert_eq!(
            BUDGET.left(),
            (64 << 20) - u64::from(SHORT_MAX_WINDOW - INITIAL_WINDOW)
        );
        drop(fed);
        assert_eq!(BUDGET.left(), 64 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn widening_stops_when_the_budget_is_spent() {
        // Room for 512 KiB + 1 MiB of widening: the window reaches 2 MiB.
        static BUDGET: WindowBudget = WindowBudget::new(1536 << 10);
        let mut fed = Fed::new(&BUDGET);
        let mut grants = Vec::new();
        for half in [256 << 10, 512 << 10, 1 << 20, 1 << 20] {
            grants.push(fed.grant_after(half).await);
        }
        let k = 1024;
        assert_eq!(grants, [768 * k, 1536 * k, 1024 * k, 1024 * k]);
        assert_eq!(BUDGET.left(), 0);
        drop(fed);
        assert_eq!(BUDGET.left(), 1536 << 10);
    }

    #[tokio::test]
    async fn dropping_an_unfinished_body_cancels() {
        let (outbox, _out_rx) = Outbox::new();
        let (tx, rx) = crate::queue::queue();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cancelled.clone();
        let body = RecvBody::new(
            1,
            rx,
            outbox,
            RecvCredit::new(),
            CancelOnDrop::new(move || flag.store(true, Ordering::SeqCst)),
        );
        tx.send(BodyEvent::Data(Bytes::from_static(b"x"))).unwrap();
        drop(body);
        assert!(cancelled.load(Ordering::SeqCst));
    }

    #[test]
    fn activity_measures_idle_time() {
        let a = Activity::new();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(a.idle_for() >= std::time::Duration::from_millis(30));
        a.touch();
        assert!(a.idle_for() < std::time::Duration::from_millis(30));
    }

    #[tokio::test]
    async fn reset_and_closed_tunnel_are_errors() {
        let (outbox, _out_rx) = Outbox::new();
        let (tx, rx) = crate::queue::queue();
        let mut body = RecvBody::new(
            1,
            rx,
            outbox.clone(),
            RecvCredit::new(),
            CancelOnDrop::none(),
        );
        tx.send(BodyEvent::Reset(ResetCode::LocalError, "boom".into()))
            .unwrap();
        let err = body.next().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "local service error: boom");
        let (tx, rx) = crate::queue::queue::<BodyEvent>();
        let mut body = RecvBody::new(2, rx, outbox, RecvCredit::new(), CancelOnDrop::none());
        drop(tx);
        assert_eq!(body.next().await.unwrap(), Err(BodyError::TunnelClosed));
    }
}
