//! `siem-forward`: ThreatLocker events to a SIEM over syslog, each once. See
//! `siem-forward --help`.

fn main() -> std::process::ExitCode {
    examples::siem::cli::main()
}
