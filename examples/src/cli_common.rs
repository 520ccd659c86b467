//! Conventions every binary follows (`threatlocker-monitor`, `tl-investigate`, `siem-forward`),
//! added to each one's clap definition in one place so the three cannot drift:
//!
//! - `--color auto|always|never` (global), with `NO_COLOR` honoured under `auto`;
//! - `completions <SHELL>` prints a shell completion script (bash, zsh, fish, elvish,
//!   powershell);
//! - `man [--dir DIR]` prints the manual page, or writes one per command into `DIR`;
//! - configuration discovery for `--config`: the flag, else `THREATLOCKER_MONITOR_CONFIG`, else
//!   `$XDG_CONFIG_HOME/threatlocker-monitor/config.toml` (`~/.config/...` when unset), else
//!   `/etc/threatlocker-monitor/config.toml`; `--help` says so. When no file is found the flag
//!   stays required and the usage error names it.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::config::Env;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "THREATLOCKER_MONITOR_CONFIG";

/// The directory name under the XDG configuration directory and `/etc`.
pub const CONFIG_DIR: &str = "threatlocker-monitor";

/// The usage error when no configuration file was given or found.
pub const NO_CONFIG: &str = "no configuration file: pass --config FILE (the threatlocker-monitor \
configuration file), set THREATLOCKER_MONITOR_CONFIG, or create \
~/.config/threatlocker-monitor/config.toml or /etc/threatlocker-monitor/config.toml";

/// Exit code of a usage error (the same in every binary).
const EXIT_USAGE: u8 = 2;

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set to a non-empty value.
    Auto,
    /// Always (even when `NO_COLOR` is set: the flag is the more specific request).
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    fn parse(s: &str) -> Self {
        match s {
            "always" => Self::Always,
            "never" => Self::Never,
            _ => Self::Auto,
        }
    }
}

/// Whether to colour: pure, so the table of cases is tested. `no_color` is the value of
/// `NO_COLOR` (set and non-empty disables colour, per no-color.org).
pub fn use_color(choice: ColorChoice, no_color: Option<&str>, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty),
    }
}

/// 0 = not decided yet (auto on stderr), 1 = colour, 2 = no colour.
static STDERR_COLOR: AtomicU8 = AtomicU8::new(0);

/// Whether logs on stderr may use colour, as `--color` and `NO_COLOR` decided at start-up.
pub fn stderr_color() -> bool {
    match STDERR_COLOR.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => use_color(
            ColorChoice::Auto,
            std::env::var("NO_COLOR").ok().as_deref(),
            std::io::stderr().is_terminal(),
        ),
    }
}

/// The configuration file to use when `--config` is not given and the environment variable is
/// not set: the XDG path, else the `/etc` path, whichever exists first.
pub fn discover_config(env: &dyn Env, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    config_candidates(env).into_iter().find(|p| exists(p))
}

/// Where [`discover_config`] looks, in order.
pub fn config_candidates(env: &dyn Env) -> Vec<PathBuf> {
    let xdg = env
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        // The XDG spec ignores a relative value.
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env.var("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".config"))
        });
    let mut out = Vec::new();
    if let Some(dir) = xdg {
        out.push(dir.join(CONFIG_DIR).join("config.toml"));
    }
    out.push(Path::new("/etc").join(CONFIG_DIR).join("config.toml"));
    out
}

const DISCOVERY_HELP: &str = "Without --config: $THREATLOCKER_MONITOR_CONFIG, else \
$XDG_CONFIG_HOME/threatlocker-monitor/config.toml (~/.config/threatlocker-monitor/config.toml \
when XDG_CONFIG_HOME is unset), else /etc/threatlocker-monitor/config.toml.";

/// Adds the environment variable, the discovered default and the discovery help to every
/// `--config` argument of `cmd` and its subcommands.
fn with_config_discovery(cmd: Command, found: Option<&Path>) -> Command {
    let cmd = if cmd.get_arguments().any(|a| a.get_id() == "config") {
        cmd.mut_arg("config", |a| {
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let a = a
                .env(CONFIG_ENV)
                .long_help(format!("{help}\n\n{DISCOVERY_HELP}"));
            match found {
                Some(p) => a
                    .default_value(OsString::from(p.as_os_str()))
                    .required(false),
                None => a,
            }
        })
    } else {
        cmd
    };
    cmd.mut_subcommands(|s| with_config_discovery(s, found))
}

