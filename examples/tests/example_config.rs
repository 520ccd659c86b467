//! The documented example configuration is accepted by every command's section reader.

use std::path::Path;

use examples::config::Config;

#[test]
fn the_example_file_is_accepted_by_every_section_reader() {
    let text = include_str!("../config.example.toml");
    let c = Config::from_toml_str(text, Path::new("/etc/tl")).unwrap();
    let siem = examples::siem::config::SiemConfig::from_config(&c)
        .unwrap()
        .expect("[siem] is documented");
    assert_eq!(siem.address, "siem.msp.example:6514");
    let report = examples::monitor::report::ReportSettings::from_config(&c).unwrap();
    assert_eq!(report.timezone.map(|t| t.name()), Some("Europe/London"));
    let watch = examples::monitor::triggers::WatchSettings::from_config(&c).unwrap();
    assert_eq!(watch.interval, Some(std::time::Duration::from_secs(1800)));
    examples::investigate::cli::check_section(&c).unwrap();
    c.engine().unwrap();
    let bad = format!("{text}\n[investigate]\nwindow = \"1h\"\n");
    let e = examples::investigate::cli::check_section(
        &Config::from_toml_str(&bad, Path::new("/")).unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("investigate.window"), "{e}");
}
