//! `midtrain ablate`: anneal one base model on each of several candidate mixes with the same seed
//! and budget, evaluate each on the same tasks, and rank them against the first arm with paired
//! bootstrap intervals (the "microanneal" loop of OLMo 2's Dolmino, Llama 3's annealing
//! ablations).
//!
//! ```toml
//! train = "anneal.toml"            # a train config: its [data] path becomes each arm's mixture
//! base = "../.models/smollm2-135m" # optional: continue this checkpoint instead of its [model]
//! recipe = "mix.toml"              # the arms' recipe unless an arm names its own
//! tasks = ["tasks/math_mc.toml", "tasks/heldout_web.jsonl"]
//! limit = 200                      # items per task
//!
//! [[arm]]
//! name = "baseline"                # the first arm is the baseline
//! [[arm]]
//! name = "more-math"
//! weights = { math = 0.35, web = 0.25 }              # domain weights changed
//! datasets = { web = ["../out/prepared/web-raw"] }   # a domain read from another dataset
//! train = { stage = [{ name = "anneal", tokens = 65536, seq_len = 256, schedule = { decay = { style = "cosine" } } }] }
//! [[arm]]
//! name = "wsd-early-decay"         # decay branched from an earlier arm's stable-phase checkpoint:
//! branch_from = { arm = "baseline", step = 12 }    # its weights, moments and data position
//! train = { stage = [{ name = "decay", tokens = 4096, seq_len = 256, schedule = { decay = { style = "wsd", decay_steps = 4 } } }] }
//! ```
//!
//! OUT/arms/NAME/ holds the arm's recipe and identity (`arm.json`), its mixture, its training run
//! and `eval.json` (written last: an arm with one is finished and is not rerun). OUT/report.json
//! and OUT/report.html hold every arm's realised mix, loss curve, task scores with 95% intervals,
//! differences to the baseline and the ranking.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::model::Llama;
use crate::report::{Series, line_chart};
use crate::tasks::{EvalOptions, Task, TaskKind, evaluate_task};
use crate::train::{ModelSource, TrainConfig, TrainOptions, checkpointer, read_metrics, train};
use util::html::{escape, page};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblatePlan {
    pub train: PathBuf,
    pub base: Option<PathBuf>,
    pub recipe: Option<PathBuf>,
    pub tasks: Vec<PathBuf>,
    /// The tokenizer of the tasks (default: the final checkpoint's tokenizer.json).
    pub tokenizer: Option<PathBuf>,
    pub limit: Option<usize>,
    /// Bootstrap resamples for the intervals.
    #[serde(default = "default_resamples")]
    pub bootstrap: usize,
    #[serde(rename = "arm")]
    pub arms: Vec<Arm>,
}

fn default_resamples() -> usize {
    1000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    pub recipe: Option<PathBuf>,
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    #[serde(default)]
    pub datasets: BTreeMap<String, Vec<PathBuf>>,
    /// Merged into the train config (tables key by key, arrays replaced).
    #[serde(default)]
    pub train: toml::Table,
    /// Start from a checkpoint of an earlier arm instead of the base (a WSD decay branched from
    /// the stable phase); the arm's train config then holds only what follows that step.
    pub branch_from: Option<BranchFrom>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchFrom {
    pub arm: String,
    pub step: u64,
}

impl AblatePlan {
    /// Read a plan; its paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut plan: Self =
            toml::from_str(&text).with_context(|| format!("{}: invalid ablation plan", path.display()))?;
        let base = util::fsutil::config_folder(path)?;
        let resolve = |p: &mut PathBuf| *p = util::fsutil::resolve_against(&base, p);
        resolve(&mut plan.train);
        plan.base.as_mut().map(resolve);
        plan.recipe.as_mut().map(resolve);
        plan.tokenizer.as_mut().map(resolve);
        plan.tasks.iter_mut().for_each(resolve);
        for arm in &mut plan.arms {
            arm.recipe.as_mut().map(resolve);
            arm.datasets.values_mut().flatten().for_each(resolve);
        }
        plan.validate().with_context(|| format!("{}", path.display()))?;
        Ok(plan)
    }

    fn validate(&self) -> Result<()> {
        ensure!(self.arms.len() >= 2, "{} [[arm]]: an ablation compares at least two", self.arms.len());
        ensure!(!self.tasks.is_empty(), "no tasks: the arms are compared on them");
        ensure!(self.bootstrap >= 100, "bootstrap = {}: take at least 100 resamples", self.bootstrap);
        for (i, arm) in self.arms.iter().enumerate() {
            ensure!(
                !arm.name.is_empty() && arm.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "arm {i}: name {:?} must be letters, digits, - _ . (it names a folder)",
                arm.name
            );
            ensure!(!self.arms[..i].iter().any(|a| a.name == arm.name), "two arms are named {:?}", arm.name);
            ensure!(
                arm.recipe.is_some() || self.recipe.is_some(),
                "arm {:?} has no recipe, and the plan names none",
                arm.name
            );
            if let Some(from) = &arm.branch_from {
                ensure!(
                    self.arms[..i].iter().any(|a| a.name == from.arm),
                    "arm {:?}: branch_from names {:?}, which is not an earlier arm (arms run in order)",
                    arm.name,
                    from.arm
                );
            }
        }
        Ok(())
    }
}

