//! A real single-node Kafka broker (KRaft) for tests: `bin/kafka` fetches it
//! from Maven Central and runs it on free ports of 127.0.0.1. No mocks: if
//! Maven, Java or the broker fail, the test fails and says why.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    dir: PathBuf,
    port: u16,
    controller_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Broker {
    /// Starts a fresh broker with its data under `dir`.
    pub fn start(dir: &Path) -> Broker {
        let mut b = Broker { dir: dir.to_owned(), port: free_port(), controller_port: free_port(), child: None };
        b.launch();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        std::fs::create_dir_all(&self.dir).expect("broker directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("broker log");
        let child = Command::new(root.join("bin/kafka"))
            .arg("--dir")
            .arg(&self.dir)
            .args(["--port", &self.port.to_string(), "--controller-port", &self.controller_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting bin/kafka");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the broker answers metadata requests (up to 3 minutes:
    /// the first start may download the jars).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let cfg = clickwatch::kafka::KafkaSection { brokers: Some(self.brokers()), ..Default::default() };
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the Kafka broker exited ({status}) during start:\n{}", self.log_tail());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && clickwatch::kafka::ensure_topic(&cfg, "_clickwatch_ready", 1).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the Kafka broker did not start:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Stops the broker cleanly (SIGTERM, as `kill` does) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
