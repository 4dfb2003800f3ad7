//! Diagnostics: every problem found in user input, with where it is and what
//! was expected. A load collects all of them instead of stopping at the first.

use std::fmt;

/// How bad a diagnostic is. Errors fail `meshsim validate`; warnings report
/// input we accept but do not act on (never silently dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the user's YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// File name as the user gave it.
    pub file: String,
    /// 1-based line; 0 when the position is unknown.
    pub line: u64,
    /// 1-based column; 0 when the position is unknown.
    pub column: u64,
    /// Dotted field path inside the document (`spec.http[0].route`), or empty.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        file: &str,
        line: u64,
        column: u64,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            Severity::Error,
            file,
            line,
            column,
            path.into(),
            message.into(),
        )
    }

    pub fn warning(
        file: &str,
        line: u64,
        column: u64,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            Severity::Warning,
            file,
            line,
            column,
            path.into(),
            message.into(),
        )
    }

    fn new(
        severity: Severity,
        file: &str,
        line: u64,
        column: u64,
        path: String,
        message: String,
    ) -> Self {
        Self {
            severity,
            file: file.to_string(),
            line,
            column,
            path,
            message,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {sev}: ", self.file)?,
            (l, 0) => write!(f, "{}:{l}: {sev}: ", self.file)?,
            (l, c) => write!(f, "{}:{l}:{c}: {sev}: ", self.file)?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A position inside a file, carried by resources so later stages (the
/// compiler, `analyze`) can point back at the YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Origin {
    pub file: String,
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Every diagnostic of a load or a build, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, more: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(more);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }

    /// The errors, one per line (`file:line:col: error: ...`).
    pub fn error_text(&self) -> String {
        self.errors()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The model stage's error: every problem of the input, with positions.
impl std::error::Error for Diagnostics {}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Self(v)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
