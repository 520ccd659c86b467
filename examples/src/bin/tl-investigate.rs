//! `tl-investigate`: timeline, file spread, repeated denials, audit-only bypasses and single
//! actions from the ThreatLocker action log. See `tl-investigate --help`.

fn main() -> std::process::ExitCode {
    examples::investigate::cli::main()
}
