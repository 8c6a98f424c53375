//! `report.md`: the ablation report people read.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::format::{MetricFormat, seconds};
use crate::record::{AblationInput, RunStatus};
use crate::stats::{Chosen, VariantSummary, Verdict};

/// A chart written next to the report, linked by relative paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChartLink {
    /// Heading and alt text.
    pub title: String,
    /// Relative path of the PNG.
    pub png: String,
    /// Relative path of the SVG.
    pub svg: String,
}

/// Escapes a table cell: pipes would split it and newlines would end the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// Escapes text used inside link brackets or alt text.
fn alt(s: &str) -> String {
    s.replace(['[', ']'], "").replace(['\r', '\n'], " ")
}

fn row<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    out.push('|');
    for c in cells {
        out.push(' ');
        out.push_str(&cell(c.as_ref()));
        out.push_str(" |");
    }
    out.push('\n');
}

/// Header row plus alignment row; `right` marks the numeric columns.
fn header(out: &mut String, cols: &[(&str, bool)]) {
    row(out, &cols.iter().map(|(c, _)| *c).collect::<Vec<_>>());
    out.push('|');
    for (_, right) in cols {
        out.push_str(if *right { "---:|" } else { "---|" });
    }
    out.push('\n');
}

fn verdict_cell(v: Verdict) -> String {
    match v {
        Verdict::Baseline => "—".into(),
        Verdict::Helps => "**helps**".into(),
        Verdict::Hurts => "**hurts**".into(),
        other => other.as_str().into(),
    }
}

