//! Throughput of the syslog sink: forwards 1 000 000 CEF records to a local TCP listener that
//! reads and discards them, and prints records per second (median of several runs).
//!
//! Run with `cargo bench -p psa-connectors --bench syslog_throughput`.

use std::time::Instant;

use psa_connectors::syslog::{Config, SyslogSink, Transport};
use psa_connectors::{SiemRecord, SiemSink};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const RECORDS: usize = 1_000_000;
const BATCH: usize = 10_000;
const RUNS: usize = 5;

fn records() -> Vec<SiemRecord> {
    let base = chrono::Utc::now();
    (0..RECORDS)
        .map(|i| {
            SiemRecord::new(
                base + chrono::Duration::milliseconds(i as i64),
                5,
                "app:execute:deny",
                "Execution blocked (not allowlisted)",
            )
            .hostname(format!("CONTOSO-WS{:03}", i % 500))
            .msg_id("EXEC_DENY")
            .field("duser", "CONTOSO\\jdoe")
            .field("fname", format!("tool{}.exe", i % 1000))
            .field(
                "filePath",
                format!("C:\\Users\\jdoe\\Downloads\\tool{}.exe", i % 1000),
            )
            .field(
                "fileHash",
                "4f7c0a3e9d1b2c5a6e8f90123456789abcdef0123456789abcdef0123456789a",
            )
            .field("act", "deny")
            .field("cs1Label", "organization")
            .field("cs1", "Contoso Ltd")
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let records = records();
        let mut rates = Vec::new();
        for run in 0..RUNS {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let reader = tokio::spawn(async move {
                let (mut sock, _) = listener.accept().await.expect("accept");
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0usize;
                loop {
                    let n = sock.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break total;
                    }
                    total += n;
                }
            });
            let sink =
                SyslogSink::new(Config::new(addr.to_string(), Transport::Tcp)).expect("sink");
            let started = Instant::now();
            for batch in records.chunks(BATCH) {
                sink.send_batch(batch).await.expect("send");
            }
            let elapsed = started.elapsed();
            sink.close().await.expect("close");
            let bytes = reader.await.expect("reader");
            let rate = RECORDS as f64 / elapsed.as_secs_f64();
            println!(
                "run {run}: {RECORDS} records, {:.1} MB in {:.3} s = {:.0} records/s",
                bytes as f64 / 1e6,
                elapsed.as_secs_f64(),
                rate
            );
            rates.push(rate);
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        println!("median: {:.0} records/s over {RUNS} runs", rates[RUNS / 2]);
    });
}
