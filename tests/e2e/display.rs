//! The progress display in a real terminal (a tmux pane): log lines written
//! while it is shown must not leave stale copies of it on the screen
//! (issue 16 #6).

use std::process::Command;
use std::time::Duration;

use weir_tests::wait_until;

use crate::{TIMEOUT, with_input, write};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("running tmux (the setup command installs it)");
    assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the tmux session when the test ends, passed or not.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
    }
}

#[test]
fn log_lines_leave_one_display_on_screen() {
    for (cols, rows) in [(80, 24), (160, 40)] {
        let (tmp, _) = with_input(40_000, 118);
        let dir = tmp.path();
        // Checkpoints every 100 ms: an INFO line each, while the display redraws.
        let job = crate::recovery::wordcount_behind("", 5_000, "[checkpoint]\ninterval = \"100ms\"\n");
        write(dir, "job.toml", &job);
        let name = format!("weir-display-{}-{cols}", std::process::id());
        let cmd = format!(
            "cd {} && WEIR_CACHE_DIR={} {} run job.toml --no-api; sleep 60",
            dir.display(),
            weir_tests::target_dir().join("e2e-compile-cache").display(),
            weir_tests::weir_bin().display()
        );
        tmux(&["new-session", "-d", "-s", &name, "-x", &cols.to_string(), "-y", &rows.to_string(), &cmd]);
        let _session = Session(name.clone());
        // Two seconds in: about twenty "checkpoint N complete" lines were logged.
        wait_until("the job to run 2 s", TIMEOUT, || tmux(&["capture-pane", "-p", "-t", &name]).contains("running 2s"));
        std::thread::sleep(Duration::from_millis(300)); // let the display redraw after the last log line
        let screen = tmux(&["capture-pane", "-p", "-t", &name]);
        let headers = screen.lines().filter(|l| l.contains("job `wc` running")).count();
        let rows_shown = screen.lines().filter(|l| l.trim_start().starts_with("tokenize ")).count();
        assert_eq!((headers, rows_shown), (1, 1), "{cols}×{rows}: the screen holds stale displays:\n{screen}");
    }
}
