//! Printing results: stage statistics as a table or JSON on stdout.

use pipeline::StageStats;

pub fn print_stage_stats(stats: &StageStats, json: bool) -> std::io::Result<()> {
    if json {
        outln!("{}", serde_json::to_string(stats).expect("serialisable"));
        return Ok(());
    }
    let pct = |a: u64, b: u64| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    outln!("{:<20} {:>10} {:>10} {:>8}  removed by reason", "step", "docs in", "docs out", "kept %");
    for s in &stats.steps {
        let mut reasons: Vec<_> = s.removed.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut reasons = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ");
        if !s.marked.is_empty() {
            let marked = s.marked.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ");
            reasons = format!("{reasons}{}marked, kept: {marked}", if reasons.is_empty() { "" } else { "; " });
        }
        outln!(
            "{:<20} {:>10} {:>10} {:>7.1}%  {reasons}",
            s.step,
            s.documents_in,
            s.documents_out,
            pct(s.documents_out, s.documents_in)
        );
    }
    outln!(
        "kept {} of {} documents ({:.1}%), {:.1} of {:.1} MB",
        stats.documents_kept,
        stats.documents_read,
        pct(stats.documents_kept, stats.documents_read),
        stats.bytes_kept as f64 / 1e6,
        stats.bytes_read as f64 / 1e6
    );
    Ok(())
}
