//! Release benchmark: evaluate 1 000 000 synthetic action-log rows and compare with decoding the
//! same rows from JSON.
//!
//! Run: `cargo bench -p policy-engine --bench evaluate` (prints rows/s per pass and medians).
//! The row count can be changed with `EVAL_ROWS=200000`.
//!
//! A third case streams the same rows into per-hour states the way the workflow keeps them
//! (`WindowState::push_selected`, approval facts for every hash), keeps each as JSON, reads the
//! 24 back and merges them into an accumulator: rows/s into the states, the kept bytes, and
//! that the detections equal `evaluate`'s.
//!
//! `EVAL_APPROVALS=400` adds that many pending approval requests for a few popular applications
//! (the same Chrome, Word and Zoom builds across the fleet), so every request's hash matches tens
//! of thousands of rows: the approval rules must not cost a pass over those rows per request.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, TimeZone, Utc};
use policy_engine::PendingApproval;
use policy_engine::{Engine, EngineConfig, Input, WindowState};
use threatlocker_api::{
    ActionLogId, ActionLogRow, ActionOutcome, ApprovalRequest, ApprovalStatus, Computer,
    ComputerMode, ResearchDetails,
};

/// Tiny deterministic xorshift64* generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: &[&str] = &[
    "c:\\program files\\google\\chrome\\application\\chrome.exe",
    "c:\\program files\\microsoft office\\root\\office16\\winword.exe",
    "c:\\windows\\system32\\svchost.exe",
    "c:\\windows\\explorer.exe",
    "c:\\program files\\zoom\\bin\\zoom.exe",
    "c:\\users\\{u}\\downloads\\setup.exe",
    "c:\\users\\{u}\\appdata\\local\\temp\\update.exe",
    "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
    "c:\\windows\\system32\\certutil.exe",
    "c:\\programdata\\vendor\\agent.exe",
];

fn rows(n: usize) -> Vec<ActionLogRow> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // ~1% re-sent rows (page overlap): same id as an earlier row.
        let id = if i > 0 && rng.below(100) == 0 {
            (rng.below(i as u64)) as i64
        } else {
            i as i64
        };
        let org = rng.below(20);
        let comp = rng.below(2_000);
        let user = rng.below(5_000);
        let mut r = ActionLogRow::default();
        r.action_log_id = Some(ActionLogId(10_000_000_000 + id));
        r.organization_id = Some(format!("3b0f5f7e-1111-4a2b-9c3d-{org:012}").into());
        r.organization_name = Some(format!("Client {org}"));
        r.computer_id = Some(format!("9a8b7c6d-2222-4e5f-8a9b-{comp:012}").into());
        r.hostname = Some(format!("WS-{comp:05}"));
        r.username = Some(format!("CLIENT{org}\\user{user}"));
        r.date_time =
            Some(start + Duration::milliseconds((id * 86_400_000 / n.max(1) as i64) % 86_400_000));
        let p = rng.below(PATHS.len() as u64) as usize;
        let app = rng.below(3_000);
        r.full_path = Some(PATHS[p].replace("{u}", &format!("user{user}")));
        r.process_path = Some("c:\\windows\\explorer.exe".into());
        r.sha256_hash = Some(format!("{:016x}{:048x}", p as u64 * 7919 + app, app));
        r.hash = Some(format!("{:040x}", app));
        r.cert_exists = Some(rng.below(3) != 0);
        r.action_type = Some("execute".into());
        r.policy_name = Some("Default - Deny".into());
        // A realistic day: mostly permits, a few percent blocks, audit-only rows from the
        // learning computers (every tenth), rare ringfence hits and rare audit-only rows on
        // Secure computers (policy bypass).
        let learning = comp.is_multiple_of(10);
        let roll = rng.below(1_000);
        let (action, monitor) = match roll {
            0..=24 => (ActionOutcome::Deny, learning),
            25..=29 => (ActionOutcome::DenyWithRequest, learning),
            30..=31 => (ActionOutcome::Ringfenced, false),
            32 => (ActionOutcome::Deny, true),
            _ => (ActionOutcome::Permit, false),
        };
        r.action_id = Some(action);
        r.is_monitor_mode = Some(monitor);
        if p == 7 && rng.below(50) == 0 {
            r.data = Some(
                "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="
                    .into(),
            );
        }
        out.push(r);
    }
    out
}

