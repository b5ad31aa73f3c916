//! The one place that formats results. Each benchmark's report fills a [`Section`] (its
//! free-text lines and its table rows) and [`Section::print`] writes it as markdown, so that
//! every summary has the same shape and BENCHMARKS.md can take rows as printed.

use crate::stats::Spread;

/// Other processes' CPU use above which a run is flagged as disturbed, in cores.
pub const QUIET_CORES: f64 = 0.05;

/// The columns of the benchmark summaries.
pub const SUMMARY_COLUMNS: &[Column] = &[
    Column::left("Benchmark"),
    Column::left("Figure"),
    Column::right("Median"),
    Column::right("Spread (min – max)"),
    Column::left("Target"),
    Column::left("Verdict"),
];

pub struct Column {
    name: &'static str,
    right: bool,
}

impl Column {
    pub const fn left(name: &'static str) -> Self {
        Self { name, right: false }
    }
    pub const fn right(name: &'static str) -> Self {
        Self { name, right: true }
    }
}

/// A heading, lines of text, a table, and lines after the table.
pub struct Section {
    title: String,
    columns: &'static [Column],
    notes: Vec<String>,
    rows: Vec<Vec<String>>,
    after: Vec<String>,
}

impl Section {
    pub fn new(title: &str, columns: &'static [Column]) -> Self {
        Self {
            title: title.to_owned(),
            columns,
            notes: Vec::new(),
            rows: Vec::new(),
            after: Vec::new(),
        }
    }

    /// A line printed before the table.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// A line printed after the table.
    pub fn after(&mut self, line: impl Into<String>) {
        self.after.push(line.into());
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        debug_assert_eq!(N, self.columns.len());
        self.rows.push(cells.into());
    }

    /// The row that says how busy the machine was during `label`'s rounds, and a warning line
    /// when it was busy enough to disturb the figures.
    pub fn load(&mut self, label: &str, other: Option<f64>) {
        if let Some(o) = other.filter(|o| *o >= QUIET_CORES) {
            self.note(format!(
                "WARNING: other processes used {:.0}% of a core during the {label} rounds; its figures are disturbed, rerun on a quiet machine",
                o * 100.0
            ));
        }
        self.row([
            label.to_owned(),
            "other processes' CPU during the rounds".into(),
            other.map_or("n/a".into(), |o| format!("{:.0}% of a core", o * 100.0)),
            "–".into(),
            format!("< {:.0}% (quiet machine)", QUIET_CORES * 100.0),
            match other {
                Some(o) if o < QUIET_CORES => "quiet".into(),
                Some(_) => "DISTURBED".into(),
                None => "n/a".into(),
            },
        ]);
    }

    /// A summary row of a figure measured per round: its median and spread, no verdict.
    pub fn figure(
        &mut self,
        label: &str,
        figure: &str,
        spread: Option<Spread>,
        unit: &Fmt,
        target: &str,
    ) {
        self.rows
            .push(figure_row(label, figure, spread, unit, target).into());
    }

    pub fn print(&self) {
        println!("## {}", self.title);
        for n in &self.notes {
            println!("{n}");
        }
        println!();
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        println!("| {} |", names.join(" | "));
        let rules: Vec<&str> = self
            .columns
            .iter()
            .map(|c| if c.right { "---:" } else { "---" })
            .collect();
        println!("| {} |", rules.join(" | "));
        for r in &self.rows {
            println!("| {} |", r.join(" | "));
        }
        if !self.after.is_empty() {
            println!();
            for a in &self.after {
                println!("{a}");
            }
        }
    }
}

/// A unit: how a figure is written.
pub type Fmt = dyn Fn(f64) -> String;

/// A summary row of a figure measured per round, whose verdict the caller may fill in.
pub fn figure_row(
    label: &str,
    figure: &str,
    spread: Option<Spread>,
    unit: &Fmt,
    target: &str,
) -> [String; 6] {
    let (m, sp) = spread_text(spread, unit);
    [
        label.to_owned(),
        figure.to_owned(),
        m,
        sp,
        target.to_owned(),
        "–".into(),
    ]
}

pub fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

/// (median, "min – max"), or "n/a" twice.
pub fn spread_text(s: Option<Spread>, f: impl Fn(f64) -> String) -> (String, String) {
    s.map_or(("n/a".into(), "n/a".into()), |s| {
        (f(s.median), format!("{} – {}", f(s.min), f(s.max)))
    })
}

/// 12345.6 → "12,346".
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// "met (0.52× nchan)" when `value` is at most nchan's `target`.
pub fn verdict_at_most(value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if v.is_finite() => format!(
            "{} ({:.2}× nchan)",
            if v <= target { "met" } else { "NOT met" },
            v / target
        ),
        _ => "n/a".into(),
    }
}

/// "met (0.52× target)" when `value` is below `target`.
pub fn verdict_below(value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if v.is_finite() => format!(
            "{} ({:.2}× target)",
            if v < target { "met" } else { "NOT met" },
            v / target
        ),
        _ => "n/a".into(),
    }
}

/// This invocation as a shell command, for the record.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,".contains(&b))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
