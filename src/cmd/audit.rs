use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use mixtures::audit::{AuditOptions, audit_path};

/// Show what a mixture (or one prepared dataset) really contains, against its targets.
#[derive(Args)]
#[command(after_help = "Examples:
  midtrain audit out/mixture
  midtrain audit out/mixture --html out/mixture/audit.html
  midtrain audit out/prepared/books --long-threshold 2048 --long-range 0.5,0.7 --json

Reports per domain: documents, tokens, target vs realised share (whole stream, first 1% and
10%), pre-training share and the overlap, long-document token share, document-length histogram,
quality and language-score distributions, and removals by step and reason from prepare.
Exits with status 1 when something is flagged (overlap below the floor, a share more than one
point off target, a long share outside --long-range).")]
pub struct AuditArgs {
    /// A mixture folder (mixture.json) or a prepared dataset folder (manifest.json).
    path: PathBuf,
    /// Documents of at least this many tokens count as long.
    #[arg(long, default_value_t = 4096)]
    long_threshold: u64,
    /// The long-token share a stage asks for, as MIN,MAX (fractions), e.g. 0.55,0.65.
    #[arg(long, value_name = "MIN,MAX")]
    long_range: Option<String>,
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    let long_range = match &args.long_range {
        None => None,
        Some(s) => {
            let Some((lo, hi)) = s.split_once(',') else { bail!("--long-range wants MIN,MAX, e.g. 0.55,0.65") };
            Some((lo.trim().parse::<f64>()?, hi.trim().parse::<f64>()?))
        }
    };
    let audit = audit_path(&args.path, &AuditOptions { long_threshold: args.long_threshold, long_range })?;
    if let Some(path) = &args.html {
        util::fsutil::write_atomic(path, mixtures::audit_page::html(&audit).as_bytes())?;
    }
    if args.json {
        outln!("{}", serde_json::to_string(&audit)?);
    } else {
        outln!("{} {} · {} documents · {} tokens", audit.kind, audit.name, audit.documents, audit.tokens);
        if let (Some(o), Some(f)) = (audit.overlap, audit.min_overlap) {
            outln!("overlap with pre-training {o:.3} (floor {f:.2})");
        }
        outln!("long share (documents ≥ {} tokens) {:.1}%", audit.long_threshold, 100.0 * audit.long_share);
        outln!(
            "{:<12} {:>9} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
            "domain",
            "docs",
            "tokens",
            "target",
            "share",
            "1%",
            "10%",
            "pretrain",
            "long",
            "quality"
        );
        for d in &audit.domains {
            let [t, s, f1, f10, p, l] = d.share_percentages();
            let quality = d.quality.mean.map_or("–".into(), |q| format!("{q:.3}"));
            outln!(
                "{:<12} {:>9} {:>12} {t:>7.2}% {s:>7.2}% {f1:>7.2}% {f10:>7.2}% {p:>7.2}% {l:>6.1}% {quality:>9}",
                d.name,
                d.documents,
                d.tokens,
            );
        }
        for d in &audit.domains {
            let removed: u64 = d.removed.values().sum();
            if removed > 0 {
                let mut top: Vec<_> = d.removed.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let top: Vec<String> = top.iter().take(4).map(|(r, n)| format!("{r} {n}")).collect();
                outln!("{}: {removed} removed while preparing ({})", d.name, top.join(", "));
            }
            if let Some(subset) = &d.subset {
                outln!("{}: {}", d.name, subset.describe());
            }
            if let (Some(column), Some(mean)) = (&d.score_column, d.score.mean) {
                let q = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.4}"));
                outln!(
                    "{}: {column} over the draws: mean {mean:.4}, p10 {}, p50 {}, p90 {}",
                    d.name,
                    q(d.score.p10),
                    q(d.score.p50),
                    q(d.score.p90)
                );
            }
            if !d.draws_by_cluster_size.is_empty() {
                let bands: Vec<String> = d.draws_by_cluster_size.iter().map(|(b, n)| format!("{b}: {n}")).collect();
                outln!("{}: draws by dedup cluster size {}", d.name, bands.join(", "));
            }
            if !d.marked.is_empty() {
                let marked: Vec<String> = d.marked.iter().map(|(r, n)| format!("{r} {n}")).collect();
                outln!("{}: draws of documents marked contaminated: {}", d.name, marked.join(", "));
            }
        }
        for f in &audit.flags {
            outln!("FLAG {f}");
        }
    }
    Ok(if audit.flags.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
