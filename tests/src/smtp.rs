//! A real SMTP server for the email tests: Python's aiosmtpd writing every message it accepts
//! into a Maildir, which the test reads back as the recipient's mail client would see it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::webhook::free_address;

/// aiosmtpd on 127.0.0.1, killed when dropped.
pub struct SmtpServer {
    child: tokio::process::Child,
    pub port: u16,
    maildir: PathBuf,
    _directory: tempfile::TempDir,
}

impl SmtpServer {
    /// Whether Python's aiosmtpd can run here. Without it an e-mail test says so loudly and is
    /// skipped, as the PostgreSQL tests are without PostgreSQL, unless `DOORSTEP_REQUIRE_SMTP=1`
    /// (set by `.ci/run`, which installs it) makes that a failure.
    pub fn available() -> bool {
        let installed = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|output| output.status.success());
        if installed {
            return true;
        }
        assert!(
            std::env::var("DOORSTEP_REQUIRE_SMTP").as_deref() != Ok("1"),
            "DOORSTEP_REQUIRE_SMTP=1 but python3 cannot import aiosmtpd (pip install aiosmtpd)"
        );
        eprintln!(
            "\n*** SKIPPED: the e-mail delivery test needs Python's aiosmtpd \
             (pip install aiosmtpd) ***\n"
        );
        false
    }

    /// Starts the server on a free port with an empty mailbox.
    pub async fn start() -> Self {
        Self::start_on(free_address().port()).await
    }

    /// Starts the server on `port` (one a test left unserved until now).
    pub async fn start_on(port: u16) -> Self {
        let directory = tempfile::tempdir().expect("a directory");
        // aiosmtpd creates the Maildir (cur, new, tmp) only where nothing exists yet.
        let maildir = directory.path().join("mail");
        let child = tokio::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (aiosmtpd is needed: pip install aiosmtpd)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    child,
                    port,
                    maildir,
                    _directory: directory,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aiosmtpd did not start on port {port}; is it installed (pip install aiosmtpd)?");
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<Mail> {
        messages_in(&self.maildir)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A message as it arrived: its headers unfolded, its body as sent.
#[derive(Debug, Clone)]
pub struct Mail {
    pub raw: String,
    pub headers: String,
    pub body: String,
}

impl Mail {
    fn parse(raw: String) -> Self {
        let text = raw.replace("\r\n", "\n");
        let (headers, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        Self {
            headers: headers.replace("\n ", " ").replace("\n\t", " "),
            body: body.to_owned(),
            raw,
        }
    }

    /// A header's value, e.g. `header("Subject")`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub fn to(&self) -> &str {
        self.header("To").unwrap_or_default()
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or_default()
    }

    /// The body with its lines joined by single spaces, for sentences the body wraps.
    pub fn prose(&self) -> String {
        self.body.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn messages_in(maildir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut messages: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .collect();
    messages.sort();
    messages.into_iter().map(Mail::parse).collect()
}