/// The binary's clap command with the shared conventions added.
pub fn command<C: CommandFactory>(found_config: Option<&Path>) -> Command {
    let cmd = with_config_discovery(C::command(), found_config);
    // `siem-forward completions bash` must not need siem-forward's own required flags.
    let has_required = cmd.get_arguments().any(Arg::is_required_set);
    cmd.subcommand_negates_reqs(has_required)
        .arg(
            Arg::new("color")
                .long("color")
                .value_name("WHEN")
                .global(true)
                .action(ArgAction::Set)
                .value_parser(PossibleValuesParser::new(["auto", "always", "never"]))
                .default_value("auto")
                .help("When to colour logs: auto (a terminal, and NO_COLOR unset), always, never"),
        )
        .subcommand(
            Command::new("completions")
                .about("Print a shell completion script")
                .long_about(
                    "Print a shell completion script, e.g.\n  \
                     threatlocker-monitor completions bash > /etc/bash_completion.d/threatlocker-monitor",
                )
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell)),
                ),
        )
        .subcommand(
            Command::new("man")
                .about("Print the manual page (roff), or write one per command with --dir")
                .arg(
                    Arg::new("dir")
                        .long("dir")
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("Write <binary>.1 and <binary>-<command>.1 files into DIR"),
                ),
        )
}

/// What [`parse`] found on the command line.
#[derive(Debug)]
pub enum Parsed<C> {
    /// The binary's own command line.
    Args(C),
    /// A shared command (`completions`, `man`, `--help`, `--version`, or a usage error) ran;
    /// exit with this code.
    Exit(ExitCode),
}

/// Parses the process's command line for `C` with the shared conventions: the colour choice
/// is recorded for [`stderr_color`], `completions` and `man` run here. Usage errors exit 2,
/// `--help`/`--version` 0.
pub fn parse<C: CommandFactory + FromArgMatches>(env: &dyn Env) -> Parsed<C> {
    parse_from(std::env::args_os(), env, |p| p.is_file())
}

/// [`parse`] over given arguments and file-existence check (for tests).
pub fn parse_from<C: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    env: &dyn Env,
    exists: impl Fn(&Path) -> bool,
) -> Parsed<C> {
    let found = discover_config(env, exists);
    let mut cmd = command::<C>(found.as_deref());
    let matches = match cmd.try_get_matches_from_mut(args) {
        Ok(m) => m,
        Err(e) => return Parsed::Exit(print_clap_error(&e)),
    };
    let choice = ColorChoice::parse(
        matches
            .get_one::<String>("color")
            .map(String::as_str)
            .unwrap_or("auto"),
    );
    let color = use_color(
        choice,
        env.var("NO_COLOR").as_deref(),
        std::io::stderr().is_terminal(),
    );
    STDERR_COLOR.store(if color { 1 } else { 2 }, Ordering::Relaxed);
    match matches.subcommand() {
        Some(("completions", sub)) => Parsed::Exit(completions(&mut cmd, sub)),
        Some(("man", sub)) => Parsed::Exit(man(cmd, sub)),
        _ => match C::from_arg_matches(&matches) {
            Ok(c) => Parsed::Args(c),
            Err(e) => Parsed::Exit(print_clap_error(&e.format(&mut cmd))),
        },
    }
}

fn print_clap_error(e: &clap::Error) -> ExitCode {
    let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
    let _ = e.print();
    ExitCode::from(code)
}

fn completions(cmd: &mut Command, sub: &ArgMatches) -> ExitCode {
    let Some(shell) = sub.get_one::<clap_complete::Shell>("shell").copied() else {
        return ExitCode::from(EXIT_USAGE);
    };
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, cmd, name, &mut out);
    write_stdout(&out, "the completion script")
}

