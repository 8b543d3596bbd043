//! What a business may learn of an audience or a campaign: counts released
//! under differential privacy, by rules the partner cannot bend.
//!
//! Each release of a count (an audience's size, a campaign's reach or
//! impressions) adds noise from the discrete Laplace distribution with
//! scale `1/ε` (sensitivity 1: one person changes a count by at most one),
//! spends `ε` from that count's budget, rounds the noisy count to two
//! significant figures, and shows it only when it is at least the
//! threshold (100): below, the business reads "fewer than 100". Once the
//! budget cannot pay for another release, the last released figure is
//! repeated and nothing new is released, so that asking again and again
//! cannot average the noise away. The noise itself is drawn by a
//! [`NoiseSource`] (the partner's draws with OpenDP's exact sampler);
//! this module never draws a number itself.
//!
//! Budgets are kept in thousandths of ε (exact integer accounting).

use serde::{Deserialize, Serialize};

/// The release rules of one kind of count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpRules {
    /// ε of each release, in thousandths (500 is ε = 0.5).
    pub epsilon_milli: u32,
    /// The total ε one count may spend, in thousandths.
    pub budget_milli: u32,
    /// Noisy counts below this are shown as "fewer than" it.
    pub threshold: u64,
}

impl Default for DpRules {
    /// ε = 0.5 per release, a budget of ε = 3 (six releases), threshold
    /// 100.
    fn default() -> Self {
        DpRules {
            epsilon_milli: 500,
            budget_milli: 3_000,
            threshold: 100,
        }
    }
}

/// Why rules or a draw were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    #[error("ε per release must be above 0 and at most the budget")]
    BadRules,
    #[error("the noise source failed: {0}")]
    Noise(String),
}

impl DpRules {
    pub fn check(&self) -> Result<(), DpError> {
        if self.epsilon_milli == 0 || self.epsilon_milli > self.budget_milli {
            return Err(DpError::BadRules);
        }
        Ok(())
    }

    /// The noise scale `1/ε` as a fraction `(numerator, denominator)`.
    pub fn scale(&self) -> (u64, u64) {
        (1_000, u64::from(self.epsilon_milli))
    }
}

/// Draws integer noise. The partner's implementation samples OpenDP's
/// discrete Laplace; tests may script it.
pub trait NoiseSource {
    /// One draw from the discrete Laplace distribution of scale
    /// `numerator / denominator`, centred on 0.
    fn discrete_laplace(&mut self, numerator: u64, denominator: u64) -> Result<i64, DpError>;
}

/// A released figure, as the business sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "shown", rename_all = "snake_case")]
pub enum Released {
    /// The noisy count was below the threshold.
    FewerThan { threshold: u64 },
    /// The noisy count, rounded to two significant figures.
    About { count: u64 },
}

impl std::fmt::Display for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Released::FewerThan { threshold } => write!(f, "fewer than {threshold}"),
            Released::About { count } => write!(f, "about {count}"),
        }
    }
}

/// One count's release state, as stored with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpState {
    /// ε spent so far, in thousandths.
    pub spent_milli: u32,
    pub last: Option<Released>,
}

impl DpState {
    /// Whether another release can be paid for.
    pub fn can_release(&self, rules: &DpRules) -> bool {
        self.spent_milli + rules.epsilon_milli <= rules.budget_milli
    }

    /// ε left, in thousandths.
    pub fn left_milli(&self, rules: &DpRules) -> u32 {
        rules.budget_milli.saturating_sub(self.spent_milli)
    }
}

/// What [`release`] gave: the figure, and whether it is new (budget
/// spent) or the last one repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    pub figure: Released,
    pub fresh: bool,
}

