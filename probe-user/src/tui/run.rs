//! The TUI's loop: keys in, records applied (within a time budget), frames
//! drawn; and the terminal guard that always restores the terminal (on
//! return, on panic, on SIGTERM/SIGINT/SIGHUP).

use std::{
    io::{self, Stdout},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

use super::{
    app::{Action, App, Key},
    render,
};

/// Where the records come from.
pub trait Feed {
    /// Applies what is due. `elapsed`: wall time since the last call;
    /// `budget`: how long it may take (keys wait meanwhile).
    fn pump(&mut self, app: &mut App, elapsed: Duration, budget: Duration) -> FeedState;
    /// A key's action that concerns the source (replay controls).
    fn act(&mut self, app: &mut App, action: Action);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedState {
    Running,
    /// The source is gone (the live session ended): the loop ends.
    Ended,
}

/// Input is read at least this often.
const POLL: Duration = Duration::from_millis(15);
/// Records are applied for at most this long per turn.
const APPLY_BUDGET: Duration = Duration::from_millis(20);
/// Frames are drawn at most this often, and at least when idle.
const FRAME: Duration = Duration::from_millis(50);
const IDLE_FRAME: Duration = Duration::from_millis(500);

pub fn key_of(k: KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char('c') if ctrl => Key::CtrlC,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Raw mode and the alternate screen while alive; restored on drop and by
/// the panic hook.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| restore())?;
        Ok(Self { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Set by SIGTERM, SIGINT or SIGHUP: the loop ends and the terminal is restored.
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// The controlling terminal, watched for a hang-up (its window closed, its
/// tmux server killed): a draw with nothing new writes nothing, so a dead
/// terminal would otherwise go unnoticed.
struct HangUp(std::fs::File);

impl HangUp {
    fn open() -> io::Result<Self> {
        std::fs::File::open("/dev/tty").map(Self)
    }

    fn happened(&self) -> bool {
        use std::os::fd::AsRawFd as _;
        let mut fd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let rc = unsafe { libc::poll(&mut fd, 1, 0) };
        rc > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }
}

/// Runs until `q`, the feed ends, `stop` is set, or the terminal hangs up.
pub fn run(app: &mut App, feed: &mut dyn Feed, stop: &AtomicBool) -> io::Result<()> {
    let hangup = HangUp::open()?;
    let mut guard = TerminalGuard::enter()?;
    let mut last_pump = Instant::now();
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if stop.load(Ordering::Relaxed) || hangup.happened() {
            return Ok(());
        }
        if event::poll(POLL)? {
            // Every key waiting is handled before more records are applied.
            loop {
                match event::read()? {
                    Event::Key(k) => {
                        if let Some(key) = key_of(k) {
                            let action = app.on_key(key);
                            if action == Action::Quit {
                                return Ok(());
                            }
                            feed.act(app, action);
                            dirty = true;
                        }
                    }
                    Event::Resize(..) => {
                        guard.terminal.autoresize()?;
                        dirty = true;
                    }
                    _ => {}
                }
                if !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        let now = Instant::now();
        let before = app.model.records;
        let state = feed.pump(app, now - last_pump, APPLY_BUDGET);
        last_pump = now;
        dirty |= app.model.records != before;
        let since = last_draw.map_or(Duration::MAX, |t| t.elapsed());
        if (dirty && since >= FRAME) || since >= IDLE_FRAME {
            guard.terminal.draw(|f| render::draw(f, app))?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        if state == FeedState::Ended {
            guard.terminal.draw(|f| render::draw(f, app))?;
            return Ok(());
        }
    }
}
