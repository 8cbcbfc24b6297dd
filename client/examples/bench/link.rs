//! A long link in user space, for machines without netem: a TCP relay that
//! holds every byte for half the round trip in each direction and keeps at
//! most a window of bytes in flight each way, shared by all its
//! connections, as a path with that delay and a bottleneck that holds
//! that much would.

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use crate::Res;

/// What the link is like.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// The round trip it adds.
    pub rtt: Duration,
    /// Most bytes in flight each way.
    pub window: usize,
}

/// A running link: connections to `addr` reach the target through it.
pub struct Link {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// A link listening on `listen` (port 0 for any) to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr, shape: Shape) -> Res<Link> {
        let listener = TcpListener::bind(listen).map_err(|e| format!("link on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let (up, down) = (Budget::new(shape.window), Budget::new(shape.window));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(near) = conn else { continue };
                let Ok(far) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = (near.set_nodelay(true), far.set_nodelay(true));
                if let (Ok(n2), Ok(f2)) = (near.try_clone(), far.try_clone()) {
                    pipe(near, f2, shape, Arc::clone(&up));
                    pipe(far, n2, shape, Arc::clone(&down));
                }
            }
        });
        Ok(Link { addr, stop })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The bytes in flight one way, over all the link's connections.
struct Budget {
    held: Mutex<usize>,
    freed: Condvar,
    window: usize,
}

impl Budget {
    fn new(window: usize) -> Arc<Budget> {
        Arc::new(Budget {
            held: Mutex::new(0),
            freed: Condvar::new(),
            window,
        })
    }

    /// Waits until `n` more bytes fit, and takes them.
    fn take(&self, n: usize) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held > 0 && *held + n > self.window {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        *held += n;
    }

    fn give(&self, n: usize) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        *held -= n;
        self.freed.notify_all();
    }
}

/// Bytes on their way in one direction of one connection: each chunk with
/// when it arrives.
struct Flight {
    chunks: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    changed: Condvar,
}

/// Relays `from` to `to` through the delay: one thread reads, one writes.
fn pipe(mut from: TcpStream, mut to: TcpStream, shape: Shape, budget: Arc<Budget>) {
    let flight = Arc::new(Flight {
        chunks: Mutex::new(VecDeque::new()),
        changed: Condvar::new(),
    });
    let delay = shape.rtt / 2;
    let chunk = (shape.window / 4).clamp(1 << 10, 64 << 10);
    let reader = Arc::clone(&flight);
    let writer_budget = Arc::clone(&budget);
    thread::spawn(move || {
        let mut buf = vec![0u8; chunk];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            budget.take(n);
            let mut held = reader.chunks.lock().unwrap_or_else(|e| e.into_inner());
            held.push_back((Instant::now() + delay, buf[..n].to_vec()));
            reader.changed.notify_all();
            if n == 0 {
                return;
            }
        }
    });
    let budget = writer_budget;
    // Once `to` fails, what arrives is dropped, its share of the budget
    // given back, until the reader's end.
    let mut broken = false;
    thread::spawn(move || loop {
        let mut held = flight.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let due = loop {
            match held.front() {
                None => held = flight.changed.wait(held).unwrap_or_else(|e| e.into_inner()),
                Some(&(due, _)) => break due,
            }
        };
        let now = Instant::now();
        if due > now {
            drop(flight.changed.wait_timeout(held, due - now));
            continue;
        }
        let Some((_, bytes)) = held.pop_front() else {
            continue;
        };
        drop(held);
        if !broken && !bytes.is_empty() && to.write_all(&bytes).is_err() {
            broken = true;
            let _ = to.shutdown(Shutdown::Both);
        }
        budget.give(bytes.len());
        if bytes.is_empty() {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
    });
}
