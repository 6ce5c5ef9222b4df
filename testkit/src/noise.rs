//! Rare faults injected into a fake's otherwise normal answers: a healthy upstream as it really
//! behaves, with the odd 5xx, 429 or dropped connection, at a set rate and reproducibly (the
//! choice for the n-th request depends only on the seed and n).

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;

/// Faults at a rate, chosen in turn from `faults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noise<M> {
    /// Faulty answers per million requests (20,000 is 2 %).
    pub per_million: u32,
    /// Which requests are faulty depends only on this and the request's number.
    pub seed: u64,
    /// What a faulty answer is; the k-th fault is `faults[k % len]`.
    pub faults: Vec<Fault<M>>,
    /// At most this many faults, then none (`Some(1)` with a rate of 1,000,000: exactly the
    /// next request); `None`: no limit.
    pub limit: Option<usize>,
}

/// One faulty answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault<M> {
    /// Answer this one request in another mode of the fake (a 503 page, a 429 …).
    Answer(M),
    /// Send the status line and headers, then drop the connection mid-body.
    Reset,
}

impl<M: Clone> Noise<M> {
    /// The fault for request number `hit` (from 1), if it is to be faulty.
    pub(crate) fn pick(&mut self, hit: usize) -> Option<Fault<M>> {
        if self.faults.is_empty() || self.limit == Some(0) {
            return None;
        }
        let draw = splitmix64(self.seed ^ (hit as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if draw % 1_000_000 >= u64::from(self.per_million) {
            return None;
        }
        let k = (draw / 1_000_000) as usize % self.faults.len();
        if let Some(left) = self.limit.as_mut() {
            *left -= 1;
        }
        Some(self.faults[k].clone())
    }
}

/// A well-mixed 64-bit hash of `x` (SplitMix64's finaliser).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A 200 whose body fails after the head is sent: the server drops the connection mid-answer.
pub(crate) fn reset() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("testkit: connection reset"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(failing))
        .expect("testkit: a response with a failing body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_come_at_the_set_rate_reproducibly_and_up_to_the_limit() {
        let mut noise = Noise {
            per_million: 20_000,
            seed: 42,
            faults: vec![Fault::Answer(503u16), Fault::Reset],
            limit: None,
        };
        let picks: Vec<Option<Fault<u16>>> = (1..=100_000).map(|hit| noise.pick(hit)).collect();
        let faulty = picks.iter().filter(|p| p.is_some()).count();
        assert!(
            (1_600..=2_400).contains(&faulty),
            "{faulty} of 100000 at 2 %"
        );
        assert!(picks.contains(&Some(Fault::Reset)) && picks.contains(&Some(Fault::Answer(503))));
        let again: Vec<Option<Fault<u16>>> = (1..=100_000).map(|hit| noise.pick(hit)).collect();
        assert_eq!(picks, again, "the same seed gives the same faults");

        let mut once = Noise {
            per_million: 1_000_000,
            seed: 1,
            faults: vec![Fault::Reset::<u16>],
            limit: Some(1),
        };
        assert_eq!(once.pick(1), Some(Fault::Reset));
        assert_eq!(once.pick(2), None, "the limit is reached");
    }
}
