//! Load tool for `bench/run`.
//!
//! * `loadgen stream`: N keep-alive HTTP/1.1 connections, each POSTing a streaming chat
//!   completion in a loop for a fixed time; per stream it records the time to the first body
//!   byte and the time to the end of the body, and prints a JSON summary to stdout. (wrk cannot
//!   see the first byte of a response, so the streaming phase uses this instead.)
//! * `loadgen report`: reads the per-phase result files `bench/run` wrote, prints the comparison
//!   table, and writes the combined JSON.
//!
//! It runs on a single-threaded runtime: `bench/run` pins it to one CPU.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Parser)]
#[command(name = "loadgen", about = "Streaming load generator and report writer for bench/run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run streaming requests and print a JSON summary.
    Stream(StreamArgs),
    /// Build the comparison table and the combined JSON from a results directory.
    Report(ReportArgs),
}

#[derive(Args)]
struct StreamArgs {
    /// Target URL, `http://host:port/path` (plain HTTP/1.1 only).
    #[arg(long)]
    url: String,
    /// Request body (JSON).
    #[arg(long)]
    body: String,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Connections, each with one stream at a time.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured time, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured warm-up before it, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Args)]
struct ReportArgs {
    /// Directory with `<target>.<phase>.json` files and `meta.json`.
    #[arg(long)]
    dir: PathBuf,
    /// Where to write the combined JSON (repeatable: latest and dated copy).
    #[arg(long = "out")]
    outs: Vec<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stream(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(stream(args))),
        Command::Report(args) => report(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// === stream ===

struct Target {
    addr: String,
    host: HeaderValue,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

#[derive(Default)]
struct Samples {
    ttfb_us: Vec<u64>,
    total_us: Vec<u64>,
    events_min: Option<usize>,
    events_max: usize,
    errors: u64,
    error_samples: Vec<String>,
}

impl Samples {
    fn error(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(format!("{e:#}"));
        }
    }
}

fn parse_target(args: &StreamArgs) -> anyhow::Result<Target> {
    let uri: hyper::Uri = args.url.parse().with_context(|| format!("bad --url {}", args.url))?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be http://");
    }
    let host = uri.host().context("--url has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h.split_once(':').with_context(|| format!("bad header {h:?}"))?;
        headers.push((HeaderName::try_from(name.trim())?, HeaderValue::try_from(value.trim())?));
    }
    serde_json::from_str::<Value>(&args.body).context("--body is not JSON")?;
    Ok(Target {
        addr: format!("{host}:{port}"),
        host: HeaderValue::try_from(format!("{host}:{port}"))?,
        path,
        headers,
        body: Bytes::from(args.body.clone()),
    })
}

async fn stream(args: StreamArgs) -> anyhow::Result<()> {
    let target = Arc::new(parse_target(&args)?);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let deadline = measure_from + Duration::from_secs_f64(args.duration.max(0.1));
    let warmup_streams = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let target = Arc::clone(&target);
        let warmup_streams = Arc::clone(&warmup_streams);
        tasks.spawn(async move {
            let mut samples = Samples::default();
            worker(&target, measure_from, deadline, &mut samples, &warmup_streams).await;
            samples
        });
    }
    let mut all = Samples::default();
    while let Some(s) = tasks.join_next().await {
        let s = s?;
        all.ttfb_us.extend(s.ttfb_us);
        all.total_us.extend(s.total_us);
        all.events_min = match (all.events_min, s.events_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        all.events_max = all.events_max.max(s.events_max);
        all.errors += s.errors;
        for e in s.error_samples {
            if all.error_samples.len() < 5 {
                all.error_samples.push(e);
            }
        }
    }
    let measured = args.duration.max(0.1);
    let n = all.total_us.len();
    let out = json!({
        "url": args.url,
        "concurrency": args.concurrency,
        "duration_s": measured,
        "warmup_s": args.warmup,
        "warmup_streams": warmup_streams.load(Ordering::Relaxed),
        "streams": n,
        "streams_per_s": n as f64 / measured,
        "errors": all.errors,
        "error_samples": all.error_samples,
        "events_per_stream_min": all.events_min,
        "events_per_stream_max": all.events_max,
        "ttfb_ms": summary(&mut all.ttfb_us),
        "total_ms": summary(&mut all.total_us),
    });
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    if n == 0 {
        bail!("no stream completed ({} errors)", all.errors);
    }
    Ok(())
}

/// One connection at a time, reconnecting after an error, until `deadline`.
async fn worker(
    target: &Target,
    measure_from: Instant,
    deadline: Instant,
    samples: &mut Samples,
    warmup_streams: &AtomicU64,
) {
    while Instant::now() < deadline {
        if let Err(e) = connection(target, measure_from, deadline, samples, warmup_streams).await {
            samples.error(&e);
            if samples.errors > 1000 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn connection(
    target: &Target,
    measure_from: Instant,
    deadline: Instant,
    samples: &mut Samples,
    warmup_streams: &AtomicU64,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(&target.addr).await.with_context(|| format!("connect {}", target.addr))?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let requests = async {
        while Instant::now() < deadline {
            sender.ready().await.context("connection closed")?;
            let mut req = Request::post(target.path.as_str())
                .header(HOST, target.host.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(target.body.clone()))?;
            for (name, value) in &target.headers {
                req.headers_mut().insert(name.clone(), value.clone());
            }
            let t0 = Instant::now();
            let resp = sender.send_request(req).await.context("send request")?;
            let status = resp.status();
            let mut body = resp.into_body();
            let mut first: Option<Duration> = None;
            let mut buf = Vec::with_capacity(8192);
            while let Some(frame) = body.frame().await {
                let frame = frame.context("read body")?;
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    if first.is_none() {
                        first = Some(t0.elapsed());
                    }
                    buf.extend_from_slice(data);
                }
            }
            let total = t0.elapsed();
            if !status.is_success() {
                bail!("status {status}: {}", String::from_utf8_lossy(&buf[..buf.len().min(300)]));
            }
            let text = String::from_utf8_lossy(&buf);
            if !text.contains("data: [DONE]") {
                bail!("stream ended without data: [DONE]");
            }
            if t0 < measure_from {
                warmup_streams.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let events = text.matches("data:").count();
            samples.events_min = Some(samples.events_min.map_or(events, |m| m.min(events)));
            samples.events_max = samples.events_max.max(events);
            samples.ttfb_us.push(micros(first.unwrap_or(total)));
            samples.total_us.push(micros(total));
        }
        Ok(())
    };
    // The connection future drives the socket; it only ends first when the server closes it.
    tokio::select! {
        r = requests => r,
        r = conn => match r {
            Ok(()) => bail!("server closed the connection"),
            Err(e) => Err(anyhow::Error::from(e).context("connection")),
        },
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// p50/p90/p99/mean/max in milliseconds (nearest rank).
fn summary(us: &mut [u64]) -> Value {
    if us.is_empty() {
        return Value::Null;
    }
    us.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p / 100.0) * us.len() as f64).ceil() as usize;
        us[rank.clamp(1, us.len()) - 1] as f64 / 1000.0
    };
    let mean = us.iter().map(|&v| v as f64).sum::<f64>() / us.len() as f64 / 1000.0;
    json!({
        "p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0),
        "mean": mean, "max": us[us.len() - 1] as f64 / 1000.0,
    })
}

// === report ===

const TARGETS: [&str; 3] = ["direct", "nginx", "tollgate"];

#[derive(Clone, Copy)]
enum Kind {
    /// Milliseconds, lower is better: compared to direct as "added ms".
    Latency,
    /// Requests per second, higher is better: compared to direct as a ratio.
    Throughput,
    /// Proxy-only value (no direct column), shown with this many decimals.
    ProxyOnly(usize),
}

#[derive(Clone, Copy)]
enum Goal {
    /// tollgate / nginx >= x.
    RatioToNginxAtLeast(f64),
    /// tollgate - direct <= x ms.
    AddedOverDirectAtMost(f64),
    /// tollgate - nginx <= x ms.
    OverNginxAtMost(f64),
    /// tollgate <= x.
    AtMost(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::RatioToNginxAtLeast(x) => format!(">= {:.0}% of nginx", x * 100.0),
            Goal::AddedOverDirectAtMost(x) => format!("<= +{x} ms over direct"),
            Goal::OverNginxAtMost(x) => format!("<= nginx + {x} ms"),
            Goal::AtMost(x) => format!("<= {x} MB"),
        }
    }

    fn check(self, d: Option<f64>, n: Option<f64>, t: Option<f64>) -> Option<bool> {
        let t = t?;
        Some(match self {
            Goal::RatioToNginxAtLeast(x) => t / n? >= x,
            Goal::AddedOverDirectAtMost(x) => t - d? <= x,
            Goal::OverNginxAtMost(x) => t - n? <= x,
            Goal::AtMost(x) => t <= x,
        })
    }
}

struct Row {
    key: &'static str,
    label: &'static str,
    kind: Kind,
    values: [Option<f64>; 3],
    goal: Option<Goal>,
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn get(v: &Option<Value>, pointer: &str) -> Option<f64> {
    v.as_ref()?.pointer(pointer)?.as_f64()
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let load = |target: &str, phase: &str| read_json(&args.dir.join(format!("{target}.{phase}.json")));
    let mut raw = BTreeMap::new();
    let mut rows = vec![
        Row {
            key: "c1_p50_ms",
            label: "c1 latency p50 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: Some(Goal::AddedOverDirectAtMost(0.2)),
        },
        Row {
            key: "c1_p99_ms",
            label: "c1 latency p99 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "c64_rps",
            label: "c64 throughput (req/s)",
            kind: Kind::Throughput,
            values: [None; 3],
            goal: Some(Goal::RatioToNginxAtLeast(0.5)),
        },
        Row {
            key: "c64_p99_ms",
            label: "c64 latency p99 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "stream_ttfb_p50_ms",
            label: "stream c16 TTFB p50 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "stream_ttfb_p99_ms",
            label: "stream c16 TTFB p99 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "stream_total_p50_ms",
            label: "stream c16 total p50 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: Some(Goal::OverNginxAtMost(1.0)),
        },
        Row {
            key: "stream_total_p99_ms",
            label: "stream c16 total p99 (ms)",
            kind: Kind::Latency,
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "c64_proxy_cpu_pct",
            label: "c64 proxy CPU (% of a core)",
            kind: Kind::ProxyOnly(0),
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "c64_proxy_cpu_us_per_req",
            label: "c64 proxy CPU per request (us)",
            kind: Kind::ProxyOnly(1),
            values: [None; 3],
            goal: None,
        },
        Row {
            key: "rss_idle_mb",
            label: "RSS idle (MB)",
            kind: Kind::ProxyOnly(1),
            values: [None; 3],
            goal: Some(Goal::AtMost(20.0)),
        },
        Row {
            key: "rss_peak_c64_mb",
            label: "RSS peak under c64 (MB)",
            kind: Kind::ProxyOnly(1),
            values: [None; 3],
            goal: Some(Goal::AtMost(60.0)),
        },
    ];
    let mut problems = Vec::new();
    for (i, target) in TARGETS.iter().enumerate() {
        let c1 = load(target, "c1");
        let c64 = load(target, "c64");
        let stream = load(target, "stream");
        let rss = load(target, "rss");
        for (phase, v) in [("c1", &c1), ("c64", &c64)] {
            let bad = get(v, "/errors").unwrap_or(0.0) + get(v, "/non2xx").unwrap_or(0.0);
            if v.is_none() {
                problems.push(format!("{target} {phase}: no result"));
            } else if bad > 0.0 {
                problems.push(format!("{target} {phase}: {bad} failed requests"));
            }
        }
        match &stream {
            None => problems.push(format!("{target} stream: no result")),
            Some(s) if s["errors"].as_u64().unwrap_or(0) > 0 => {
                problems.push(format!("{target} stream: {} errors: {}", s["errors"], s["error_samples"]));
            }
            Some(_) => {}
        }
        let rps = || Some(get(&c64, "/requests")? / get(&c64, "/duration_us")? * 1e6);
        let cpu_s = || Some(get(&rss, "/c64_cpu_ticks")? / get(&rss, "/clk_tck")?);
        let cpu_pct = || Some(cpu_s()? / (get(&c64, "/duration_us")? / 1e6) * 100.0);
        let cpu_per_req = || Some(cpu_s()? / get(&c64, "/requests")? * 1e6);
        let vals = [
            get(&c1, "/p50_us").map(|v| v / 1000.0),
            get(&c1, "/p99_us").map(|v| v / 1000.0),
            rps(),
            get(&c64, "/p99_us").map(|v| v / 1000.0),
            get(&stream, "/ttfb_ms/p50"),
            get(&stream, "/ttfb_ms/p99"),
            get(&stream, "/total_ms/p50"),
            get(&stream, "/total_ms/p99"),
            cpu_pct(),
            cpu_per_req(),
            get(&rss, "/idle_kb").map(|v| v / 1024.0),
            get(&rss, "/peak_kb").map(|v| v / 1024.0),
        ];
        for (row, v) in rows.iter_mut().zip(vals) {
            row.values[i] = v;
        }
        raw.insert(target.to_string(), json!({"c1": c1, "c64": c64, "stream": stream, "rss": rss}));
    }

    let meta = read_json(&args.dir.join("meta.json")).unwrap_or(Value::Null);
    let mut table = String::new();
    let header = ["metric", "direct", "nginx", "tollgate", "tg/nginx", "tg vs direct", "target", "ok"];
    let mut lines: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    let mut metrics = serde_json::Map::new();
    let mut checks = Vec::new();
    for row in &rows {
        let [d, n, t] = row.values;
        let fmt = |v: Option<f64>| match (v, row.kind) {
            (None, _) => "-".to_owned(),
            (Some(v), Kind::Throughput) => format!("{v:.0}"),
            (Some(v), Kind::ProxyOnly(dp)) => format!("{v:.dp$}"),
            (Some(v), Kind::Latency) => format!("{v:.3}"),
        };
        let ratio_nginx = match (t, n) {
            (Some(t), Some(n)) if n != 0.0 => Some(t / n),
            _ => None,
        };
        let vs_direct = match (row.kind, t, d) {
            (Kind::Latency, Some(t), Some(d)) => Some(t - d),
            (Kind::Throughput, Some(t), Some(d)) if d != 0.0 => Some(t / d),
            _ => None,
        };
        let vs_direct_s = match (row.kind, vs_direct) {
            (Kind::Latency, Some(v)) => format!("{v:+.3} ms"),
            (Kind::Throughput, Some(v)) => format!("{v:.2}x"),
            _ => "-".to_owned(),
        };
        let pass = row.goal.and_then(|g| g.check(d, n, t));
        lines.push([
            row.label.to_owned(),
            fmt(d),
            fmt(n),
            fmt(t),
            ratio_nginx.map_or("-".to_owned(), |r| format!("{r:.2}x")),
            vs_direct_s,
            row.goal.map_or(String::new(), Goal::describe),
            match pass {
                Some(true) => "yes".to_owned(),
                Some(false) => "NO".to_owned(),
                None => String::new(),
            },
        ]);
        metrics.insert(
            row.key.to_owned(),
            json!({
                "label": row.label, "direct": d, "nginx": n, "tollgate": t,
                "tollgate_over_nginx": ratio_nginx,
                "tollgate_vs_direct": vs_direct,
                "target": row.goal.map(Goal::describe),
                "pass": pass,
            }),
        );
        if let Some(goal) = row.goal {
            checks.push(json!({"metric": row.key, "target": goal.describe(), "pass": pass}));
        }
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    for (li, line) in lines.iter().enumerate() {
        let cells: Vec<String> =
            line.iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) }
                })
                .collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
        if li == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            table.push_str(&rule.join("  "));
            table.push('\n');
        }
    }
    let out = json!({
        "meta": meta,
        "metrics": metrics,
        "checks": checks,
        "problems": problems,
        "raw": raw,
        "table": table,
    });
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(table.as_bytes())?;
    for p in &problems {
        writeln!(stdout, "warning: {p}")?;
    }
    for path in &args.outs {
        let mut text = serde_json::to_string_pretty(&out)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
