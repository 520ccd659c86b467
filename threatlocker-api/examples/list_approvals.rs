//! Lists the pending approval requests of every organization the API key can see.
//!
//! Needs only `threatlocker-api` and `tokio` in an embedder's `Cargo.toml`:
//!
//! ```text
//! TL_API_KEY=... TL_INSTANCE=g cargo run -p threatlocker-api --example list_approvals
//! ```
//!
//! `TL_BASE_URL` replaces `TL_INSTANCE` for a proxy or a local simulator.

use threatlocker_api::prelude::*;

#[tokio::main]
async fn main() -> Result<()> {
    let key = std::env::var("TL_API_KEY").unwrap_or_default();
    let builder = Client::builder(key);
    let client = match std::env::var("TL_BASE_URL") {
        Ok(url) => builder.base_url(url),
        Err(_) => builder.instance(std::env::var("TL_INSTANCE").unwrap_or_else(|_| "g".into())),
    }
    .build()?;

    let mut pending = client
        .approvals()
        .search(ApprovalStatus::Pending)
        .child_organizations(true)
        .stream();
    let mut count = 0;
    while let Some(request) = pending.try_next().await? {
        count += 1;
        println!(
            "{} | {} | {} on {} | {}",
            request
                .date_time
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            request.organization_name.as_deref().unwrap_or("-"),
            request.username.as_deref().unwrap_or("-"),
            request.hostname.as_deref().unwrap_or("-"),
            request.path.as_deref().unwrap_or("-"),
        );
    }
    println!("{count} pending approval requests");
    Ok(())
}
