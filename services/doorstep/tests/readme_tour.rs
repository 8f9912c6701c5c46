//! The README's tour, run as written against the real binary: docs as tests, in the spirit of
//! `trycmd`, so the README cannot drift from what Doorstep does.
//!
//! The README marks what to run with HTML comments before fenced blocks (invisible on GitHub):
//! `<!-- tour: server -->` is the command that starts the server (run in the background; the
//! test waits for it to listen), `<!-- tour: run -->` a shell block, `<!-- tour: output -->` the
//! standard output expected of the run block before it, and `<!-- tour: file NAME -->` a file
//! the reader saves (the Python snippet). `needs-python` marks what needs the generated Python
//! client. Every run block goes, in order, to one bash session (so variables and functions
//! carry over, as in the reader's terminal), in an empty temporary folder, with the built
//! `doorstep` and buf first on `PATH`. In expected output, `[ID]`, `[DATE]`, `[TIME]`, `[MONTH]`
//! and `[..]` stand for what changes from run to run, and a line `...` for any lines.
//!
//! The only change made to what the README says: its address `127.0.0.1:50051` becomes a free
//! port (and `doorstep report` is pointed there), so the test can run beside other servers, and
//! the metrics endpoint takes any free port.
//!
//! Without buf (`npm ci` in `tests/clients/node`, or buf on `PATH`) the test says so loudly and
//! skips; without Python's grpcio-tools it skips the Python steps; `DOORSTEP_REQUIRE_CLIENTS=1`
//! makes either a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The address the README uses, replaced by the test's port.
const README_ADDRESS: &str = "127.0.0.1:50051";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// What a marked block is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Server,
    Run,
    Output,
    File(String),
}

#[derive(Debug, Clone)]
struct Block {
    kind: Kind,
    needs_python: bool,
    code: String,
    /// Where it is in the README, to say which block failed.
    line: usize,
}

/// Every marked block of `readme`, in order.
fn marked_blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let Some(marker) = lines[index]
            .trim()
            .strip_prefix("<!-- tour:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            index += 1;
            continue;
        };
        let words: Vec<&str> = marker.split_whitespace().collect();
        let needs_python = words.contains(&"needs-python");
        let kind = match words.as_slice() {
            ["server", ..] => Kind::Server,
            ["run", ..] => Kind::Run,
            ["output", ..] => Kind::Output,
            ["file", name, ..] => Kind::File((*name).to_owned()),
            _ => panic!("README line {}: unknown tour marker {marker:?}", index + 1),
        };
        let fence = (index + 1..lines.len())
            .find(|&at| lines[at].starts_with("```"))
            .unwrap_or_else(|| panic!("README line {}: a marker without a block", index + 1));
        let end = (fence + 1..lines.len())
            .find(|&at| lines[at].starts_with("```"))
            .unwrap_or_else(|| panic!("README line {}: a block that never ends", fence + 1));
        blocks.push(Block {
            kind,
            needs_python,
            code: lines[fence + 1..end].join("\n"),
            line: fence + 1,
        });
        index = end + 1;
    }
    blocks
}

/// Whether `text` is what the placeholder `name` stands for.
fn placeholder_matches(name: &str, text: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let shaped = |text: &str, shape: &str| {
        text.len() == shape.len()
            && text.bytes().zip(shape.bytes()).all(|(t, s)| {
                if s == b'9' {
                    t.is_ascii_digit()
                } else {
                    t == s
                }
            })
    };
    match name {
        ".." => true,
        "ID" => text.len() == 36 && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
        "DATE" => shaped(text, "9999-99-99"),
        "MONTH" => shaped(text, "9999-99"),
        "TIME" => {
            let Some(rest) = text.strip_suffix('Z') else {
                return false;
            };
            let (seconds, fraction) = rest.split_once('.').unwrap_or((rest, "1"));
            shaped(seconds, "9999-99-99T99:99:99") && digits(fraction)
        }
        _ => false,
    }
}

