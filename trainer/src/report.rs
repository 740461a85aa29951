//! Run reports as self-contained HTML pages (inline SVG, no scripts): one run's loss, LR,
//! gradient norm, noise scale, throughput and per-domain held-out curves, or several runs
//! overlaid (`compare`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use util::html::{COLORS, escape, page};

use crate::passkey::PasskeyGrid;
use crate::tasks::TaskScores;
use crate::train::records::ShortChange;
use crate::train::{EvalRecord, Metrics, StepRecord, read_metrics};

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart of several series; `log_y` plots log10(y).
pub fn line_chart(title: &str, x_label: &str, series: &[Series], log_y: bool) -> String {
    let (w, h, left, bottom, top) = (560.0, 240.0, 60.0, 34.0, 24.0);
    let transform = |y: f64| if log_y { y.max(1e-12).log10() } else { y };
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(x, y)| (x, transform(y))))
        .filter(|p| p.1.is_finite())
        .collect();
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11"><text x="{left}" y="14" font-weight="bold">{}</text>"#,
        w + left + 150.0,
        h + top + bottom,
        escape(title)
    );
    if points.is_empty() {
        svg.push_str(r#"<text x="80" y="60">no data</text></svg>"#);
        return svg;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * w;
    let py = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * h;
    let _ = write!(svg, r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#bbb"/>"##);
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        let label = if log_y { format!("{:.3e}", 10f64.powf(y)) } else { format!("{y:.4}") };
        let _ = write!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#, left - 4.0, py(y) + 4.0);
        let x = x0 + (x1 - x0) * k as f64 / 4.0;
        let _ = write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{x:.0}</text>"#, px(x), top + h + 14.0);
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + w / 2.0,
        top + h + 30.0,
        escape(x_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let visible: Vec<(f64, f64)> =
            s.points.iter().map(|&(x, y)| (px(x), py(transform(y)))).filter(|p| p.1.is_finite()).collect();
        if let [(x, y)] = visible[..] {
            let _ = write!(svg, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#);
        }
        let path: Vec<String> = visible.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ =
            write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            left + w + 12.0,
            top + 14.0 * i as f64,
            left + w + 26.0,
            top + 14.0 * i as f64 + 9.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A grid of values in [0, 1] as coloured cells (passkey accuracy by length × depth).
pub fn heat_map(title: &str, rows: &[String], columns: &[String], values: &[Vec<f64>]) -> String {
    let (cell, left, top) = (46.0, 70.0, 40.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11"><text x="4" y="14" font-weight="bold">{}</text>"#,
        left + cell * columns.len() as f64 + 10.0,
        top + cell * rows.len() as f64 + 10.0,
        escape(title)
    );
    for (j, c) in columns.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            left + cell * (j as f64 + 0.5),
            top - 6.0,
            escape(c)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + cell * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + cell / 2.0 + 4.0,
            escape(r)
        );
        for (j, &v) in values[i].iter().enumerate() {
            // Red (0) to green (1).
            let (red, green) = ((220.0 * (1.0 - v)) as u8 + 30, (180.0 * v) as u8 + 50);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{cell}" height="{cell}" fill="rgb({red},{green},70)" stroke="white"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="white">{:.0}%</text>"#,
                left + cell * j as f64,
                left + cell * (j as f64 + 0.5),
                y + cell / 2.0 + 4.0,
                100.0 * v
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn step_series(name: &str, steps: &[StepRecord], f: impl Fn(&StepRecord) -> Option<f64>) -> Series {
    Series { name: name.into(), points: steps.iter().filter_map(|r| f(r).map(|y| (r.step as f64, y))).collect() }
}

/// Held-out loss per domain against the step.
fn eval_series(evals: &[EvalRecord]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for e in evals {
        for (domain, &loss) in &e.eval {
            let point = (e.step as f64, loss);
            match out.iter_mut().find(|s| s.name == *domain) {
                Some(s) => s.points.push(point),
                None => out.push(Series { name: domain.clone(), points: vec![point] }),
            }
        }
    }
    out
}

/// Mean over domains of an evaluation's loss by position: (position of the bucket start, loss).
fn position_curve(record: &EvalRecord) -> Option<Vec<(f64, f64)>> {
    let by_position = record.loss_by_position.as_ref()?;
    let n = by_position.loss.values().map(Vec::len).max()?;
    Some(
        (0..n)
            .filter_map(|k| {
                let losses = by_position.loss.values().filter_map(|d| d.get(k).copied().flatten());
                let mean = crate::train::records::mean(losses)?;
                Some(((k * by_position.bucket) as f64, mean))
            })
            .collect(),
    )
}

/// Mean passkey accuracy per length: (length, accuracy).
fn passkey_by_length(grid: &PasskeyGrid) -> Vec<(f64, f64)> {
    grid.lengths
        .iter()
        .zip(&grid.accuracy)
        .map(|(&length, row)| (length as f64, row.iter().sum::<f64>() / row.len().max(1) as f64))
        .collect()
}

fn passkey_heat_map(record: &EvalRecord) -> Option<String> {
    let grid = record.passkey.as_ref()?;
    let rows: Vec<String> = grid.lengths.iter().map(|l| l.to_string()).collect();
    let columns: Vec<String> = grid.depths.iter().map(|d| format!("{:.0}%", 100.0 * d)).collect();
    let title = format!(
        "passkey accuracy, {} {} (step {}): length (rows) × depth (columns)",
        record.stage,
        record.when.as_str(),
        record.step
    );
    Some(heat_map(&title, &rows, &columns, &grid.accuracy))
}

/// `[eval.tasks]` scores: accuracy against the step, and a table of every evaluation's scores
/// (accuracy ± standard error, or perplexity and bits per byte).
fn task_section(evals: &[EvalRecord]) -> String {
    let scored: Vec<(&EvalRecord, &std::collections::BTreeMap<String, TaskScores>)> =
        evals.iter().filter_map(|e| e.tasks.as_ref().map(|t| (e, t))).collect();
    let mut names: Vec<&String> = scored.iter().flat_map(|(_, t)| t.keys()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return String::new();
    }
    let series: Vec<Series> = names
        .iter()
        .map(|name| Series {
            name: (*name).clone(),
            points: scored.iter().filter_map(|(e, t)| Some((e.step as f64, t.get(*name)?.acc?))).collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let mut out = String::new();
    if !series.is_empty() {
        out.push_str(&line_chart("task accuracy (acc)", "step", &series, false));
    }
    out.push_str("<h2>Task scores</h2><table><tr><th>evaluation</th>");
    for name in &names {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    out.push_str("</tr>");
    for (e, tasks) in &scored {
        let _ = write!(out, "<tr><td>{} {} (step {})</td>", escape(&e.stage), e.when.as_str(), e.step);
        for name in &names {
            let cell = match tasks.get(*name) {
                Some(TaskScores { acc: Some(acc), stderr, acc_norm, .. }) => format!(
                    "acc {:.1}%{}{}",
                    100.0 * acc,
                    stderr.map_or(String::new(), |s| format!(" ± {:.1}", 100.0 * s)),
                    acc_norm.map_or(String::new(), |a| format!(" · norm {:.1}%", 100.0 * a))
                ),
                Some(TaskScores { perplexity: Some(ppl), bits_per_byte, .. }) => {
                    format!("ppl {ppl:.2}{}", bits_per_byte.map_or(String::new(), |b| format!(" · {b:.3} bits/byte")))
                }
                _ => "–".into(),
            };
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// The report of one run folder: charts, a summary table, the short-context check of each
/// stage, loss by position, passkey heat maps and task scores.
pub fn run_report(run: &Path) -> Result<String> {
    let Metrics { steps, evals } = read_metrics(run)?;
    let mut body = String::new();
    let last = steps.last();
    let spikes: Vec<u64> = steps.iter().filter(|r| r.spike).map(|r| r.step).collect();
    let _ = write!(
        body,
        "<table><tr><th>steps</th><th>tokens</th><th>final loss</th><th>median tokens/s</th><th>last GNS (tokens)</th><th>loss spikes</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr></table>",
        steps.len(),
        last.map_or(0, |r| r.tokens),
        last.map_or("–".into(), |r| format!("{:.4}", r.loss)),
        median(steps.iter().map(|r| r.tokens_per_s).collect()).map_or("–".into(), |v| format!("{v:.0}")),
        steps.iter().rev().find_map(|r| r.gns).map_or("–".into(), |v| format!("{v:.0}")),
        if spikes.is_empty() { "" } else { "flag" },
        if spikes.is_empty() { "none".to_string() } else { format!("at steps {spikes:?}") },
    );
    body.push_str(&line_chart("training loss", "step", &[step_series("loss", &steps, |r| Some(r.loss))], false));
    body.push_str(&line_chart("held-out loss by domain", "step", &eval_series(&evals), false));
    body.push_str(&line_chart("learning rate", "step", &[step_series("lr", &steps, |r| Some(r.lr))], false));
    body.push_str(&line_chart(
        "gradient norm (before clipping)",
        "step",
        &[step_series("grad norm", &steps, |r| Some(r.grad_norm))],
        true,
    ));
    body.push_str(&line_chart(
        "gradient noise scale B_simple (tokens)",
        "step",
        &[step_series("B_simple", &steps, |r| r.gns)],
        true,
    ));
    body.push_str(&line_chart(
        "throughput (tokens/s)",
        "step",
        &[step_series("tokens/s", &steps, |r| Some(r.tokens_per_s))],
        false,
    ));
    let checks: Vec<(&EvalRecord, usize, ShortChange)> =
        evals.iter().filter_map(|e| e.short.as_ref().and_then(|s| Some((e, s.seq_len, s.against_start?)))).collect();
    if !checks.is_empty() {
        body.push_str("<h2>Short-context loss across stages</h2><table><tr><th>stage</th><th>short seq_len</th><th>loss change</th><th>degraded</th></tr>");
        for (e, seq_len, check) in checks {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{seq_len}</td><td>{:+.2}%</td><td class=\"{}\">{}</td></tr>",
                escape(&e.stage),
                100.0 * check.change,
                if check.degraded { "flag" } else { "" },
                if check.degraded { "yes" } else { "no" }
            );
        }
        body.push_str("</table>");
    }
    let curves: Vec<Series> = evals
        .iter()
        .filter_map(|e| {
            let name = format!("{} {} (step {})", e.stage, e.when.as_str(), e.step);
            position_curve(e).map(|points| Series { name, points })
        })
        .collect();
    if !curves.is_empty() {
        body.push_str(&line_chart(
            "held-out loss by position in the document (start and end of each stage)",
            "position",
            &curves,
            false,
        ));
    }
    for map in evals.iter().filter_map(passkey_heat_map) {
        body.push_str(&map);
    }
    body.push_str(&task_section(&evals));
    Ok(page(&format!("midtrain run {}", run.display()), &body))
}

/// Several runs overlaid: loss, held-out loss (mean over domains) and LR against tokens.
pub fn compare_report(runs: &[PathBuf]) -> Result<String> {
    let mut loss = Vec::new();
    let mut lr = Vec::new();
    let mut heldout = Vec::new();
    let mut positions = Vec::new();
    let mut passkeys = Vec::new();
    let mut table = String::from(
        "<table><tr><th>run</th><th>steps</th><th>tokens</th><th>final loss</th><th>final held-out (mean)</th><th>final passkey accuracy</th></tr>",
    );
    for run in runs {
        let Metrics { steps, evals } = read_metrics(run)?;
        let name = run.display().to_string();
        let tokens_at: std::collections::HashMap<u64, u64> = steps.iter().map(|r| (r.step, r.tokens)).collect();
        loss.push(Series { name: name.clone(), points: steps.iter().map(|r| (r.tokens as f64, r.loss)).collect() });
        lr.push(Series { name: name.clone(), points: steps.iter().map(|r| (r.tokens as f64, r.lr)).collect() });
        let points: Vec<(f64, f64)> =
            evals.iter().filter_map(|e| Some((*tokens_at.get(&e.step).unwrap_or(&0) as f64, e.mean_loss()?))).collect();
        if let Some(curve) = evals.iter().rev().find_map(position_curve) {
            positions.push(Series { name: name.clone(), points: curve });
        }
        let passkey = evals.iter().rev().find_map(|e| e.passkey.as_ref()).map(passkey_by_length);
        let passkey_mean =
            passkey.as_ref().filter(|p| !p.is_empty()).map(|p| p.iter().map(|x| x.1).sum::<f64>() / p.len() as f64);
        if let Some(points) = passkey {
            passkeys.push(Series { name: name.clone(), points });
        }
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&name),
            steps.len(),
            steps.last().map_or(0, |r| r.tokens),
            steps.last().map_or("–".into(), |r| format!("{:.4}", r.loss)),
            points.last().map_or("–".into(), |p| format!("{:.4}", p.1)),
            passkey_mean.map_or("–".into(), |m| format!("{:.0}%", 100.0 * m)),
        );
        heldout.push(Series { name, points });
    }
    table.push_str("</table>");
    let mut body = format!(
        "{table}{}{}{}",
        line_chart("training loss", "tokens", &loss, false),
        line_chart("held-out loss (mean over domains)", "tokens", &heldout, false),
        line_chart("learning rate", "tokens", &lr, false)
    );
    if !positions.is_empty() {
        body.push_str(&line_chart("held-out loss by position (last evaluation)", "position", &positions, false));
    }
    if !passkeys.is_empty() {
        body.push_str(&line_chart(
            "passkey accuracy by length (last evaluation, mean over depths)",
            "length",
            &passkeys,
            false,
        ));
    }
    Ok(page("midtrain: runs compared", &body))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_scale_into_the_frame() {
        let s = Series { name: "a<b".into(), points: vec![(0.0, 1.0), (10.0, 3.0)] };
        let svg = line_chart("t", "step", &[s], false);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains(r#"points="60.0,264.0 620.0,24.0""#), "{svg}");
        assert!(line_chart("t", "x", &[], false).contains("no data"));
        let map = heat_map("passkey", &["256".into()], &["0%".into(), "50%".into()], &[vec![1.0, 0.0]]);
        assert!(map.contains("100%") && map.contains("rgb(30,230,70)") && map.contains("rgb(250,50,70)"));
    }
}