/// Paths (indices into `PATHS`) of the popular applications requested in the approvals case.
const POPULAR: &[usize] = &[0, 1, 4];

fn popular_sha256(p: usize) -> String {
    format!("{:064x}", 0xc0ffee_u64 + p as u64)
}

/// Gives every row of a popular application the same build (one hash and signer fleet-wide).
fn make_popular(rows: &mut [ActionLogRow]) {
    for r in rows {
        let path = r.full_path.as_deref().unwrap_or("");
        if let Some(&p) = POPULAR.iter().find(|&&p| PATHS[p] == path) {
            r.sha256_hash = Some(popular_sha256(p).to_uppercase());
            r.hash = Some(format!("{:040x}", 0xbeef_u64 + p as u64));
            r.cert = Some(format!("CN=Vendor {p}, O=Vendor {p}, C=US"));
            r.cert_exists = Some(true);
        }
    }
}

/// `n` pending requests, round-robin over the popular applications, from many computers.
fn approvals(n: usize) -> Vec<PendingApproval> {
    (0..n)
        .map(|k| {
            let p = POPULAR[k % POPULAR.len()];
            let comp = (k * 7) % 2_000;
            let mut r = ApprovalRequest::default();
            r.approval_request_id = Some(format!("req-{k:05}").into());
            r.organization_id = Some(format!("3b0f5f7e-1111-4a2b-9c3d-{:012}", k % 20).into());
            r.computer_id = Some(format!("9a8b7c6d-2222-4e5f-8a9b-{comp:012}").into());
            r.hostname = Some(format!("WS-{comp:05}"));
            r.username = Some(format!("user{k}"));
            r.path = Some(PATHS[p].to_owned());
            r.sha256 = Some(popular_sha256(p));
            r.hash = Some(format!("{:040x}", 0xbeef_u64 + p as u64));
            r.status_id = Some(ApprovalStatus::Pending);
            r.json = Some(format!(r#"{{"certs":[{{"subject":"CN=Vendor {p}"}}]}}"#));
            let mut research = ResearchDetails::default();
            research.categories = vec!["Productivity".into()];
            PendingApproval::new(r).with_research(research)
        })
        .collect()
}

fn computers() -> Vec<Computer> {
    (0..2_000u64)
        .map(|c| {
            let mut m = Computer::default();
            m.computer_id = Some(format!("9a8b7c6d-2222-4e5f-8a9b-{c:012}").into());
            m.hostname = Some(format!("WS-{c:05}"));
            m.mode = Some(if c.is_multiple_of(10) {
                ComputerMode::Learning
            } else {
                ComputerMode::Secure
            });
            m
        })
        .collect()
}

fn median(mut v: Vec<StdDuration>) -> StdDuration {
    v.sort();
    v[v.len() / 2]
}

fn rate(n: usize, d: StdDuration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("EVAL_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // EVAL_ONLY=1 skips the decoding half (for profiling the engine alone).
    let skip_decode = std::env::var_os("EVAL_ONLY").is_some();
    let n_approvals: usize = std::env::var("EVAL_APPROVALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut events = rows(n);
    if n_approvals > 0 {
        make_popular(&mut events);
    }
    let json = if skip_decode {
        Vec::new()
    } else {
        serde_json::to_vec(&events).expect("serialize rows")
    };
    let mut config = EngineConfig::default();
    config.org_variables.threatlocker_auto_approve_categories = vec!["Productivity".into()];
    let engine = Engine::new(config).expect("bench config is valid");
    let start = Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap();
    let input = Input::new(
        start + Duration::hours(24),
        start,
        start + Duration::hours(24),
    )
    .with_events(events)
    .with_computers(computers())
    .with_approvals(approvals(n_approvals));
    let matched = if n_approvals > 0 {
        let hashes: Vec<String> = POPULAR.iter().map(|&p| popular_sha256(p)).collect();
        input
            .events
            .iter()
            .filter(|r| {
                r.sha256_hash
                    .as_deref()
                    .is_some_and(|h| hashes.contains(&h.to_lowercase()))
            })
            .count()
    } else {
        0
    };
    println!(
        "rows: {n}, JSON: {:.1} MiB, approvals: {n_approvals} (their hashes match {matched} rows)",
        json.len() as f64 / (1024.0 * 1024.0)
    );

    let (mut dec, mut eval) = (Vec::new(), Vec::new());
    for pass in 1..=3 {
        let t = Instant::now();
        let decoded: Vec<ActionLogRow> = if skip_decode {
            Vec::new()
        } else {
            serde_json::from_slice(black_box(&json)).expect("decode rows")
        };
        let d = t.elapsed();
        black_box(decoded.len());
        drop(decoded);

        let t = Instant::now();
        let decisions = engine.evaluate(black_box(&input));
        let e = t.elapsed();
        black_box(&decisions);
        println!(
            "pass {pass}: decode {:>10.0} rows/s ({:.3}s) | evaluate {:>10.0} rows/s ({:.3}s) | events {} blocks {} detections {} auto-approved {}",
            rate(n, d),
            d.as_secs_f64(),
            rate(n, e),
            e.as_secs_f64(),
            decisions.blocks.total_events,
            decisions.blocks.blocks,
            decisions.detections.len(),
            decisions.approvals.iter().filter(|a| a.auto_approve).count()
        );
        dec.push(d);
        eval.push(e);
    }
    let (d, e) = (median(dec), median(eval));
    println!(
        "median: decode {:.0} rows/s | evaluate {:.0} rows/s | evaluate/decode time ratio {:.2}",
        rate(n, d),
        rate(n, e),
        e.as_secs_f64() / d.as_secs_f64()
    );

    // Per-hour accumulators, kept as JSON and merged.
    let reference = serde_json::to_string(&engine.evaluate(&input).detections).unwrap();
    let mut acc_times = Vec::new();
    for pass in 1..=3 {
        let t = Instant::now();
        // As the workflow keeps hours: one state per hour, rows de-duplicated by id first,
        // approval facts for every hash (the requests of later runs are not known).
        let mut hours: Vec<WindowState> = vec![WindowState::default(); 24];
        let mut seen = std::collections::HashSet::with_capacity(n);
        for row in &input.events {
            if let Some(t) = row.date_time {
                if !row.action_log_id.is_some_and(|id| seen.insert(id)) {
                    continue;
                }
                let h = ((t - start).num_hours()).clamp(0, 23) as usize;
                hours[h].push_selected(&engine, row);
            }
        }
        drop(seen);
        let pushed = t.elapsed();
        let kept: Vec<String> = hours
            .into_iter()
            .map(|mut h| {
                h.normalize(&engine);
                serde_json::to_string(&h).unwrap()
            })
            .collect();
        let kept_bytes: usize = kept.iter().map(String::len).sum();
        let mut acc = engine.accumulator(&input);
        for k in &kept {
            acc.merge_state(serde_json::from_str::<WindowState>(k).unwrap());
        }
        let keys = acc.state().keys();
        let decisions = acc.finish();
        let total = t.elapsed();
        assert_eq!(
            serde_json::to_string(&decisions.detections).unwrap(),
            reference,
            "merged hours decide as one evaluation"
        );
        println!(
            "pass {pass}: push into 24 hourly states {:>10.0} rows/s ({:.3}s) | keep + merge + finish: {:.3}s total | kept {:.1} MiB of JSON, {keys} keys",
            rate(n, pushed),
            pushed.as_secs_f64(),
            total.as_secs_f64(),
            kept_bytes as f64 / (1024.0 * 1024.0)
        );
        acc_times.push(pushed);
    }
    println!(
        "median: push into the accumulators {:.0} rows/s",
        rate(n, median(acc_times))
    );
}
