//! A finished run's figures ([`Report`]: printed as a table or as one JSON
//! object, whose keys `bench/compare.py` reads) and the helpers scenarios use
//! to fill it: failure counts, and latency percentiles from an HDR histogram.

use hdrhistogram::Histogram;

/// A finished run's figures, in display order.
pub(super) struct Report {
    title: String,
    rows: Vec<(String, serde_json::Value)>,
}

impl Report {
    pub(super) fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.rows.push((key.to_string(), value.into()));
    }

    /// A two-column text table.
    pub(super) fn table(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("{}\n{}\n", self.title, "-".repeat(self.title.len()));
        for (k, v) in &self.rows {
            let v = match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    let f = n.as_f64().unwrap_or(0.0);
                    if f.abs() >= 100.0 {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.2}")
                    }
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }

    /// The figures as one JSON object.
    pub(super) fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), self.title.clone().into());
        for (k, v) in &self.rows {
            m.insert(k.clone(), v.clone());
        }
        m.into()
    }
}

pub(super) fn summarize_failures(report: &mut Report, failures: &[String]) {
    report.add("failures", failures.len() as u64);
    if let Some(first) = failures.first() {
        report.add("first failure", first.clone());
    }
}

pub(super) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

pub(super) fn add_latency(report: &mut Report, prefix: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        return;
    }
    let ms = |v: u64| v as f64 / 1000.0;
    report.add(&format!("{prefix} p50 (ms)"), ms(h.value_at_quantile(0.50)));
    report.add(&format!("{prefix} p99 (ms)"), ms(h.value_at_quantile(0.99)));
    report.add(
        &format!("{prefix} p99.9 (ms)"),
        ms(h.value_at_quantile(0.999)),
    );
    report.add(&format!("{prefix} max (ms)"), ms(h.max()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_keys_and_table_rounds() {
        let mut r = Report::new("echo x");
        r.add("round trips", 10u64);
        r.add("round trips/s", 1234.5);
        r.add("rtt p50 (ms)", 0.125);
        r.add("first failure", "boom");
        assert_eq!(
            r.json().to_string(),
            r#"{"first failure":"boom","round trips":10,"round trips/s":1234.5,"rtt p50 (ms)":0.125,"scenario":"echo x"}"#
        );
        assert_eq!(
            r.table(),
            "echo x\n------\nround trips    10\nround trips/s  1234\nrtt p50 (ms)   0.12\nfirst failure  boom\n"
        );
    }

    #[test]
    fn latency_rows_only_when_measured() {
        let mut r = Report::new("t");
        add_latency(&mut r, "rtt", &new_histogram());
        assert!(r.rows.is_empty());
        let mut h = new_histogram();
        h.record(1500).unwrap();
        add_latency(&mut r, "rtt", &h);
        let keys: Vec<&str> = r.rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rtt p50 (ms)",
                "rtt p99 (ms)",
                "rtt p99.9 (ms)",
                "rtt max (ms)"
            ]
        );
    }
}
