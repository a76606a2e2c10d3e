//! Configuration errors: every one names the key path or variable it is about.

use std::fmt;

/// One problem in the configuration, located by its key path (`routes[2].source`) or variable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON key path inside a file or variable, e.g. `xs-app.json: routes[2].source`.
    pub path: String,
    /// What is wrong, one lowercase phrase.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found while checking the configuration; start-up fails once with the whole list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Error {
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl Error {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
