//! Collected samples and the final markdown table: medians, ranges and ratios to `direct`.

use std::collections::HashMap;

/// Where the load goes: straight to the backend or through one of the proxies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Target {
    Direct,
    Vaurien,
    VaurienTcp,
    Haproxy,
}

impl Target {
    pub const ALL: [Target; 4] = [
        Target::Direct,
        Target::Vaurien,
        Target::VaurienTcp,
        Target::Haproxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Vaurien => "vaurien",
            Target::VaurienTcp => "vaurien-tcp",
            Target::Haproxy => "haproxy",
        }
    }
}

/// One number from one measurement, with the proxy's CPU cost per unit when it applies.
#[derive(Clone, Debug)]
pub struct Sample {
    pub metric: String,
    pub value: f64,
    pub cpu: Option<(f64, &'static str)>,
}

impl Sample {
    pub fn new(metric: impl Into<String>, value: f64) -> Sample {
        Sample {
            metric: metric.into(),
            value,
            cpu: None,
        }
    }

    /// Adds the proxy CPU cost (when there is a proxy) in `unit`.
    pub fn cpu(mut self, cost: Option<f64>, unit: &'static str) -> Sample {
        self.cpu = cost.map(|c| (c, unit));
        self
    }

    /// Short form for progress lines.
    pub fn brief(samples: &[Sample]) -> String {
        let parts: Vec<String> = samples
            .iter()
            .map(|s| format!("{} {}", s.metric, number(s.value)))
            .collect();
        parts.join(", ")
    }
}

#[derive(Default)]
struct Cell {
    values: Vec<f64>,
    cpu: Vec<f64>,
    cpu_unit: &'static str,
}

/// Everything measured, in the order it was first seen.
#[derive(Default)]
pub struct Results {
    workloads: Vec<String>,
    metrics: HashMap<String, Vec<String>>,
    cells: HashMap<(String, String, Target), Cell>,
    failures: HashMap<(String, Target), Vec<String>>,
}

impl Results {
    pub fn add(&mut self, workload: &str, target: Target, samples: &[Sample]) {
        self.see_workload(workload);
        for s in samples {
            let metrics = self.metrics.entry(workload.to_string()).or_default();
            if !metrics.contains(&s.metric) {
                metrics.push(s.metric.clone());
            }
            let cell = self
                .cells
                .entry((workload.to_string(), s.metric.clone(), target))
                .or_default();
            cell.values.push(s.value);
            if let Some((cost, unit)) = s.cpu {
                cell.cpu.push(cost);
                cell.cpu_unit = unit;
            }
        }
    }

    pub fn fail(&mut self, workload: &str, target: Target, reason: String) {
        self.see_workload(workload);
        self.failures
            .entry((workload.to_string(), target))
            .or_default()
            .push(reason);
    }

    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    fn see_workload(&mut self, workload: &str) {
        if !self.workloads.iter().any(|w| w == workload) {
            self.workloads.push(workload.to_string());
        }
    }

    /// The markdown table: one row per workload, metric and target.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| workload | metric | target | median | min–max | × direct | proxy CPU |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        for w in &self.workloads {
            let metrics = self.metrics.get(w).cloned().unwrap_or_default();
            for m in &metrics {
                for t in Target::ALL {
                    if let Some(row) = self.row(w, m, t) {
                        out.push_str(&row);
                    }
                }
            }
            if metrics.is_empty() {
                for t in Target::ALL {
                    if let Some(reasons) = self.failures.get(&(w.clone(), t)) {
                        out.push_str(&failed_row(w, "—", t, reasons));
                    }
                }
            }
        }
        out
    }

    fn row(&self, w: &str, m: &str, t: Target) -> Option<String> {
        let key = (w.to_string(), m.to_string(), t);
        let cell = self.cells.get(&key);
        if let Some(reasons) = self.failures.get(&(w.to_string(), t)) {
            // A target that failed in any repetition gets no median: it would hide the failure.
            return Some(failed_row(w, m, t, reasons));
        }
        let cell = cell?;
        let med = median(&cell.values);
        let (lo, hi) = range(&cell.values);
        let ratio = match self
            .cells
            .get(&(w.to_string(), m.to_string(), Target::Direct))
        {
            Some(direct) if t != Target::Direct && median(&direct.values) != 0.0 => {
                format!("{:.2}×", med / median(&direct.values))
            }
            _ => "—".to_string(),
        };
        let cpu = if cell.cpu.is_empty() {
            "—".to_string()
        } else {
            format!("{} {}", number(median(&cell.cpu)), cell.cpu_unit)
        };
        Some(format!(
            "| {w} | {m} | {} | {} | {}–{} | {ratio} | {cpu} |\n",
            t.name(),
            number(med),
            number(lo),
            number(hi)
        ))
    }
}

fn failed_row(w: &str, m: &str, t: Target, reasons: &[String]) -> String {
    let reason = reasons.first().map(String::as_str).unwrap_or("unknown");
    let more = if reasons.len() > 1 {
        format!(" (and {} more)", reasons.len() - 1)
    } else {
        String::new()
    };
    let reason = reason.replace('|', "/");
    format!(
        "| {w} | {m} | {} | FAILED: {reason}{more} | — | — | — |\n",
        t.name()
    )
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A number with about three significant digits, no exponent.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