fn man(cmd: Command, sub: &ArgMatches) -> ExitCode {
    if let Some(dir) = sub.get_one::<PathBuf>("dir") {
        return match std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the manual pages to {}: {e}", dir.display());
                ExitCode::from(1)
            }
        };
    }
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
        eprintln!("error: rendering the manual page: {e}");
        return ExitCode::from(1);
    }
    write_stdout(&out, "the manual page")
}

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing {what}: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| (*s).to_owned())
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }

    #[test]
    fn color_follows_the_flag_then_no_color_then_the_terminal() {
        use ColorChoice::*;
        let cases = [
            (Auto, None, true, true),
            (Auto, None, false, false),
            (Auto, Some("1"), true, false),
            (Auto, Some(""), true, true),
            (Always, Some("1"), false, true),
            (Never, None, true, false),
        ];
        for (choice, no_color, tty, want) in cases {
            assert_eq!(
                use_color(choice, no_color, tty),
                want,
                "{choice:?} {no_color:?} {tty}"
            );
        }
    }

    #[test]
    fn discovery_order_is_xdg_then_home_then_etc() {
        let e = env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/home/u")]);
        assert_eq!(
            config_candidates(&e),
            vec![
                PathBuf::from("/x/threatlocker-monitor/config.toml"),
                PathBuf::from("/etc/threatlocker-monitor/config.toml"),
            ]
        );
        let e = env(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(
            config_candidates(&e)[0],
            PathBuf::from("/home/u/.config/threatlocker-monitor/config.toml")
        );
        let e = env(&[]);
        assert_eq!(
            config_candidates(&e),
            vec![PathBuf::from("/etc/threatlocker-monitor/config.toml")]
        );
        let e = env(&[("HOME", "/home/u")]);
        let etc_only = |p: &Path| p.starts_with("/etc");
        assert_eq!(
            discover_config(&e, etc_only),
            Some(PathBuf::from("/etc/threatlocker-monitor/config.toml"))
        );
        assert_eq!(
            discover_config(&e, |_| true).unwrap().parent().unwrap(),
            Path::new("/home/u/.config/threatlocker-monitor")
        );
        assert_eq!(discover_config(&e, |_| false), None);
    }

    #[derive(Debug, clap::Parser)]
    #[command(name = "t")]
    struct T {
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        /// Runs.
        Run {
            /// The configuration file.
            #[arg(long, short, value_name = "FILE")]
            config: PathBuf,
        },
    }

    fn run_config(args: &[&str], e: &MapEnv, exists: bool) -> Option<PathBuf> {
        match parse_from::<T>(args.iter().copied(), e, |_| exists) {
            Parsed::Args(T {
                cmd: Sub::Run { config },
            }) => Some(config),
            Parsed::Exit(_) => None,
        }
    }

    #[test]
    fn config_is_the_flag_then_the_variable_then_the_discovered_file() {
        let e = env(&[("HOME", "/home/u"), (CONFIG_ENV, "/from/env.toml")]);
        // The variable is read by clap from the process environment, so only the flag and the
        // discovered file are exercised here; the process environment has no such variable.
        let plain = env(&[("HOME", "/home/u")]);
        assert_eq!(
            run_config(&["t", "run", "-c", "/flag.toml"], &e, true),
            Some(PathBuf::from("/flag.toml"))
        );
        assert_eq!(
            run_config(&["t", "run"], &plain, true),
            Some(PathBuf::from(
                "/home/u/.config/threatlocker-monitor/config.toml"
            ))
        );
        assert_eq!(
            run_config(&["t", "run"], &plain, false),
            None,
            "still required"
        );
    }

    #[test]
    fn the_help_documents_discovery_and_the_shared_commands_exist() {
        let mut cmd = command::<T>(None);
        let help = cmd
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("THREATLOCKER_MONITOR_CONFIG"), "{help}");
        assert!(
            help.contains("/etc/threatlocker-monitor/config.toml"),
            "{help}"
        );
        let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        assert!(names.contains(&"completions") && names.contains(&"man"));
        cmd.debug_assert();
    }
}
