//! The command-line conventions every binary shares: shell completions, man pages and
//! configuration discovery, run through the real binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINS: [&str; 3] = [
    env!("CARGO_BIN_EXE_threatlocker-monitor"),
    env!("CARGO_BIN_EXE_tl-investigate"),
    env!("CARGO_BIN_EXE_siem-forward"),
];

/// A command with a clean environment for discovery: no variable, an empty XDG directory.
fn cmd(bin: &str, xdg: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("THREATLOCKER_MONITOR_CONFIG")
        .env("XDG_CONFIG_HOME", xdg)
        .env("HOME", xdg);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tl-conventions-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn completions_and_man_pages_for_every_binary() {
    let dir = scratch("gen");
    for bin in BINS {
        let name = Path::new(bin).file_stem().unwrap().to_str().unwrap();
        for (shell, marker) in [
            ("bash", "complete -F"),
            ("zsh", "#compdef"),
            ("fish", "complete -c"),
        ] {
            let out = cmd(bin, &dir)
                .args(["completions", shell])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{name} {shell}");
            let script = text(&out.stdout);
            assert!(
                script.contains(marker) && script.contains(name),
                "{name} {shell}"
            );
        }
        let out = cmd(bin, &dir)
            .args(["completions", "tcsh"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: unknown shell is a usage error"
        );

        let out = cmd(bin, &dir).arg("man").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let page = text(&out.stdout);
        assert!(page.contains(".TH") && page.contains(".SH NAME"), "{name}");

        let pages = dir.join(format!("man-{name}"));
        let out = cmd(bin, &dir)
            .args(["man", "--dir"])
            .arg(&pages)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(pages.join(format!("{name}.1")).is_file());
        assert!(pages.join(format!("{name}-completions.1")).is_file());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_config_is_the_flag_then_the_variable_then_xdg() {
    let dir = scratch("discover");
    let bad = "[threatlocker]\ninstance = \"not an instance!\"\n";
    let xdg_file = dir.join("threatlocker-monitor").join("config.toml");
    let env_file = dir.join("from-env.toml");
    let flag_file = dir.join("from-flag.toml");
    for bin in BINS {
        let name = Path::new(bin).file_stem().unwrap().to_str().unwrap();
        let args: &[&str] = match name {
            "tl-investigate" => &["denials"],
            "siem-forward" => &["--once"],
            _ => &["run"],
        };
        // Nothing anywhere: a usage error naming --config.
        let _ = std::fs::remove_file(&xdg_file);
        let out: Output = cmd(bin, &dir).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            text(&out.stderr).contains("--config"),
            "{name}: {}",
            text(&out.stderr)
        );

        // The XDG file is found.
        std::fs::create_dir_all(xdg_file.parent().unwrap()).unwrap();
        std::fs::write(&xdg_file, bad).unwrap();
        let out = cmd(bin, &dir).args(args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("threatlocker.instance"),
            "{name} reads the XDG file: {err}"
        );

        // The variable wins over the XDG file, the flag over both.
        let out = cmd(bin, &dir)
            .args(args)
            .env("THREATLOCKER_MONITOR_CONFIG", &env_file)
            .output()
            .unwrap();
        assert!(
            text(&out.stderr).contains("from-env.toml"),
            "{name}: {}",
            text(&out.stderr)
        );
        let out = cmd(bin, &dir)
            .args(args)
            .env("THREATLOCKER_MONITOR_CONFIG", &env_file)
            .arg("--config")
            .arg(&flag_file)
            .output()
            .unwrap();
        assert!(
            text(&out.stderr).contains("from-flag.toml"),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_documents_discovery_and_color() {
    let dir = scratch("help");
    let out = cmd(BINS[0], &dir).args(["run", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("THREATLOCKER_MONITOR_CONFIG"), "{help}");
    assert!(help.contains("XDG_CONFIG_HOME"), "{help}");
    assert!(
        help.contains("/etc/threatlocker-monitor/config.toml"),
        "{help}"
    );
    assert!(
        help.contains("--color <WHEN>") && help.contains("NO_COLOR"),
        "{help}"
    );
    let out = cmd(BINS[0], &dir)
        .args(["--color", "sometimes", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