/// Whether one line of output matches one expected line with placeholders.
fn line_matches(expected: &str, actual: &str) -> bool {
    let Some(start) = ["[..]", "[ID]", "[DATE]", "[MONTH]", "[TIME]"]
        .iter()
        .filter_map(|token| expected.find(token).map(|at| (at, *token)))
        .min()
    else {
        return expected == actual;
    };
    let (at, token) = start;
    let Some(actual_rest) = actual.strip_prefix(&expected[..at]) else {
        return false;
    };
    let name = &token[1..token.len() - 1];
    let after = &expected[at + token.len()..];
    (0..=actual_rest.len())
        .filter(|&end| actual_rest.is_char_boundary(end))
        .any(|end| {
            placeholder_matches(name, &actual_rest[..end])
                && line_matches(after, &actual_rest[end..])
        })
}

/// Whether the output lines match the expected lines, where an expected `...` is any lines.
fn lines_match(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..])),
        Some((line, rest)) => actual
            .split_first()
            .is_some_and(|(first, others)| line_matches(line, first) && lines_match(rest, others)),
    }
}

#[test]
fn placeholders_match_what_they_stand_for_and_nothing_else() {
    assert!(line_matches(
        "\"complaintId\": \"[ID]\",",
        "\"complaintId\": \"01a24839-c680-720c-9bb3-f4c851a55ec1\","
    ));
    assert!(!line_matches(
        "\"complaintId\": \"[ID]\",",
        "\"complaintId\": \"x\","
    ));
    assert!(line_matches("at [TIME]", "at 2026-12-05T22:01:15.647352Z"));
    assert!(!line_matches("at [TIME]", "at 2026-12-05"));
    assert!(line_matches(
        "[MONTH] to [MONTH]: 1",
        "2026-12 to 2026-12: 1"
    ));
    assert!(!line_matches("\"version\": \"1\"", "\"version\": \"2\""));
    assert!(lines_match(&["{", "...", "}"], &["{", "a", "b", "}"]));
    assert!(!lines_match(&["{", "}"], &["{", "a", "}"]));
}

/// The directory holding `program`: `pinned` (the version the repository pins) if it is there,
/// else the first on `PATH`.
fn find_program(program: &str, pinned: &Path) -> Option<PathBuf> {
    if pinned.join(program).is_file() {
        return Some(pinned.to_owned());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find(|directory| directory.join(program).is_file())
    })
}

/// Whether a tool the tour needs is there; without it, a loud skip unless
/// `DOORSTEP_REQUIRE_CLIENTS=1`.
fn available(what: &str, found: bool, install: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        std::env::var("DOORSTEP_REQUIRE_CLIENTS").as_deref() != Ok("1"),
        "DOORSTEP_REQUIRE_CLIENTS=1 but {what} is missing ({install})"
    );
    eprintln!("\n*** SKIPPED: the README tour's {what} steps need it ({install}) ***\n");
    false
}

/// A command in the tour's folder with nothing of Doorstep's from the test's own environment,
/// and the tour's `PATH`.
fn tour_command(program: &str, folder: &Path, path: &std::ffi::OsStr) -> Command {
    let mut command = Command::new(program);
    command.current_dir(folder).env("PATH", path);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DOORSTEP") {
            command.env_remove(&name);
        }
    }
    command.env_remove("RUST_BACKTRACE");
    command
}

