//! argon2id password hashing. Both calls are CPU-heavy (tens of
//! milliseconds by design): run them off the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as PhcString};

use crate::model::PasswordHash;

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> Result<PasswordHash, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let phc = Argon2::default().hash_password(password.as_bytes(), &salt)?;
    Ok(PasswordHash(phc.to_string()))
}

/// Whether `password` matches the stored hash. A malformed hash never matches.
pub fn verify(password: &str, stored: &PasswordHash) -> bool {
    PhcString::new(&stored.0).is_ok_and(|phc| Argon2::default().verify_password(password.as_bytes(), &phc).is_ok())
}
