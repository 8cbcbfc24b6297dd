//! The live terminal screen, when standard output is a terminal: the
//! connection and its round trip, each tunnel's public URL, the counts and
//! latencies, the latest requests and log lines, drawn with ratatui from a
//! thread of its own. In raw mode Ctrl-C is a key, not a signal: the
//! screen asks the client to stop, as the signal would, and gives the
//! terminal back as it was.

mod draw;
pub mod state;

use std::{
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::Notify;

use state::Shared;

/// How often the screen is drawn when nothing else happens (times and
/// counts move).
const TICK: Duration = Duration::from_millis(250);

/// Whether to draw the screen: standard output is a terminal, and plain
/// log lines were not asked for.
pub fn wanted(log_lines: bool) -> bool {
    !log_lines && std::io::stdout().is_terminal()
}

/// The screen's thread, while it draws.
pub struct Screen {
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Screen {
    /// Takes the terminal over and draws `state` until [`Screen::close`];
    /// the first Ctrl-C (or `q`) wakes `stop`, a second one ends the
    /// process at once.
    pub fn start(state: Shared, stop: Arc<Notify>) -> std::io::Result<Screen> {
        let terminal = ratatui::try_init()?;
        let quit = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&quit);
        let thread = std::thread::Builder::new()
            .name("burrow-screen".into())
            .spawn(move || {
                let mut terminal = terminal;
                let result = run(&mut terminal, &state, &stop, &done);
                ratatui::restore();
                if let Err(e) = result {
                    log::warn!("the screen stopped: {e}");
                }
            })?;
        Ok(Screen {
            quit,
            thread: Some(thread),
        })
    }

    /// Stops drawing and gives the terminal back as it was.
    pub fn close(mut self) {
        self.quit.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Draws, and reads keys and resizes, until told to quit.
fn run(
    terminal: &mut ratatui::DefaultTerminal,
    state: &Shared,
    stop: &Notify,
    quit: &AtomicBool,
) -> std::io::Result<()> {
    let mut asked = false;
    while !quit.load(Ordering::Acquire) {
        terminal.draw(|f| draw::frame(f, &state.lock()))?;
        if !event::poll(TICK)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if !(ctrl_c || key.code == KeyCode::Char('q')) {
                    continue;
                }
                if asked {
                    ratatui::restore();
                    std::process::exit(130);
                }
                asked = true;
                log::info!(
                    "stopping: no new requests; finishing those in flight (up to {} s, Ctrl-C again to quit now)",
                    burrow_client::SHUTDOWN_GRACE.as_secs()
                );
                state.stopping();
                stop.notify_one();
            }
            // A resize is drawn at the top of the loop.
            _ => {}
        }
    }
    Ok(())
}
