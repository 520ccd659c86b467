//! `threatlocker-monitor`: the scheduled ThreatLocker monitoring workflow (`demo`, `run`,
//! `watch`, `doctor`). Thin: everything is in the `examples` library (`examples::cli`).

fn main() -> std::process::ExitCode {
    examples::cli::main()
}
