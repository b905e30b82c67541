//! The report: the findings, their rendering for the startup log, and the error that stops the
//! agent.

use std::fmt;

use super::{Rule, Severity};

/// One problem the audit found in one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it stops the agent from starting.
    pub severity: Severity,
    /// The rule broken.
    pub rule: Rule,
    /// The action's name.
    pub action: String,
    /// Where the action is declared, `file:line`.
    pub location: String,
    /// What is wrong and how to fix it, for the person reading the startup log.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: action `{}` at {}\n    {}",
            self.severity, self.rule, self.action, self.location, self.message
        )
    }
}

/// The result of an audit: every finding, errors and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub(super) findings: Vec<Finding>,
    pub(super) actions: usize,
    pub(super) strict: bool,
}

impl AuditReport {
    /// No errors (warnings are allowed).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// Every finding, sorted by action, then severity, then rule.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The findings that stop the agent from starting.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The findings that do not.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// How many actions were audited.
    pub fn action_count(&self) -> usize {
        self.actions
    }

    /// Whether the audit ran in strict mode.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// `Ok(self)` without errors, so an agent can refuse to start with `report.into_result()?`.
    pub fn into_result(self) -> Result<AuditReport, AuditError> {
        if self.is_ok() {
            Ok(self)
        } else {
            Err(AuditError { report: self })
        }
    }

    /// The one-line summary that ends the [`Display`](fmt::Display) output.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        format!(
            "audit {}: {} in {}{}",
            if self.is_ok() { "passed" } else { "failed" },
            join_counts(errors, warnings),
            plural(self.actions, "action"),
            if self.strict { " (strict)" } else { "" },
        )
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// The audit found errors: the agent must not start. Carries the whole report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the action audit failed, the agent will not start:\n{report}")]
pub struct AuditError {
    report: AuditReport,
}

impl AuditError {
    /// The report with every finding.
    pub fn report(&self) -> &AuditReport {
        &self.report
    }

    /// Takes the report out.
    pub fn into_report(self) -> AuditReport {
        self.report
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn join_counts(errors: usize, warnings: usize) -> String {
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}
