//! HMAC-SHA256 signatures for local object URLs: `/files/{key}?exp=…&sig=…`
//! is served only when the signature over key and expiry matches and the
//! expiry has not passed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies object URLs with a shared secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(***)")
    }
}

impl UrlSigner {
    /// A signer over `secret` (at least 32 random bytes in production).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self { secret: secret.into() }
    }

    fn mac(&self, key: &str, exp: i64) -> HmacSha256 {
        // new_from_slice accepts keys of any length for HMAC; it cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// The hex signature of `key` valid until `exp` (unix seconds).
    pub fn sign(&self, key: &str, exp: i64) -> String {
        hex::encode(self.mac(key, exp).finalize().into_bytes())
    }

    /// Whether `sig` is right for `key` and `exp`, and `exp` is after `now` (unix seconds).
    pub fn verify(&self, key: &str, exp: i64, sig: &str, now: i64) -> bool {
        if exp <= now {
            return false;
        }
        let Ok(raw) = hex::decode(sig) else { return false };
        // verify_slice compares in constant time.
        self.mac(key, exp).verify_slice(&raw).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_until_expiry() {
        let s = UrlSigner::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let sig = s.sign("images/task_1/0.png", 1000);
        assert!(s.verify("images/task_1/0.png", 1000, &sig, 999));
        assert!(!s.verify("images/task_1/0.png", 1000, &sig, 1000), "expired");
        assert!(!s.verify("images/task_1/1.png", 1000, &sig, 999), "other key");
        assert!(!s.verify("images/task_1/0.png", 1001, &sig, 999), "other expiry");
        let mut bad = sig.clone();
        bad.replace_range(0..1, if &sig[0..1] == "0" { "1" } else { "0" });
        assert!(!s.verify("images/task_1/0.png", 1000, &bad, 999), "tampered");
        assert!(!s.verify("images/task_1/0.png", 1000, "zz", 999));
    }
}