/// A p-value for a table cell: three significant digits, `< 0.001` below that.
fn p_cell(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Renders `report.md`.
pub(crate) fn render(
    input: &AblationInput,
    summaries: &[VariantSummary],
    charts: &[ChartLink],
    chosen: Option<&Chosen>,
    warnings: &[String],
) -> String {
    let mut out = String::new();
    let metrics = input.metric_names();
    let primary = &input.primary_metric;
    let count = |s: RunStatus| input.runs.iter().filter(|r| r.status == s).count();
    let seeds: BTreeSet<u64> = input.runs.iter().map(|r| r.seed).collect();
    let direction = if input.higher_is_better {
        "higher"
    } else {
        "lower"
    };

    let _ = writeln!(out, "# {}\n", input.title.trim());
    if let Some(d) = input.description.as_deref().map(str::trim)
        && !d.is_empty()
    {
        let _ = writeln!(out, "{d}\n");
    }
    if !input.overrides.is_empty() {
        let list: Vec<String> = input
            .overrides
            .iter()
            .map(|o| format!("`{}`", o.replace(['\r', '\n'], " ").replace('`', "'")))
            .collect();
        let _ = writeln!(out, "Command-line changes: {}.\n", list.join(", "));
    }
    let cv = input.cross_validation();
    let _ = writeln!(
        out,
        "Ablation of `{}`: {} variants × {} seeds ({} runs: {} ok, {} diverged, {} failed).{} \
         Primary metric: **{}** ({} is better).\n",
        input.pipeline,
        input.variants.len(),
        seeds.len(),
        input.runs.len(),
        count(RunStatus::Ok),
        count(RunStatus::Diverged),
        count(RunStatus::Failed),
        cv.map_or_else(String::new, |(folds, _)| format!(
            " Each run is a k-fold cross-validation of {folds} folds: means, intervals and pairs \
             are over seeds × folds."
        )),
        primary,
        direction,
    );

    for w in warnings {
        let _ = writeln!(out, "> **Warning:** {}\n", w.replace(['\r', '\n'], " "));
    }
    let f = MetricFormat::for_metric(primary, summaries);
    if let Some(c) = chosen {
        let _ = writeln!(out, "## Chosen on validation\n");
        let _ = writeln!(
            out,
            "`{}` has the best mean validation {primary} ({}, 95 % CI {}). **Its test {primary}: \
             {}, 95 % CI {}** over {} runs: the number to quote for this choice. Every table and \
             chart below is on the validation split; the other variants' test numbers are not \
             shown (they are in `ablation.json`), since the best of several test numbers \
             overstates what the chosen variant will do.\n",
            c.variant,
            f.mean_sd(&c.validation),
            f.interval(c.validation.ci95),
            f.mean_sd(&c.test),
            f.interval(c.test.ci95),
            c.test.n,
        );
        let _ = writeln!(out, "## {primary} by variant (validation split)\n");
    } else {
        let _ = writeln!(out, "## {primary} by variant\n");
    }
    header(
        &mut out,
        &[
            ("variant", false),
            ("change", false),
            ("n", true),
            ("mean ± sd", true),
            ("95 % CI", true),
            ("Δ vs baseline", true),
            ("Δ 95 % CI", true),
            ("pairs", true),
            ("p (Holm)", true),
            ("verdict", false),
            ("unadjusted", false),
            ("diverged", true),
            ("failed", true),
            ("mean train time", true),
        ],
    );
    for s in summaries {
        let m = s.metric(primary);
        let value = m.map(|m| m.value);
        let delta = m.and_then(|m| m.delta);
        let description = if s.description.trim().is_empty() && s.verdict == Verdict::Baseline {
            "as configured".to_string()
        } else {
            s.description.clone()
        };
        row(
            &mut out,
            &[
                format!("`{}`", s.name),
                description,
                value.map_or(0, |v| v.n).to_string(),
                value.map_or_else(|| "—".into(), |v| f.mean_sd(&v)),
                value.map_or_else(|| "—".into(), |v| f.interval(v.ci95)),
                delta.map_or_else(String::new, |d| f.delta(&d)),
                delta.map_or_else(String::new, |d| f.delta_interval(d.ci95)),
                delta.map_or_else(String::new, |d| d.n.to_string()),
                s.p_holm.map_or_else(String::new, p_cell),
                verdict_cell(s.verdict),
                if s.verdict == Verdict::Baseline {
                    String::new()
                } else {
                    s.unadjusted.as_str().to_string()
                },
                s.diverged.to_string(),
                s.failed.to_string(),
                seconds(s.mean_train_seconds),
            ],
        );
    }
    let (units, interval, pairs) = match cv {
        None => (
            "the runs that finished ok".to_string(),
            "Student t interval of the mean over seeds".to_string(),
            "the seeds",
        ),
        Some((_, ratio)) => (
            "the folds of the runs that finished ok (seeds × folds)".to_string(),
            format!(
                "Student t interval of the mean over seeds × folds, its standard error widened \
                 for the folds' overlapping training rows (Nadeau and Bengio's correction, as in \
                 Bouckaert and Frank's corrected repeated k-fold test: sd · √(1/n + n₂/n₁), with \
                 n₂/n₁ = {ratio:.3} test rows per training row); without it the intervals would \
                 be too narrow"
            ),
            "the (seed, fold) pairs",
        ),
    };
    let _ = writeln!(
        out,
        "\n*n* counts {units}; diverged and failed runs are left out of means \
         and intervals. 95 % CI: {interval}. Δ: the paired \
         difference variant − baseline over {pairs} where both finished ok (*pairs*), with a \
         paired-t 95 % interval{}. The verdict says whether the variant's change helps or hurts \
         {primary} compared with the baseline ({direction} is better), adjusted for comparing \
         {} variants at once: *p (Holm)* is the paired t test's two-sided p-value after Holm's \
         step-down adjustment, and the verdict is *helps* or *hurts* only when it is below 0.05, \
         so the chance of any false verdict in this table stays at 5 %. *Unadjusted* is the \
         verdict of the variant's own interval of Δ (*no clear effect* when it contains 0). Both \
         need at least 2 pairs. Mean train time is over the ok runs.\n",
        if f.percent {
            "; pp = percentage points"
        } else {
            ""
        },
        summaries.iter().filter(|s| s.p_value.is_some()).count(),
    );

    let flagged: Vec<&VariantSummary> = summaries
        .iter()
        .filter(|s| !s.secondary.is_empty())
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            out,
            "## Worth a look
"
        );
        for s in flagged {
            let changes: Vec<String> = s
                .secondary
                .iter()
                .map(|e| {
                    let f = MetricFormat::for_metric(&e.metric, summaries);
                    format!(
                        "{} is clearly {} (Δ {}, 95 % CI {})",
                        e.metric,
                        if e.better { "better" } else { "worse" },
                        f.delta(&e.delta),
                        f.delta_interval(e.delta.ci95)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "- `{}`: no clear effect on {primary}, but {}.",
                s.name,
                changes.join("; ")
            );
        }
        let _ = writeln!(
            out,
            "\nThese are other metrics whose paired 95 % interval excludes 0 while {primary} \
             shows no clear effect (not adjusted for multiplicity: a prompt to look, not a \
             verdict).\n"
        );
    }

    let others: Vec<&String> = metrics.iter().filter(|m| *m != primary).collect();
    if !others.is_empty() {
        let _ = writeln!(out, "## Other metrics\n");
        for m in others {
            let f = MetricFormat::for_metric(m, summaries);
            let _ = writeln!(out, "### {m}\n");
            header(
                &mut out,
                &[
                    ("variant", false),
                    ("n", true),
                    ("mean ± sd", true),
                    ("95 % CI", true),
                    ("Δ vs baseline", true),
                    ("Δ 95 % CI", true),
                ],
            );
            for s in summaries {
                let Some(ms) = s.metric(m) else { continue };
                row(
                    &mut out,
                    &[
                        format!("`{}`", s.name),
                        ms.value.n.to_string(),
                        f.mean_sd(&ms.value),
                        f.interval(ms.value.ci95),
                        ms.delta.map_or_else(String::new, |d| f.delta(&d)),
                        ms.delta
                            .map_or_else(String::new, |d| f.delta_interval(d.ci95)),
                    ],
                );
            }
            out.push('\n');
        }
    }

    if !charts.is_empty() {
        let _ = writeln!(out, "## Charts\n");
        for c in charts {
            let _ = writeln!(
                out,
                "### {}\n\n![{}]({})\n\n[SVG version]({})\n",
                c.title,
                alt(&c.title),
                c.png,
                c.svg
            );
        }
    }

    let _ = writeln!(out, "## Runs\n");
    let mut cols: Vec<(&str, bool)> = vec![("variant", false), ("seed", true), ("status", false)];
    cols.extend(metrics.iter().map(|m| (m.as_str(), true)));
    cols.extend([("train time", true), ("message", false)]);
    header(&mut out, &cols);
    let formats: Vec<MetricFormat> = metrics
        .iter()
        .map(|m| MetricFormat::for_metric(m, summaries))
        .collect();
    for r in input.sorted_runs() {
        let mut cells = vec![format!("`{}`", r.variant), r.seed.to_string()];
        cells.push(match r.status {
            RunStatus::Ok => "ok".into(),
            other => format!("**{other}**"),
        });
        for (m, f) in metrics.iter().zip(&formats) {
            cells.push(match r.metrics.get(m) {
                Some(v) if v.is_finite() => format!("{}{}", f.num(*v), f.unit()),
                Some(_) => "non-finite".into(),
                None => "—".into(),
            });
        }
        cells.push(seconds(Some(r.train_seconds)));
        cells.push(r.message.clone().unwrap_or_default());
        row(&mut out, &cells);
    }

    if !input.notes.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for n in &input.notes {
            let _ = writeln!(out, "- {}", n.replace(['\r', '\n'], " "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        let mut s = String::new();
        header(&mut s, &[("x", false), ("n", true)]);
        assert_eq!(s, "| x | n |\n|---|---:|\n");
    }
}
