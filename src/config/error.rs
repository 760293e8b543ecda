//! Config errors: every problem found while loading carries `file:line:col`.
//!
//! Loading never stops at the first problem: each stage pushes into a
//! [`Diagnostics`] collector and [`ConfigErrors`] reports them all at once,
//! one per line, sorted by file and position so the output reads top to bottom.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A position in a config file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The file as given (or found below the config directory).
    pub file: Arc<str>,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column (in characters); 0 when unknown.
    pub col: u32,
}

impl Pos {
    /// A position in `file`.
    pub fn new(file: &Arc<str>, line: u32, col: u32) -> Pos {
        Pos {
            file: Arc::clone(file),
            line,
            col,
        }
    }

    /// The start of a file (for problems that concern the whole file).
    pub fn file_start(file: &Path) -> Pos {
        Pos {
            file: Arc::from(file.display().to_string()),
            line: 1,
            col: 1,
        }
    }

    /// The same position moved `n` characters to the right (same line).
    pub fn shifted(&self, n: usize) -> Pos {
        Pos {
            file: Arc::clone(&self.file),
            line: self.line,
            col: self
                .col
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem in the config, at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Collector used by every loading stage.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Problems that make the config invalid.
    pub errors: Vec<ConfigError>,
    /// Problems worth telling about that do not stop loading.
    pub warnings: Vec<ConfigError>,
}

impl Diagnostics {
    /// Record an error at `pos`.
    pub fn error(&mut self, pos: &Pos, message: impl Into<String>) {
        self.errors.push(ConfigError {
            pos: pos.clone(),
            message: message.into(),
        });
    }

    /// Record a warning at `pos`.
    pub fn warn(&mut self, pos: &Pos, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            pos: pos.clone(),
            message: message.into(),
        });
    }
}

/// All errors (and warnings) of one load. `Display` prints one per line,
/// errors first, then warnings as `file:line:col: warning: …`.
#[derive(Debug, Default, thiserror::Error)]
pub struct ConfigErrors {
    /// Every error found, sorted by file, line and column.
    pub errors: Vec<ConfigError>,
    /// Every warning found, sorted likewise.
    pub warnings: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Sort and wrap the diagnostics of a load.
    pub fn from_diagnostics(mut d: Diagnostics) -> ConfigErrors {
        d.errors.sort_by(|a, b| a.pos.cmp(&b.pos));
        d.errors.dedup();
        d.warnings.sort_by(|a, b| a.pos.cmp(&b.pos));
        d.warnings.dedup();
        ConfigErrors {
            errors: d.errors,
            warnings: d.warnings,
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.errors {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{e}")?;
        }
        for w in &self.warnings {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{}: warning: {}", w.pos, w.message)?;
        }
        Ok(())
    }
}
