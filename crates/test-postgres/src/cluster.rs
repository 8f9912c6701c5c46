//! Starting one throw-away PostgreSQL cluster from the system's binaries, and making sure it is
//! stopped and removed after the test process exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use uuid::Uuid;

/// Where Debian and Ubuntu install each PostgreSQL version's binaries.
const VERSIONED_INSTALLS: &str = "/usr/lib/postgresql";

/// The user that owns and runs the cluster when the tests run as root.
const CLUSTER_OWNER: &str = "postgres";

/// A free port can be taken by someone else between our probe and the server's bind; starting
/// again on another port is cheap.
const START_ATTEMPTS: usize = 3;

/// Enough for many stores' pools and writers at once: tests run in parallel and each opens a few.
const MAX_CONNECTIONS: u32 = 300;

/// A running cluster. It lives until the test process exits; see [`spawn_watchdog`].
#[derive(Debug)]
pub(crate) struct Cluster {
    port: u16,
}

/// How to run `initdb` and `pg_ctl`: directly, or through `runuser` as the cluster owner.
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    as_cluster_owner: bool,
}

impl Binaries {
    fn command(&self, program: &Path) -> Command {
        if self.as_cluster_owner {
            let mut command = Command::new("runuser");
            command.args(["-u", CLUSTER_OWNER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Cluster {
    /// Creates and starts a cluster, or says why it cannot.
    pub(crate) fn start() -> Result<Self, String> {
        let (initdb, pg_ctl) = find_binaries().ok_or_else(|| {
            format!(
                "no initdb/pg_ctl found (on PATH or under {VERSIONED_INSTALLS}/*/bin) and \
                 DOORSTEP_TEST_DATABASE_URL unset"
            )
        })?;
        let binaries = Binaries {
            initdb,
            pg_ctl,
            as_cluster_owner: running_as_root()?,
        };
        let directory = std::env::temp_dir().join(format!(
            "doorstep-test-postgres-{}",
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory)
            .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
        // From here on the directory exists, so the watchdog must remove it whatever happens.
        spawn_watchdog(&binaries, &directory)?;
        if binaries.as_cluster_owner {
            run(Command::new("chown")
                .args(["-R", CLUSTER_OWNER])
                .arg(&directory))?;
        }
        let data_directory = directory.join("data");
        run(binaries
            .command(&binaries.initdb)
            .arg("-D")
            .arg(&data_directory)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C"))?;

        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let server_options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on \
                 -c max_connections={MAX_CONNECTIONS}",
                directory.display()
            );
            let started = run(binaries
                .command(&binaries.pg_ctl)
                .args(["-w", "-t", "60", "-D"])
                .arg(&data_directory)
                .arg("-l")
                .arg(directory.join("postgres.log"))
                .arg("-o")
                .arg(server_options)
                .arg("start"));
            match started {
                Ok(()) => return Ok(Self { port }),
                Err(failure) => last_failure = failure,
            }
        }
        Err(format!(
            "PostgreSQL did not start (log in {}): {last_failure}",
            directory.join("postgres.log").display()
        ))
    }

    /// The URL of the cluster's `postgres` database, as its superuser (trust authentication).
    pub(crate) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

/// `initdb` and `pg_ctl` from `PATH`, else from the newest versioned install.
fn find_binaries() -> Option<(PathBuf, PathBuf)> {
    let path_directories = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned_directories: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(VERSIONED_INSTALLS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned_directories.sort_by(|left, right| right.0.cmp(&left.0));
    path_directories
        .into_iter()
        .chain(
            versioned_directories
                .into_iter()
                .map(|(_, directory)| directory),
        )
        .find_map(|directory| {
            let initdb = directory.join("initdb");
            let pg_ctl = directory.join("pg_ctl");
            (initdb.is_file() && pg_ctl.is_file()).then_some((initdb, pg_ctl))
        })
}

/// Asks `id -u`: the workspace forbids the unsafe code `geteuid` would need.
fn running_as_root() -> Result<bool, String> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|error| format!("cannot run `id -u`: {error}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("cannot find a free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port: {error}"))
}

/// Starts a detached shell that waits for this test process to exit, then stops the cluster
/// without a shutdown checkpoint and removes its directory. Paths travel as arguments, never
/// spliced into the script, so no quoting can go wrong.
fn spawn_watchdog(binaries: &Binaries, directory: &Path) -> Result<(), String> {
    const SCRIPT: &str = r#"
        test_process="$1"; pg_ctl="$2"; directory="$3"; shift 3
        while kill -0 "$test_process" 2>/dev/null; do sleep 1; done
        if [ -f "$directory/data/postmaster.pid" ]; then
            "$@" "$pg_ctl" -D "$directory/data" stop -m immediate >/dev/null 2>&1
        fi
        rm -rf "$directory"
    "#;
    let run_as: &[&str] = if binaries.as_cluster_owner {
        &["runuser", "-u", CLUSTER_OWNER, "--"]
    } else {
        &[]
    };
    let mut arguments: Vec<std::ffi::OsString> = vec![
        "sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "doorstep-test-postgres-watchdog".into(),
        std::process::id().to_string().into(),
        binaries.pg_ctl.clone().into_os_string(),
        directory.as_os_str().to_owned(),
    ];
    arguments.extend(run_as.iter().map(Into::into));
    // `setsid` puts the watchdog in a session of its own, so that the Ctrl-C that stops the
    // tests does not stop it too; without `setsid` it still works when the tests end normally.
    let spawned = Command::new("setsid")
        .args(&arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_else(|_| {
            Command::new(&arguments[0])
                .args(&arguments[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        });
    // The child is not waited for: it must outlive this process. Dropping the handle does not
    // stop it.
    spawned
        .map(drop)
        .map_err(|error| format!("cannot start the cluster's watchdog: {error}"))
}

/// Runs a command to completion and turns a failure into a message with its output.
fn run(command: &mut Command) -> Result<(), String> {
    let output: Output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
