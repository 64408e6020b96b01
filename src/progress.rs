//! The one-line progress display of long runs (`wasmlink pipeline run`, `wasmlink index`).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wasmlink::pipeline::Progress;

/// A one-line progress display on stderr (when it is a terminal and not disabled), redrawn
/// every 100 ms from a pipeline's live counters by `message(progress, elapsed_seconds)`.
pub struct ProgressLine {
    done: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl ProgressLine {
    pub fn start(
        progress: Arc<Progress>,
        enabled: bool,
        message: fn(&Progress, f64) -> String,
    ) -> ProgressLine {
        let done = Arc::new(AtomicBool::new(false));
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        let ticker = bar.clone().map(|bar| {
            let done = done.clone();
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                while !done.load(Ordering::Relaxed) {
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(message(&progress, secs));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        ProgressLine { done, ticker, bar }
    }

    /// Stops the ticker and clears the line.
    pub fn finish(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker {
            let _ = t.join();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A spinner with a fixed message on stderr (a terminal only, when enabled) that appears only
/// if the work takes longer than `delay`: for one slow step with no counters, such as
/// compiling a pipeline's modules on a first run.
pub struct SlowStep {
    done: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl SlowStep {
    pub fn start(enabled: bool, delay: Duration, message: String) -> SlowStep {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = (enabled && std::io::stderr().is_terminal()).then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut bar: Option<ProgressBar> = None;
                while !done.load(Ordering::Relaxed) {
                    if bar.is_none() && start.elapsed() >= delay {
                        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                        b.set_style(
                            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        b.set_message(message.clone());
                        bar = Some(b);
                    }
                    if let Some(b) = &bar {
                        b.tick();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
            })
        });
        SlowStep { done, ticker }
    }

    /// Stops the spinner and clears its line.
    pub fn finish(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker {
            let _ = t.join();
        }
    }
}
