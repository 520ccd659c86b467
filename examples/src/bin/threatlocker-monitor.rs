//! `threatlocker-monitor`: the scheduled ThreatLocker monitoring workflow (`demo`, `run`,
//! `watch`, `doctor`). Thin: everything is in the `examples` library (`examples::monitor::cli`).

fn main() -> std::process::ExitCode {
    examples::monitor::cli::main()
}
