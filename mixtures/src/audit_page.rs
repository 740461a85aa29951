//! The audit as one self-contained HTML page: tables and inline SVG charts, no scripts, no
//! external files, so it opens offline.

use std::fmt::Write;

use crate::audit::{Audit, DomainAudit};
use util::html::{COLORS, escape};

/// Grouped horizontal bars: for each row, one bar per series (values in 0..=1).
fn share_bars(rows: &[(String, Vec<f64>)], series: &[&str]) -> String {
    let (row_h, bar_h, left, width) = (14.0 * series.len() as f64 + 12.0, 12.0, 120.0, 420.0);
    let height = row_h * rows.len() as f64 + 30.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        left + width + 60.0
    );
    for (r, (label, values)) in rows.iter().enumerate() {
        let y0 = r as f64 * row_h + 4.0;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + row_h / 2.0,
            escape(label)
        );
        for (s, v) in values.iter().enumerate() {
            let y = y0 + s as f64 * (bar_h + 2.0);
            let w = (v.clamp(0.0, 1.0) * width).max(0.5);
            let _ = write!(
                svg,
                r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{bar_h}" fill="{}"/>"#,
                COLORS[s % COLORS.len()]
            );
            let _ =
                write!(svg, r#"<text x="{:.1}" y="{:.1}">{:.1}%</text>"#, left + w + 4.0, y + bar_h - 2.0, 100.0 * v);
        }
    }
    let legend_y = height - 8.0;
    for (s, name) in series.iter().enumerate() {
        let x = left + s as f64 * 110.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{legend_y}">{}</text>"#,
            legend_y - 9.0,
            COLORS[s % COLORS.len()],
            x + 14.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Vertical bars for a histogram.
fn histogram(bins: &[(String, u64)], color: &str) -> String {
    let max = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let (bar_w, height) = (34.0, 120.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="9">"#,
        bar_w * bins.len() as f64 + 10.0,
        height + 40.0
    );
    for (i, (label, n)) in bins.iter().enumerate() {
        let h = height * *n as f64 / max;
        let x = 5.0 + i as f64 * bar_w;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{:.1}" width="{}" height="{h:.1}" fill="{color}"><title>{} tokens: {n} documents</title></rect>"#,
            height - h + 10.0,
            bar_w - 4.0,
            escape(label)
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{n}</text>"#,
            x + bar_w / 2.0 - 2.0,
            height - h + 8.0
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x + bar_w / 2.0 - 2.0,
            height + 24.0,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

pub fn html(audit: &Audit) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<p>{kind} · {docs} documents · {tokens} tokens · long = documents ≥ {long} tokens</p>",
        kind = audit.kind,
        docs = audit.documents,
        tokens = audit.tokens,
        long = audit.long_threshold
    );
    if audit.flags.is_empty() {
        page.push_str(r#"<p class="ok">No flags: overlap, shares and long share are within their targets.</p>"#);
    } else {
        page.push_str("<ul>");
        for f in &audit.flags {
            let _ = write!(page, r#"<li class="flag">{}</li>"#, escape(f));
        }
        page.push_str("</ul>");
    }
    if let (Some(o), Some(floor)) = (audit.overlap, audit.min_overlap) {
        let _ = write!(page, "<p>Overlap with the pre-training distribution: <b>{o:.3}</b> (floor {floor:.3}).</p>");
    }
    let _ = write!(page, "<p>Long-document share: <b>{:.1}%</b> of tokens.</p>", 100.0 * audit.long_share);
    page.push_str("<h2>Domain shares</h2><table><tr><th>domain</th><th>documents</th><th>tokens</th><th>target</th><th>realised</th><th>first 1%</th><th>first 10%</th><th>pre-training</th><th>long share</th></tr>");
    for d in &audit.domains {
        let [t, s, f1, f10, p, l] = d.share_percentages();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{t:.2}%</td><td>{s:.2}%</td><td>{f1:.2}%</td><td>{f10:.2}%</td><td>{p:.2}%</td><td>{l:.1}%</td></tr>",
            escape(&d.name),
            d.documents,
            d.tokens,
        );
    }
    page.push_str("</table>");
    let rows: Vec<(String, Vec<f64>)> = audit
        .domains
        .iter()
        .map(|d| (d.name.clone(), vec![d.target_share, d.share, d.share_first_1pct, d.pretraining_share]))
        .collect();
    page.push_str(&share_bars(&rows, &["target", "realised", "first 1%", "pre-training"]));
    page.push_str("<h2>Scores</h2><table><tr><th>domain</th><th>quality n</th><th>mean</th><th>p10</th><th>p50</th><th>p90</th><th>language score n</th><th>mean</th><th>p10</th><th>p50</th><th>p90</th></tr>");
    for d in &audit.domains {
        let (q, l) = (&d.quality, &d.language_score);
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.name),
            q.count,
            opt(q.mean),
            opt(q.p10),
            opt(q.p50),
            opt(q.p90),
            l.count,
            opt(l.mean),
            opt(l.p10),
            opt(l.p50),
            opt(l.p90)
        );
    }
    page.push_str("</table>");
    if audit.domains.iter().any(|d| d.subset.is_some()) {
        page.push_str("<h2>Selected subsets and buckets</h2><table><tr><th>domain</th><th>what the recipe kept</th><th>score over the draws</th><th>n</th><th>mean</th><th>p10</th><th>p50</th><th>p90</th></tr>");
        for d in audit.domains.iter().filter(|d| d.subset.is_some()) {
            let s = &d.score;
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.name),
                escape(&d.subset.as_ref().map(|s| s.describe()).unwrap_or_default()),
                escape(d.score_column.as_deref().unwrap_or("–")),
                s.count,
                opt(s.mean),
                opt(s.p10),
                opt(s.p50),
                opt(s.p90)
            );
        }
        page.push_str("</table>");
    }
    if audit.domains.iter().any(|d| !d.draws_by_cluster_size.is_empty()) {
        counts_table(&mut page, audit, "Rehydration: draws by dedup cluster size", ["cluster size", "draws"], |d| {
            &d.draws_by_cluster_size
        });
    }
    page.push_str("<h2>Document lengths (tokens)</h2>");
    for (i, d) in audit.domains.iter().enumerate() {
        let _ = write!(page, "<h3>{}</h3>", escape(&d.name));
        page.push_str(&histogram(&d.length_histogram, COLORS[i % COLORS.len()]));
    }
    counts_table(&mut page, audit, "Removed while preparing", ["step: reason", "documents"], |d| &d.removed);
    if audit.domains.iter().any(|d| !d.marked.is_empty()) {
        counts_table(&mut page, audit, "Marked contaminated, kept", ["benchmark", "draws"], |d| &d.marked);
    }
    util::html::page(&format!("midtrain audit: {}", audit.name), &page)
}

/// A table of one row per (domain, key) of a per-domain count map.
fn counts_table(
    page: &mut String,
    audit: &Audit,
    title: &str,
    [key, count]: [&str; 2],
    counts: impl Fn(&DomainAudit) -> &std::collections::BTreeMap<String, u64>,
) {
    let _ = write!(page, "<h2>{title}</h2><table><tr><th>domain</th><th>{key}</th><th>{count}</th></tr>");
    for d in &audit.domains {
        for (k, n) in counts(d) {
            let _ = write!(page, "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>", escape(&d.name), escape(k));
        }
    }
    page.push_str("</table>");
}
