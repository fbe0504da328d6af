//! Syntactic rules for the model's fields. Each function names the field in
//! its error so that the caller can point at it.

use super::ModelError;

/// Base languages the suite is translated into.
pub const LANGUAGES: [&str; 8] = ["en", "de", "fi", "ca", "es", "fr", "nl", "sv"];

/// Longest display name of a user, site, group or report, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks an email address and returns it trimmed. Practical rules, not full
/// RFC 5322: one `@`, a local part of 1–64 characters without spaces, a domain
/// of dot-separated labels of letters, digits and hyphens with at least one dot.
pub fn email(field: &str, raw: &str) -> Result<String, ModelError> {
    let email = raw.trim();
    let invalid = |reason: &str| Err(ModelError::invalid(field, format!("{reason} (got `{email}`)")));
    if email.is_empty() {
        return Err(ModelError::invalid(field, "is required"));
    }
    if email.len() > 254 {
        return invalid("is longer than 254 characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return invalid("is not an email address: no `@`");
    };
    if local.is_empty() || local.len() > 64 || local.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@') {
        return invalid("is not an email address: bad part before `@`");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return invalid("is not an email address: bad domain");
    }
    Ok(email.to_string())
}

/// The key under which emails are unique: case-insensitive.
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// Checks a password against the policy: 12 to 128 characters, with a digit,
/// an upper-case and a lower-case letter. The password never appears in the error.
pub fn password(field: &str, password: &str) -> Result<(), ModelError> {
    let chars = password.chars().count();
    if !(12..=128).contains(&chars) {
        return Err(ModelError::invalid(field, format!("must be 12 to 128 characters long (got {chars})")));
    }
    let has = |pred: fn(&char) -> bool| password.chars().any(|c| pred(&c));
    if !has(char::is_ascii_digit) && !has(|c| c.is_numeric()) {
        return Err(ModelError::invalid(field, "must contain a digit"));
    }
    if !has(|c| c.is_uppercase()) {
        return Err(ModelError::invalid(field, "must contain an upper-case letter"));
    }
    if !has(|c| c.is_lowercase()) {
        return Err(ModelError::invalid(field, "must contain a lower-case letter"));
    }
    Ok(())
}

/// Checks an IETF language tag: a supported base language, optionally with a
/// region (`de-AT`, `es-419`). Returns it normalized (`de-AT`).
pub fn language(field: &str, raw: &str) -> Result<String, ModelError> {
    let tag = raw.trim();
    let (base, region) = match tag.split_once(['-', '_']) {
        Some((base, region)) => (base, Some(region)),
        None => (tag, None),
    };
    let base = base.to_ascii_lowercase();
    if !LANGUAGES.contains(&base.as_str()) {
        return Err(ModelError::invalid(
            field,
            format!("`{tag}` is not a supported language; use one of {}", LANGUAGES.join(", ")),
        ));
    }
    match region {
        None => Ok(base),
        Some(r) if r.len() == 2 && r.chars().all(|c| c.is_ascii_alphabetic()) => {
            Ok(format!("{base}-{}", r.to_ascii_uppercase()))
        }
        Some(r) if r.len() == 3 && r.chars().all(|c| c.is_ascii_digit()) => Ok(format!("{base}-{r}")),
        Some(r) => Err(ModelError::invalid(field, format!("`{r}` is not a region (two letters or three digits)"))),
    }
}

/// Checks a display name and returns it trimmed; `required` names may not be empty.
pub fn name(field: &str, raw: &str, required: bool) -> Result<String, ModelError> {
    let name = raw.trim();
    if required && name.is_empty() {
        return Err(ModelError::invalid(field, "is required"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ModelError::invalid(field, format!("is longer than {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ModelError::invalid(field, "contains control characters"));
    }
    Ok(name.to_string())
}

/// The key under which group names are unique: case-insensitive.
pub fn group_name_key(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(email("e", " Ann@Example.com ").as_deref(), Ok("Ann@Example.com"));
        for bad in ["", "ann", "@example.com", "ann@", "ann@example", "a b@example.com", "ann@-x.com", "ann@ex..com"] {
            assert!(email("e", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn passwords_follow_the_policy() {
        assert!(password("p", "Correct1horse").is_ok());
        assert!(password("p", "Short1A").is_err());
        assert!(password("p", "nouppercase123").is_err());
        assert!(password("p", "NOLOWERCASE123").is_err());
        assert!(password("p", "NoDigitsAtAllHere").is_err());
        assert!(password("p", &format!("Aa1{}", "x".repeat(126))).is_err());
    }

    #[test]
    fn languages_are_normalized_and_limited_to_the_list() {
        assert_eq!(language("l", "EN").as_deref(), Ok("en"));
        assert_eq!(language("l", "de-at").as_deref(), Ok("de-AT"));
        assert_eq!(language("l", "es-419").as_deref(), Ok("es-419"));
        assert!(language("l", "xx").is_err());
        assert!(language("l", "en-USA").is_err());
    }
}