/// Releases `true_count` under `rules`, updating `state` (store it in the
/// same transaction as the figure is shown). With the budget spent, the
/// last figure is repeated (`fresh: false`); if nothing was ever released
/// (a budget smaller than one release), "fewer than" the threshold.
pub fn release(
    true_count: u64,
    state: &mut DpState,
    rules: &DpRules,
    noise: &mut dyn NoiseSource,
) -> Result<Release, DpError> {
    rules.check()?;
    if !state.can_release(rules) {
        let figure = state.last.unwrap_or(Released::FewerThan {
            threshold: rules.threshold,
        });
        return Ok(Release {
            figure,
            fresh: false,
        });
    }
    let (n, d) = rules.scale();
    let z = noise.discrete_laplace(n, d)?;
    let noisy = i128::from(true_count) + i128::from(z);
    let figure = if noisy < i128::from(rules.threshold) {
        Released::FewerThan {
            threshold: rules.threshold,
        }
    } else {
        Released::About {
            count: round_2sf(u64::try_from(noisy).unwrap_or(u64::MAX)),
        }
    };
    state.spent_milli += rules.epsilon_milli;
    state.last = Some(figure);
    Ok(Release {
        figure,
        fresh: true,
    })
}

/// `x` rounded to two significant figures (half up): 1,234 → 1,200,
/// 1,250 → 1,300, 99 → 99, 995 → 1,000.
pub fn round_2sf(x: u64) -> u64 {
    if x < 100 {
        return x;
    }
    let digits = x.ilog10() + 1;
    let unit = 10u64.pow(digits - 2);
    let q = x / unit;
    let r = x % unit;
    let q = if r * 2 >= unit { q + 1 } else { q };
    q.saturating_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Noise read from a script, to pin the rules down.
    struct Scripted(Vec<i64>);
    impl NoiseSource for Scripted {
        fn discrete_laplace(&mut self, n: u64, d: u64) -> Result<i64, DpError> {
            assert_eq!((n, d), (1_000, 500), "scale 1/ε");
            Ok(self.0.remove(0))
        }
    }

    #[test]
    fn rounding_keeps_two_significant_figures() {
        for (x, r) in [
            (0, 0),
            (99, 99),
            (100, 100),
            (104, 100),
            (105, 110),
            (1_234, 1_200),
            (1_250, 1_300),
            (995, 1_000),
            (987_654, 990_000),
            (u64::MAX, 18_000_000_000_000_000_000),
        ] {
            assert_eq!(round_2sf(x), r, "{x}");
        }
    }

    #[test]
    fn releases_are_thresholded_rounded_and_budgeted() {
        let rules = DpRules::default();
        let mut st = DpState::default();
        let mut noise = Scripted(vec![3, -3, 40, 0, 0, 0, 7]);
        let r = release(1_234, &mut st, &rules, &mut noise).unwrap();
        assert_eq!(r.figure, Released::About { count: 1_200 });
        assert!(r.fresh);
        // 102 - 3 = 99: below the threshold.
        let r = release(102, &mut st, &rules, &mut noise).unwrap();
        assert_eq!(r.figure, Released::FewerThan { threshold: 100 });
        assert_eq!(r.figure.to_string(), "fewer than 100");
        let r = release(60, &mut st, &rules, &mut noise).unwrap();
        assert_eq!(r.figure, Released::About { count: 100 });
        for _ in 0..3 {
            release(5_000, &mut st, &rules, &mut noise).unwrap();
        }
        assert_eq!(st.spent_milli, 3_000);
        assert_eq!(st.left_milli(&rules), 0);
        // Spent: the last figure again, whatever the count is now, and no
        // draw.
        let r = release(1, &mut st, &rules, &mut noise).unwrap();
        assert_eq!(
            r,
            Release {
                figure: Released::About { count: 5_000 },
                fresh: false
            }
        );
        assert_eq!(noise.0, vec![7], "nothing drawn once the budget is spent");
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut st = DpState::default();
        let mut noise = Scripted(vec![]);
        for rules in [
            DpRules {
                epsilon_milli: 0,
                ..DpRules::default()
            },
            DpRules {
                epsilon_milli: 4_000,
                budget_milli: 3_000,
                threshold: 100,
            },
        ] {
            assert_eq!(
                release(10, &mut st, &rules, &mut noise),
                Err(DpError::BadRules)
            );
        }
        assert_eq!(st, DpState::default());
    }
}
