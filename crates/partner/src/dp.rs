//! The noise of the partner's differentially private releases
//! (`accord_domain::audience::report`): OpenDP's exact discrete Laplace
//! sampler.
//!
//! Why OpenDP: it samples the discrete Laplace distribution exactly, on
//! arbitrary-precision rationals (Canonne, Kamath and Steinke 2020), so
//! there is no floating-point noise whose low bits leak the true value
//! (Mironov 2012) and nothing hand-written to get wrong. With its default
//! features off (no vendored OpenSSL, no bindings), its random bits come
//! from `rand`'s `ThreadRng`, a ChaCha generator seeded from the
//! operating system.

use accord_domain::audience::report::{DpError, NoiseSource};
use dashu::integer::IBig;
use dashu::rational::RBig;

/// Draws from OpenDP.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenDpNoise;

impl NoiseSource for OpenDpNoise {
    fn discrete_laplace(&mut self, numerator: u64, denominator: u64) -> Result<i64, DpError> {
        if denominator == 0 {
            return Err(DpError::BadRules);
        }
        let scale = RBig::from_parts(IBig::from(numerator), denominator.into());
        let z = opendp::traits::samplers::sample_discrete_laplace(scale)
            .map_err(|e| DpError::Noise(e.to_string()))?;
        i64::try_from(z).map_err(|_| DpError::Noise("a draw beyond 64 bits".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_domain::audience::report::{release, DpRules, DpState, Released};

    #[test]
    fn draws_are_centred_with_the_laplace_spread() {
        // Scale 2 (ε = 0.5): mean 0, E|X| = 2e^{-1/2} / (1 - e^{-1}) ≈ 1.92.
        let mut n = OpenDpNoise;
        let draws: Vec<i64> = (0..20_000)
            .map(|_| n.discrete_laplace(1_000, 500).unwrap())
            .collect();
        let mean = draws.iter().sum::<i64>() as f64 / draws.len() as f64;
        let abs = draws.iter().map(|x| x.abs()).sum::<i64>() as f64 / draws.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((abs - 1.92).abs() < 0.1, "mean |x| {abs}");
        assert!(draws.iter().any(|&x| x < 0) && draws.iter().any(|&x| x > 0));
    }

    /// A fair coin from the operating system's randomness.
    fn coin() -> bool {
        uuid::Uuid::new_v4().as_bytes()[0] & 1 == 1
    }

    /// The attack of Venkatadri et al. (IEEE S&P 2018) on custom audiences:
    /// upload list L and read its size, upload L plus one target and read
    /// again; a larger second figure says the target is a member. Each
    /// trial uses fresh audiences, so each release spends its own budget,
    /// and the target's presence changes the second count by one. Under
    /// ε-differential privacy of that release, no test on the two figures
    /// guesses a 50/50 membership right more often than `e^ε / (1 + e^ε)`.
    /// L's matched count is `base + t % 100` for trial `t`, unknown to the
    /// attacker. Returns the attacker's accuracy.
    fn attack(trials: u32, base: u64, rules: &DpRules, noise: &mut dyn NoiseSource) -> f64 {
        let value = |r: Released| match r {
            Released::About { count } => count as i64,
            Released::FewerThan { .. } => 0,
        };
        let mut right = 0;
        for t in 0..trials {
            let matched = base + u64::from(t) % 100;
            let member = coin();
            let first = release(matched, &mut DpState::default(), rules, noise)
                .unwrap()
                .figure;
            let second = release(
                matched + u64::from(member),
                &mut DpState::default(),
                rules,
                noise,
            )
            .unwrap()
            .figure;
            // The attacker's test: the target is in if the second figure
            // is larger (on exact counts, a sure answer).
            let guess = value(second) > value(first);
            if guess == member {
                right += 1;
            }
        }
        f64::from(right) / f64::from(trials)
    }

    #[test]
    fn a_differencing_attack_does_no_better_than_the_dp_bound() {
        let rules = DpRules::default();
        let eps = f64::from(rules.epsilon_milli) / 1000.0;
        let bound = eps.exp() / (1.0 + eps.exp());
        let trials = 200;
        let accuracy = attack(trials, 950, &rules, &mut OpenDpNoise);
        // Three standard deviations of an accuracy measured on 200 trials.
        let slack = 3.0 * (bound * (1.0 - bound) / f64::from(trials)).sqrt();
        assert!(
            accuracy <= bound + slack,
            "accuracy {accuracy:.3} above the bound {bound:.3} (+{slack:.3})"
        );
        eprintln!("differencing attack: accuracy {accuracy:.3}, DP bound {bound:.3}");
    }

    /// The same attack on exact counts (no noise, nothing rounded or
    /// hidden) wins every time: the test above measures something.
    #[test]
    fn without_noise_the_attack_wins() {
        struct Exact;
        impl NoiseSource for Exact {
            fn discrete_laplace(&mut self, _: u64, _: u64) -> Result<i64, DpError> {
                Ok(0)
            }
        }
        let rules = DpRules {
            threshold: 0,
            ..DpRules::default()
        };
        // Below 100 nothing is rounded.
        assert_eq!(attack(200, 0, &rules, &mut Exact), 1.0);
    }
}
