//! Refusals of a limited write: why it stopped, the path to the refused value, and the
//! [`LimitError`] they become.

use crate::limits::{LimitError, Limits};

/// Why a write stopped, and where: the path from the refused value up to the root, innermost first.
#[derive(Debug)]
pub(super) struct Refusal {
    refused: Refused,
    pub(super) path: Vec<Step>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Refused {
    Deep,
    Large,
    NonFinite(&'static str),
}

/// One step of a path: an array index or an object key.
#[derive(Debug)]
pub(super) enum Step {
    Index(usize),
    Key(String),
}

impl Refusal {
    pub(super) fn new(refused: Refused) -> Self {
        Refusal {
            refused,
            path: Vec::new(),
        }
    }

    pub(super) fn into_error(self, root: &str, what: String, limits: Limits) -> LimitError {
        /// Steps shown at each end of a longer path (one too deep has more than `MAX_DEPTH`).
        const SHOWN: usize = 8;
        let mut path = root.to_owned();
        let steps = self.path.len();
        for (i, step) in self.path.iter().rev().enumerate() {
            if steps > 2 * SHOWN && (SHOWN..steps - SHOWN).contains(&i) {
                if i == SHOWN {
                    path.push('…');
                }
                continue;
            }
            match step {
                Step::Index(i) => {
                    path.push('[');
                    path.push_str(itoa::Buffer::new().format(*i));
                    path.push(']');
                }
                Step::Key(k)
                    if !k.is_empty() && k.chars().all(|c| c == '_' || c.is_alphanumeric()) =>
                {
                    path.push('.');
                    path.push_str(k);
                }
                Step::Key(k) => {
                    path.push('[');
                    path.push_str(&serde_json::to_string(k).unwrap_or_default());
                    path.push(']');
                }
            }
        }
        match self.refused {
            Refused::Deep => LimitError::TooDeep {
                what,
                path,
                max: limits.max_depth,
            },
            Refused::Large => LimitError::TooLarge {
                what,
                kind: limits.kind,
                max: limits.max_bytes,
            },
            Refused::NonFinite(value) => LimitError::NonFinite { what, path, value },
        }
    }
}
