//! The order in which channels are tried for one task: highest priority
//! first; among channels of equal priority a weighted random order, so
//! traffic spreads by weight while a failing pick still falls through to the
//! others. Pure: the random source is a parameter, availability is checked
//! later by the relay at the moment of each attempt.

use rand::Rng;

/// One channel as the picker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the caller's channel list.
    pub index: usize,
    /// Higher goes first.
    pub priority: i32,
    /// Relative share among equal priorities; 0 means "only when the others are out".
    pub weight: u32,
}

/// Orders `candidates` for trying: priority descending, weighted random within a priority.
pub fn order<R: Rng + ?Sized>(candidates: &[Candidate], rng: &mut R) -> Vec<usize> {
    let mut sorted: Vec<Candidate> = candidates.to_vec();
    sorted.sort_by_key(|c| std::cmp::Reverse(c.priority));
    let mut out = Vec::with_capacity(sorted.len());
    let mut start = 0;
    while start < sorted.len() {
        let prio = sorted[start].priority;
        let end = sorted[start..].iter().position(|c| c.priority != prio).map_or(sorted.len(), |n| start + n);
        weighted_shuffle(&mut sorted[start..end], rng);
        out.extend(sorted[start..end].iter().map(|c| c.index));
        start = end;
    }
    out
}

/// Draws without replacement, each draw proportional to weight; zero-weight
/// entries keep their relative order at the end.
fn weighted_shuffle<R: Rng + ?Sized>(group: &mut [Candidate], rng: &mut R) {
    for i in 0..group.len() {
        let total: u64 = group[i..].iter().map(|c| u64::from(c.weight)).sum();
        if total == 0 {
            break;
        }
        let mut ticket = rng.random_range(0..total);
        let mut chosen = i;
        for (j, c) in group.iter().enumerate().skip(i) {
            let w = u64::from(c.weight);
            if ticket < w {
                chosen = j;
                break;
            }
            ticket -= w;
        }
        // rotate rather than swap so the undrawn tail keeps its order
        group[i..=chosen].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn c(index: usize, priority: i32, weight: u32) -> Candidate {
        Candidate { index, priority, weight }
    }

    #[test]
    fn higher_priority_always_comes_first() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let o = order(&[c(0, 1, 100), c(1, 10, 1), c(2, 5, 50)], &mut rng);
            assert_eq!(o, vec![1, 2, 0]);
        }
    }

    #[test]
    fn equal_priorities_split_by_weight() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut first = [0u32; 2];
        for _ in 0..10_000 {
            let o = order(&[c(0, 0, 3), c(1, 0, 1)], &mut rng);
            assert_eq!(o.len(), 2);
            first[o[0]] += 1;
        }
        // expect 75% / 25%; allow sampling noise
        assert!((7_200..7_800).contains(&first[0]), "{first:?}");
    }

    #[test]
    fn zero_weight_is_a_last_resort_within_its_priority() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let o = order(&[c(0, 0, 0), c(1, 0, 5), c(2, 0, 5), c(3, -1, 9)], &mut rng);
            assert_eq!(o[2], 0);
            assert_eq!(o[3], 3);
        }
    }

    #[test]
    fn every_candidate_appears_once() {
        let mut rng = StdRng::seed_from_u64(3);
        let cands: Vec<_> = (0..20).map(|i| c(i, (i % 3) as i32, (i % 4) as u32)).collect();
        let mut o = order(&cands, &mut rng);
        o.sort_unstable();
        assert_eq!(o, (0..20).collect::<Vec<_>>());
    }
}