#[tokio::test]
async fn the_readme_tour_runs_as_written() {
    let root = repository_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = marked_blocks(&readme);
    assert!(
        blocks.iter().filter(|b| b.kind == Kind::Run).count() >= 6,
        "the README marks its tour: {blocks:?}"
    );
    let node_bin = root.join("tests/clients/node/node_modules/.bin");
    let buf = find_program("buf", &node_bin);
    if !available("buf", buf.is_some(), "(cd tests/clients/node && npm ci)") {
        return;
    }
    let Some(buf_directory) = buf else {
        return;
    };
    let python = available(
        "Python client",
        Command::new("python3")
            .args(["-c", "import grpc, grpc_tools"])
            .output()
            .is_ok_and(|output| output.status.success()),
        "python3 -m pip install -r tests/clients/python/requirements.txt",
    );

    let folder = tempfile::tempdir().expect("an empty folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_doorstep"));
    let mut path = vec![
        binary.parent().expect("the binary's directory").to_owned(),
        buf_directory,
    ];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).expect("a PATH");

    let mut runs: Vec<(Block, Option<Block>)> = Vec::new();
    let mut server = None;
    for block in blocks {
        if block.needs_python && !python {
            continue;
        }
        match &block.kind {
            Kind::Server => server = Some(block),
            Kind::Run => runs.push((block, None)),
            Kind::Output => {
                if let Some((_, expected @ None)) = runs.last_mut() {
                    *expected = Some(block);
                }
            }
            Kind::File(name) => {
                let code = block.code.replace(README_ADDRESS, &address);
                std::fs::write(folder.path().join(name), format!("{code}\n"))
                    .expect("the snippet is saved");
            }
        }
    }

    let server = server.expect("the README marks the command that starts the server");
    let words: Vec<&str> = server.code.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"doorstep"),
        "README line {}: the server block runs doorstep",
        server.line
    );
    let mut serve = tour_command(binary.to_str().expect("a UTF-8 path"), folder.path(), &path);
    serve
        .args(&words[1..])
        .env("DOORSTEP__SERVER__PORT", port.to_string())
        .env("DOORSTEP__METRICS__PORT", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    let running = support::spawn(serve);
    assert_eq!(running.port, port);
    assert!(
        running.stderr_tail().contains("data/admin.api-key"),
        "the first start says where the admin key is, as the tour says:\n{}",
        running.stderr_tail()
    );

    if python {
        // protoc writes into a directory that exists.
        std::fs::create_dir_all(folder.path().join("generated")).expect("a folder for the client");
        let generated = Command::new("python3")
            .current_dir(folder.path())
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(root.join("proto"))
            .args(["--python_out=generated", "--grpc_python_out=generated"])
            .args(
                std::fs::read_dir(root.join("proto/doorstep/v1"))
                    .expect("the proto files")
                    .map(|entry| entry.expect("an entry").path()),
            )
            .output()
            .expect("grpc_tools runs");
        assert!(
            generated.status.success(),
            "{}",
            String::from_utf8_lossy(&generated.stderr)
        );
    }

    let mut script = String::from("set -e -o pipefail\n");
    for (number, (block, _)) in runs.iter().enumerate() {
        script.push_str(&format!("printf '\\n<<<tour-step-{number}>>>\\n'\n"));
        script.push_str(&block.code.replace(README_ADDRESS, &address));
        script.push('\n');
    }
    let output = tour_command("bash", folder.path(), &path)
        .args(["-c", &script])
        .env("DOORSTEP_SERVER", format!("http://{address}"))
        .stdin(Stdio::null())
        .output()
        .expect("bash runs the tour");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the tour failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{}",
        output.status,
        running.stderr_tail()
    );

    let mut wrong = Vec::new();
    for (number, (block, expected)) in runs.iter().enumerate() {
        let marker = format!("<<<tour-step-{number}>>>\n");
        let after = stdout
            .split_once(&marker)
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("step {number} never ran:\n{stdout}"));
        let said = after
            .split_once("\n<<<tour-step-")
            .map_or(after, |(said, _)| said);
        let Some(expected) = expected else {
            continue;
        };
        let actual: Vec<&str> = said.trim_end().lines().collect();
        let wanted: Vec<&str> = expected.code.trim_end().lines().collect();
        if !lines_match(&wanted, &actual) {
            wrong.push(format!(
                "README line {} (output at line {}):\n--- expected\n{}\n--- got\n{}",
                block.line,
                expected.line,
                expected.code,
                said.trim_end()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the README's outputs differ from what the tour printed:\n{}\n--- stderr\n{stderr}",
        wrong.join("\n\n")
    );
}
