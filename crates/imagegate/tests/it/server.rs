//! Starting and stopping `imagegate serve` as a child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `imagegate serve`.
pub struct Server {
    pub child: Child,
    pub base_url: String,
    /// The admin key, when this start created it.
    pub admin_key: Option<String>,
}

/// A free loopback port (bound then released; a race is unlikely on a test box).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The binary under test.
pub fn imagegate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagegate"));
    c.env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    c
}

impl Server {
    /// Starts the synthetic-backend server on `port` over `data_dir` with extra env, and waits until /healthz answers.
    pub fn start(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_with(data_dir, port, &["--synthetic-backend"], env)
    }

    /// Starts `serve` with `args` after the subcommand (instead of `--synthetic-backend`).
    pub fn start_with(data_dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = imagegate();
        cmd.arg("serve").args(args).args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(data_dir).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn imagegate serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base_url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut admin_key = None;
        loop {
            while let Ok(line) = rx.try_recv() {
                if line.starts_with("sk-ig-") {
                    admin_key = Some(line);
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(50));
        while let Ok(line) = rx.try_recv() {
            if line.starts_with("sk-ig-") {
                admin_key = Some(line);
            }
        }
        Self { child, base_url, admin_key }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
