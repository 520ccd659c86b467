//! The project's own tasks, run through the `cargo xtask` alias (`.cargo/config.toml`).
//!
//! `cargo xtask ci` is the test command: the README's "Running the tests" and `.ci/run`. It
//! installs what the tests need beyond the toolchain (`scripts/setup-test-deps.sh`: rsyslog for
//! the real-receiver tests, aiosmtpd for the SMTP tests), finds or starts PostgreSQL, then runs
//! `cargo fmt --check`, clippy and rustdoc with warnings denied, `cargo test --workspace` and
//! the publish dry run (`scripts/publish-dry-run.sh`), and ends with a summary naming what was
//! skipped. Under `CI=true` a missing test dependency or PostgreSQL fails it instead.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "usage: cargo xtask ci\n\n  ci   the test command: test dependencies, format, lints, documentation, tests, publish dry run";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("ci") => match ci() {
            Ok(()) => ExitCode::SUCCESS,
            Err(step) => {
                eprintln!("error: {step} failed");
                ExitCode::FAILURE
            }
        },
        Some("-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (this crate's parent).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn section(name: &str) {
    println!("\n==> {name}");
}

/// Runs `program args` in the workspace root; whether it succeeded.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> bool {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `program args`, naming `step` when it fails.
fn step(
    step: &'static str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(), &'static str> {
    if run(program, args, env) {
        Ok(())
    } else {
        Err(step)
    }
}

fn postgres_reachable() -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], 5432));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Starts the machine's PostgreSQL cluster when running as root on Debian (best effort).
fn start_postgres() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.file_name()).min());
    if let (true, Some(version)) = (is_root, version) {
        let version = version.to_string_lossy().into_owned();
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &version, "main", "start"],
            &[],
        );
    }
}

/// Says that something was skipped, now and again in the summary.
fn skip(skipped: &mut Vec<&'static str>, what: &'static str) {
    println!("{what}");
    skipped.push(what);
}

fn ci() -> Result<(), &'static str> {
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut skipped: Vec<&str> = Vec::new();

    section("test dependencies");
    if !run("bash", &["scripts/setup-test-deps.sh"], &[]) {
        if on_ci {
            return Err("installing the test dependencies");
        }
        skip(
            &mut skipped,
            "rsyslog or aiosmtpd could not be installed: the real-receiver tests were SKIPPED \
             (run scripts/setup-test-deps.sh as root)",
        );
    }

    section("PostgreSQL");
    if !postgres_reachable() {
        start_postgres();
    }
    if std::env::var_os("TLM_TEST_PG_URL").is_some() {
        println!("PostgreSQL tests use TLM_TEST_PG_URL");
    } else if postgres_reachable() {
        println!("PostgreSQL reachable on 127.0.0.1:5432");
    } else if on_ci {
        return Err("reaching PostgreSQL on 127.0.0.1:5432 (required under CI=true)");
    } else {
        skip(
            &mut skipped,
            "PostgreSQL tests were SKIPPED: no server on 127.0.0.1:5432. \
             Start one with: sudo pg_ctlcluster 15 main start",
        );
    }

    section("format");
    step(
        "cargo fmt --check",
        &cargo,
        &["fmt", "--all", "--", "--check"],
        &[],
    )?;
    section("lints");
    step(
        "cargo clippy",
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    section("documentation");
    step(
        "cargo doc",
        &cargo,
        &["doc", "--workspace", "--no-deps", "--quiet"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    section("tests");
    step("cargo test", &cargo, &["test", "--workspace"], &[])?;
    section("publish dry run");
    step(
        "the publish dry run",
        "bash",
        &["scripts/publish-dry-run.sh"],
        &[],
    )?;

    section("summary");
    println!("format, lints, documentation, tests and the publish dry run passed");
    for s in skipped {
        println!("{s}");
    }
    Ok(())
}
