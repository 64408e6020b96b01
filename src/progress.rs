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