/// What `ablate` reports while it works.
pub enum AblateEvent<'a> {
    Arm { name: &'a str, step: &'a str },
    Train(crate::train::Event<'a>),
}

/// The per-item values of one task for one arm: the task's metric is `Σ values / Σ weights`
/// (accuracy: 1/0 per item, weight 1; loss: negative log-probability, weight its tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ItemValues {
    kind: TaskKind,
    higher_is_better: bool,
    values: Vec<f64>,
    weights: Vec<f64>,
    /// The task's other scores over the same items (acc_norm; bits per byte), which get
    /// intervals too but do not rank (absent in an `eval.json` from before they were kept).
    #[serde(default)]
    more: Vec<MetricValues>,
}

impl ItemValues {
    fn metric_name(&self) -> &'static str {
        if self.higher_is_better { "acc" } else { "loss" }
    }
}

/// Another metric of a task's items, `Σ values / Σ weights` as well.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MetricValues {
    metric: String,
    values: Vec<f64>,
    weights: Vec<f64>,
}

/// `eval.json` of an arm.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ArmEval {
    identity: serde_json::Value,
    checkpoint: PathBuf,
    scores: BTreeMap<String, crate::tasks::TaskScores>,
    items: BTreeMap<String, ItemValues>,
}

/// A number with its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArmTask {
    /// The metric that ranks (acc, or loss).
    pub metric: String,
    pub n: usize,
    pub score: Interval,
    /// This arm minus the baseline, paired over items (`None` for the baseline).
    pub vs_baseline: Option<Interval>,
    /// The task's other scores (acc_norm; bits_per_byte; perplexity, the loss's exponential),
    /// each with its interval and difference to the baseline on the same resamples.
    #[serde(default)]
    pub more: Vec<MetricScore>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricScore {
    pub metric: String,
    pub score: Interval,
    pub vs_baseline: Option<Interval>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArmReport {
    pub name: String,
    pub skipped: bool,
    /// Realised share of each domain in the arm's mixture (and the planned one).
    pub mix: Vec<(String, f64, f64)>,
    /// Tokens in the arm's mixture (what its training drew from).
    pub mixture_tokens: u64,
    /// Tokens the arm trained on (a branch: from its branch point on).
    pub trained_tokens: u64,
    pub final_loss: Option<f64>,
    pub tasks: BTreeMap<String, ArmTask>,
    /// 1 = best: by the mean over tasks of the arm's rank on each.
    pub rank: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AblateReport {
    pub baseline: String,
    pub arms: Vec<ArmReport>,
}

/// Run every arm not yet finished, then write OUT/report.json and OUT/report.html.
pub fn ablate(plan: &AblatePlan, out: &Path, on_event: &mut dyn FnMut(AblateEvent)) -> Result<AblateReport> {
    let tasks: Vec<Task> = plan.tasks.iter().map(|t| Task::load(t, plan.limit)).collect::<Result<_>>()?;
    let mut evals = Vec::new();
    let mut skipped = Vec::new();
    for arm in &plan.arms {
        let dir = out.join("arms").join(&arm.name);
        let branch_from = arm
            .branch_from
            .as_ref()
            .map(|from| branch_checkpoint(out, from))
            .transpose()
            .with_context(|| format!("arm {:?}", arm.name))?;
        let (eval, was_done) =
            run_arm(plan, arm, branch_from, &tasks, &dir, on_event).with_context(|| format!("arm {:?}", arm.name))?;
        evals.push(eval);
        skipped.push(was_done);
    }
    let report = compare(plan, out, &evals, &skipped)?;
    util::fsutil::write_atomic(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    let steps_of =
        |arm: &str| read_metrics(&out.join("arms").join(arm).join("run")).map(|m| m.steps).unwrap_or_default();
    let curves: Vec<Series> = plan
        .arms
        .iter()
        .map(|arm| {
            // A branch's tokens count from its branch point: draw it from there.
            let offset = arm
                .branch_from
                .as_ref()
                .map_or(0, |from| steps_of(&from.arm).iter().find(|s| s.step == from.step).map_or(0, |s| s.tokens));
            let points = steps_of(&arm.name).iter().map(|s| ((s.tokens + offset) as f64, s.loss)).collect();
            Series { name: arm.name.clone(), points }
        })
        .collect();
    util::fsutil::write_atomic(&out.join("report.html"), html(&report, &curves).as_bytes())?;
    Ok(report)
}

/// The finished checkpoint `from` names in the earlier arm's run.
fn branch_checkpoint(out: &Path, from: &BranchFrom) -> Result<PathBuf> {
    let saved = checkpointer::list(&out.join("arms").join(&from.arm).join("run"))?;
    if let Some((_, dir)) = saved.iter().find(|(step, _)| *step == from.step) {
        return Ok(dir.clone());
    }
    let steps: Vec<String> = saved.iter().map(|(step, _)| step.to_string()).collect();
    bail!(
        "branch_from: arm {:?} saved no checkpoint at step {} (it saved steps [{}]): set its checkpoint_every \
         so that it saves that step, or branch from one of these",
        from.arm,
        from.step,
        steps.join(", ")
    )
}

fn run_arm(
    plan: &AblatePlan,
    arm: &Arm,
    branch_from: Option<PathBuf>,
    tasks: &[Task],
    dir: &Path,
    on_event: &mut dyn FnMut(AblateEvent),
) -> Result<(ArmEval, bool)> {
    let say = |on_event: &mut dyn FnMut(AblateEvent), step: &str| on_event(AblateEvent::Arm { name: &arm.name, step });
    let mut recipe = mixtures::recipe::Recipe::load(arm.recipe.as_ref().or(plan.recipe.as_ref()).expect("validated"))?;
    for (domain, weight) in &arm.weights {
        let Some(d) = recipe.domains.iter_mut().find(|d| d.name == *domain) else {
            bail!("weights: the recipe {:?} has no domain {domain:?}", recipe.name)
        };
        d.weight = *weight;
    }
    for (domain, datasets) in &arm.datasets {
        let Some(d) = recipe.domains.iter_mut().find(|d| d.name == *domain) else {
            bail!("datasets: the recipe {:?} has no domain {domain:?}", recipe.name)
        };
        d.datasets = datasets.clone();
    }
    let identity = serde_json::json!({
        "recipe": recipe, "train": plan.train, "train_overrides": arm.train, "base": plan.base,
        "branch_from": arm.branch_from, "tasks": plan.tasks, "tokenizer": plan.tokenizer, "limit": plan.limit,
    });
    let eval_path = dir.join("eval.json");
    if eval_path.is_file() {
        let done: ArmEval = serde_json::from_slice(&std::fs::read(&eval_path)?)
            .with_context(|| format!("{}: unreadable", eval_path.display()))?;
        ensure!(
            done.identity == identity,
            "{} was finished with other settings; choose another --out, or remove the arm's folder to rerun it",
            dir.display()
        );
        say(on_event, "finished before: skipped");
        return Ok((done, true));
    }
    let arm_json = dir.join("arm.json");
    if arm_json.is_file() {
        let before: serde_json::Value = serde_json::from_slice(&std::fs::read(&arm_json)?)?;
        ensure!(
            before == identity,
            "{} holds an unfinished arm with other settings; choose another --out, or remove the folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    util::fsutil::write_atomic(&arm_json, serde_json::to_string_pretty(&identity)?.as_bytes())?;

    let mixture = dir.join("mixture");
    if !mixture.join("mixture.json").is_file() {
        say(on_event, "building its mixture");
        let planned = mixtures::plan::plan(&recipe)?;
        mixtures::build::build(&planned, &mixture)?;
    }
    let mut config = TrainConfig::load_with(&plan.train, &arm.train)?;
    config.data.path = mixture;
    if let Some(base) = &plan.base {
        config.model.source = ModelSource::Checkpoint(base.clone());
    }
    say(on_event, "training");
    let run = dir.join("run");
    let options = TrainOptions { branch_from, ..Default::default() };
    train(&config, &run, &options, &mut |e| on_event(AblateEvent::Train(e)))?;
    let (_, checkpoint) =
        checkpointer::list(&run)?.pop().context("the run wrote no checkpoint: is its budget below one step?")?;

    say(on_event, "evaluating");
    let tokenizer_path = plan.tokenizer.clone().unwrap_or_else(|| checkpoint.join("tokenizer.json"));
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (name the tasks' tokenizer with `tokenizer = ...` in the plan)",
            tokenizer_path.display()
        )
    })?;
    let mut model = Llama::load(&checkpoint, &candle_core::Device::Cpu)?;
    let (mut scores, mut items) = (BTreeMap::new(), BTreeMap::new());
    for task in tasks {
        let (s, results) = evaluate_task(&mut model, &tokenizer, task, &EvalOptions::default(), &mut |_, _| {})?;
        items.insert(task.name.clone(), item_values(task.kind, &results));
        scores.insert(task.name.clone(), s);
    }
    let eval = ArmEval { identity, checkpoint, scores, items };
    util::fsutil::write_atomic(&eval_path, serde_json::to_string(&eval)?.as_bytes())?;
    Ok((eval, false))
}

fn item_values(kind: TaskKind, results: &[crate::tasks::ItemResult]) -> ItemValues {
    let ones = vec![1.0; results.len()];
    let hits = |pred: fn(&crate::tasks::ItemResult) -> Option<usize>| -> Vec<f64> {
        results.iter().map(|r| f64::from(u8::from(pred(r) == r.gold))).collect()
    };
    let nats: Vec<f64> = results.iter().map(|r| -r.log_probs.iter().sum::<f64>()).collect();
    match kind {
        TaskKind::MultipleChoice => ItemValues {
            kind,
            higher_is_better: true,
            values: hits(|r| r.pred),
            weights: ones.clone(),
            more: vec![MetricValues { metric: "acc_norm".into(), values: hits(|r| r.pred_norm), weights: ones }],
        },
        TaskKind::Loglikelihood | TaskKind::Perplexity => ItemValues {
            kind,
            higher_is_better: false,
            values: nats.clone(),
            weights: results.iter().map(|r| r.tokens.iter().sum::<usize>() as f64).collect(),
            more: vec![MetricValues {
                metric: "bits_per_byte".into(),
                values: nats.iter().map(|n| n / std::f64::consts::LN_2).collect(),
                weights: results.iter().map(|r| r.bytes.unwrap_or(0) as f64).collect(),
            }],
        },
    }
}

/// `Σ values / Σ weights` over the items `pick` lists.
fn ratio(values: &[f64], weights: &[f64], pick: &[usize]) -> f64 {
    let (s, w) = pick.iter().fold((0.0, 0.0), |(s, w), &i| (s + values[i], w + weights[i]));
    if w > 0.0 { s / w } else { f64::NAN }
}

fn metric(v: &ItemValues, pick: &[usize]) -> f64 {
    ratio(&v.values, &v.weights, pick)
}

/// A score's interval over the resamples and, for an arm other than the baseline, its paired
/// difference to the baseline: `at(pick, baseline)` is the score on the items `pick` lists, of
/// the baseline when `baseline` is true, else of the arm.
fn scored(
    at: impl Fn(&[usize], bool) -> f64,
    n: usize,
    draws: &[Vec<usize>],
    against_baseline: bool,
) -> (Interval, Option<Interval>) {
    let all: Vec<usize> = (0..n).collect();
    let score = interval(at(&all, false), draws.iter().map(|d| at(d, false)).collect());
    let vs_baseline = against_baseline.then(|| {
        let diff = |d: &[usize]| at(d, false) - at(d, true);
        interval(diff(&all), draws.iter().map(|d| diff(d)).collect())
    });
    (score, vs_baseline)
}

/// Bootstrap resamples of `n` item indices, seeded by the task's position.
fn resamples(n: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xAB1A7E;
    (0..count).map(|_| (0..n).map(|_| (util::rng::splitmix64(&mut state) % n as u64) as usize).collect()).collect()
}

/// The value on all items and the 2.5th–97.5th percentiles over the resamples.
fn interval(all: f64, mut stats: Vec<f64>) -> Interval {
    stats.retain(|v| v.is_finite());
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats.get(((stats.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    Interval { value: all, low: at(0.025), high: at(0.975) }
}

fn compare(plan: &AblatePlan, out: &Path, evals: &[ArmEval], skipped: &[bool]) -> Result<AblateReport> {
    let names: Vec<&String> = evals[0].items.keys().collect();
    let mut arms: Vec<ArmReport> = Vec::new();
    for (k, (arm, eval)) in plan.arms.iter().zip(evals).enumerate() {
        let dir = out.join("arms").join(&arm.name);
        let mixture: mixtures::build::Mixture =
            serde_json::from_slice(&std::fs::read(dir.join("mixture/mixture.json"))?).context("mixture.json")?;
        let mix = mixture
            .domains
            .iter()
            .map(|d| (d.name.clone(), d.tokens as f64 / mixture.tokens.max(1) as f64, d.share))
            .collect();
        let last_step = read_metrics(&dir.join("run")).ok().and_then(|m| m.steps.last().cloned());
        let final_loss = last_step.as_ref().map(|s| s.loss);
        let mut tasks = BTreeMap::new();
        for (t, name) in names.iter().enumerate() {
            let (mine, base) = (&eval.items[*name], &evals[0].items[*name]);
            ensure!(mine.values.len() == base.values.len(), "task {name}: arms scored different items");
            let n = mine.values.len();
            let draws = resamples(n, plan.bootstrap, t as u64);
            let pick = |baseline: bool| if baseline { base } else { mine };
            let (score, vs_baseline) = scored(|d, b| metric(pick(b), d), n, &draws, k > 0);
            let mut more = Vec::new();
            if !mine.higher_is_better {
                // Perplexity is the loss's exponential: its interval is the loss's, mapped.
                let (score, vs_baseline) = scored(|d, b| metric(pick(b), d).exp(), n, &draws, k > 0);
                more.push(MetricScore { metric: "perplexity".into(), score, vs_baseline });
            }
            for other in &mine.more {
                // Paired with the baseline's same metric (an older eval.json may lack it).
                let Some(theirs) = base.more.iter().find(|m| m.metric == other.metric) else { continue };
                let at = |d: &[usize], b: bool| {
                    let m = if b { theirs } else { other };
                    ratio(&m.values, &m.weights, d)
                };
                let (score, vs_baseline) = scored(at, n, &draws, k > 0);
                more.push(MetricScore { metric: other.metric.clone(), score, vs_baseline });
            }
            tasks.insert((*name).clone(), ArmTask { metric: mine.metric_name().into(), n, score, vs_baseline, more });
        }
        arms.push(ArmReport {
            name: arm.name.clone(),
            skipped: skipped[k],
            mix,
            mixture_tokens: mixture.tokens,
            trained_tokens: last_step.map_or(0, |s| s.tokens),
            final_loss,
            tasks,
            rank: 0,
        });
    }
    // Rank: each task orders the arms (accuracy down, loss up); arms by their mean position.
    let mut mean_rank = vec![0.0; arms.len()];
    for name in &names {
        let better = evals[0].items[*name].higher_is_better;
        let mut order: Vec<usize> = (0..arms.len()).collect();
        let value = |i: usize| arms[i].tasks[*name].score.value;
        order.sort_by(|&a, &b| if better { value(b).total_cmp(&value(a)) } else { value(a).total_cmp(&value(b)) });
        for (position, &i) in order.iter().enumerate() {
            mean_rank[i] += position as f64 / names.len() as f64;
        }
    }
    let mut by_rank: Vec<usize> = (0..arms.len()).collect();
    by_rank.sort_by(|&a, &b| mean_rank[a].total_cmp(&mean_rank[b]).then(a.cmp(&b)));
    for (r, &i) in by_rank.iter().enumerate() {
        arms[i].rank = r + 1;
    }
    Ok(AblateReport { baseline: plan.arms[0].name.clone(), arms })
}

fn html(report: &AblateReport, curves: &[Series]) -> String {
    let mut body = String::new();
    let fmt = |i: &Interval| format!("{:.4} [{:.4}, {:.4}]", i.value, i.low, i.high);
    let names: Vec<&String> = report.arms[0].tasks.keys().collect();
    body.push_str("<h2>Ranking and task scores</h2><p>Each score with its 95% bootstrap interval over items; Δ is the arm minus the baseline (");
    body.push_str(&escape(&report.baseline));
    body.push_str("), paired over the same items: <span class=\"flag\">flagged</span> where the interval excludes 0.</p><table><tr><th>rank</th><th>arm</th><th>final train loss</th>");
    for name in &names {
        let metric = &report.arms[0].tasks[*name].metric;
        let _ = write!(body, "<th>{} {metric}</th><th>Δ</th>", escape(name));
    }
    body.push_str("</tr>");
    let mut order: Vec<&ArmReport> = report.arms.iter().collect();
    order.sort_by_key(|a| a.rank);
    for arm in order {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            arm.rank,
            escape(&arm.name),
            arm.final_loss.map_or("–".into(), |l| format!("{l:.4}"))
        );
        for name in &names {
            let t = &arm.tasks[*name];
            let delta = t.vs_baseline.as_ref().map_or(("".into(), "baseline".to_string()), |d| {
                (
                    if d.excludes_zero() { "flag" } else { "" }.to_string(),
                    format!("{:+.4} [{:+.4}, {:+.4}]", d.value, d.low, d.high),
                )
            });
            let _ = write!(body, "<td>{} (n {})</td><td class=\"{}\">{}</td>", fmt(&t.score), t.n, delta.0, delta.1);
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    body.push_str(
        "<h2>The other scores</h2><p>The same items, resamples and pairing; these do not rank.</p>\
         <table><tr><th>task</th><th>metric</th><th>arm</th><th>score</th><th>Δ</th></tr>",
    );
    for name in &names {
        for arm in &report.arms {
            for m in &arm.tasks[*name].more {
                let (class, delta) = m.vs_baseline.as_ref().map_or(("", "baseline".to_string()), |d| {
                    (
                        if d.excludes_zero() { "flag" } else { "" },
                        format!("{:+.4} [{:+.4}, {:+.4}]", d.value, d.low, d.high),
                    )
                });
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{delta}</td></tr>",
                    escape(name),
                    escape(&m.metric),
                    escape(&arm.name),
                    fmt(&m.score)
                );
            }
        }
    }
    body.push_str("</table>");
    body.push_str(&line_chart("training loss by arm", "tokens", curves, false));
    body.push_str(
        "<h2>Realised mix</h2><table><tr><th>arm</th><th>mixture tokens</th><th>trained tokens</th>\
         <th>domains: realised (planned)</th></tr>",
    );
    for arm in &report.arms {
        let shares: Vec<String> = arm
            .mix
            .iter()
            .map(|(d, realised, planned)| format!("{} {:.1}% ({:.1}%)", escape(d), 100.0 * realised, 100.0 * planned))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&arm.name),
            arm.mixture_tokens,
            arm.trained_tokens,
            shares.join(" · ")
        );
    }
    body.push_str(
        "</table><p>The full audit of an arm: <code>midtrain audit OUT/arms/NAME/mixture --html FILE</code>.</p>",
    );
    page("midtrain ablation", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_intervals_are_tighter_than_the_scores_and_zero_for_the_same_items() {
        let base = ItemValues {
            kind: TaskKind::MultipleChoice,
            higher_is_better: true,
            values: (0..200u32).map(|i| f64::from(u8::from(i.is_multiple_of(2)))).collect(),
            weights: vec![1.0; 200],
            more: Vec::new(),
        };
        // The arm gets 20 more items right, the rest the same.
        let mut arm = base.clone();
        for i in (1..40).step_by(2) {
            arm.values[i] = 1.0;
        }
        let draws = resamples(200, 1000, 0);
        let all: Vec<usize> = (0..200).collect();
        let score = interval(metric(&arm, &all), draws.iter().map(|d| metric(&arm, d)).collect());
        assert!((score.value - 0.6).abs() < 1e-12 && score.low < 0.6 && score.high > 0.6);
        let diff = interval(0.1, draws.iter().map(|d| metric(&arm, d) - metric(&base, d)).collect());
        assert!(diff.excludes_zero(), "{diff:?}");
        assert!(diff.high - diff.low < score.high - score.low, "pairing removes the items' own spread");
        let same = interval(0.0, draws.iter().map(|d| metric(&base, d) - metric(&base, d)).collect());
        assert_eq!((same.low, same.high), (0.0, 0.0));
        assert_eq!(resamples(5, 3, 7), resamples(5, 3, 7), "seeded");
    }
}
