//! HTTP Basic authentication for the REST API's mutating endpoints, configured by
//! `restapi.authentication {username, password}` as in Patroni. Read-only endpoints stay
//! open: HAProxy and monitoring probe them without credentials.
//!
//! Pure: the caller passes the configured credentials and the request's
//! `Authorization` header, and answers 401 with [`WWW_AUTHENTICATE`] on an error.

use base64::alphabet;
use base64::engine::general_purpose::GeneralPurposeConfig;
use base64::engine::{DecodePaddingMode, GeneralPurpose};
use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warden_config::Credentials;

/// The `WWW-Authenticate` value of a 401 answer. Patroni's realm, so clients that match
/// on it (or show it to a user) see the same thing.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"Patroni\"";

/// Why a request was not authenticated. Each answers 401; the variants exist for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("wrong username or password")]
    Wrong,
}

/// Standard alphabet; padding optional, because some hand-written clients drop it and
/// the padding carries no information.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Checks a request's `Authorization` header against the configured credentials.
///
/// `Ok` when no credentials are configured. Otherwise the header must be
/// `Basic base64(username:password)` (scheme case-insensitive, spaces around the token
/// tolerated) and both fields must match. A configured user without a password is
/// matched against an empty password (`user:`), the only thing a client could send.
pub fn check(
    expected: Option<&Credentials>,
    authorization: Option<&HeaderValue>,
) -> Result<(), AuthError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let header = authorization.ok_or(AuthError::Missing)?;
    let (username, password) = decode(header)?;
    let expected_password = expected.password.as_deref().unwrap_or("");
    // Each field is hashed to a fixed 32 bytes before the constant-time comparison:
    // `ct_eq` on slices of different lengths returns early, which would tell an
    // attacker the length of the secret, and padding to a common length would still
    // need a length-dependent bound. SHA-256 is collision-resistant, so equal digests
    // mean equal fields. The two results are combined with `&` on `Choice` (no
    // short-circuit), so a wrong username costs the same time as a wrong password.
    // Hashing time depends only on the lengths of the attacker's own input and of the
    // secret, which is the same for every attempt.
    let user_ok = digest(username.as_bytes()).ct_eq(&digest(expected.username.as_bytes()));
    let password_ok = digest(password.as_bytes()).ct_eq(&digest(expected_password.as_bytes()));
    if bool::from(user_ok & password_ok) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `Basic <token>` → (username, password), split at the first colon (RFC 7617: the
/// user-id cannot contain one, the password can).
fn decode(header: &HeaderValue) -> Result<(String, String), AuthError> {
    let text = header
        .to_str()
        .map_err(|_| AuthError::Malformed("not visible ASCII"))?
        .trim();
    let (scheme, token) = text
        .split_once([' ', '\t'])
        .ok_or(AuthError::Malformed("expected `Basic <credentials>`"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed("not the Basic scheme"));
    }
    let raw = BASE64
        .decode(token.trim())
        .map_err(|_| AuthError::Malformed("invalid base64"))?;
    let text = String::from_utf8(raw).map_err(|_| AuthError::Malformed("not UTF-8"))?;
    let (username, password) = text.split_once(':').ok_or(AuthError::Malformed(
        "no colon between username and password",
    ))?;
    Ok((username.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn creds(user: &str, password: Option<&str>) -> Credentials {
        Credentials {
            username: user.to_owned(),
            password: password.map(str::to_owned),
        }
    }

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    fn basic(user_pass: &str) -> HeaderValue {
        header(&format!("Basic {}", STANDARD.encode(user_pass)))
    }

    fn run(expected: &Credentials, h: &HeaderValue) -> Result<(), AuthError> {
        check(Some(expected), Some(h))
    }

    #[test]
    fn no_credentials_configured_allows_everything() {
        assert_eq!(check(None, None), Ok(()));
        assert_eq!(check(None, Some(&header("garbage"))), Ok(()));
    }

    #[test]
    fn right_credentials_pass() {
        let c = creds("admin", Some("s3cret"));
        assert_eq!(run(&c, &basic("admin:s3cret")), Ok(()));
    }

    #[test]
    fn missing_header() {
        let c = creds("admin", Some("s3cret"));
        assert_eq!(check(Some(&c), None), Err(AuthError::Missing));
    }

    #[test]
    fn wrong_password_same_and_different_length() {
        let c = creds("admin", Some("s3cret"));
        assert_eq!(run(&c, &basic("admin:s3creT")), Err(AuthError::Wrong));
        assert_eq!(
            run(&c, &basic("admin:s3cret-longer")),
            Err(AuthError::Wrong)
        );
        assert_eq!(run(&c, &basic("admin:s")), Err(AuthError::Wrong));
        assert_eq!(run(&c, &basic("admin:")), Err(AuthError::Wrong));
    }

    #[test]
    fn wrong_user_with_right_password() {
        let c = creds("admin", Some("s3cret"));
        assert_eq!(run(&c, &basic("root:s3cret")), Err(AuthError::Wrong));
        assert_eq!(run(&c, &basic("admin2:s3cret")), Err(AuthError::Wrong));
        assert_eq!(run(&c, &basic(":s3cret")), Err(AuthError::Wrong));
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_tolerated() {
        let c = creds("admin", Some("s3cret"));
        let token = STANDARD.encode("admin:s3cret");
        for text in [
            format!("basic {token}"),
            format!("BASIC {token}"),
            format!("Basic    {token}"),
            format!("  Basic {token}  "),
            format!("Basic\t{token}"),
        ] {
            assert_eq!(run(&c, &header(&text)), Ok(()), "{text:?}");
        }
        // Unpadded base64 decodes to the same credentials.
        let c = creds("admin", Some("s3cret!"));
        let token = STANDARD.encode("admin:s3cret!");
        let unpadded = token.trim_end_matches('=');
        assert_ne!(unpadded, token, "the test token should need padding");
        assert_eq!(run(&c, &header(&format!("Basic {token}"))), Ok(()));
        assert_eq!(run(&c, &header(&format!("Basic {unpadded}"))), Ok(()));
    }

    #[test]
    fn password_may_contain_colons() {
        let c = creds("admin", Some("a:b:c"));
        assert_eq!(run(&c, &basic("admin:a:b:c")), Ok(()));
        assert_eq!(run(&c, &basic("admin:a:b")), Err(AuthError::Wrong));
    }

    #[test]
    fn user_without_password_matches_an_empty_password() {
        let c = creds("admin", None);
        assert_eq!(run(&c, &basic("admin:")), Ok(()));
        assert_eq!(run(&c, &basic("admin:x")), Err(AuthError::Wrong));
    }

    #[test]
    fn malformed_headers() {
        let c = creds("admin", Some("s3cret"));
        let malformed = |h: &HeaderValue| matches!(run(&c, h), Err(AuthError::Malformed(_)));
        // Other schemes.
        assert!(malformed(&header("Bearer abc.def")));
        assert!(malformed(&header(&format!(
            "Digest {}",
            STANDARD.encode("admin:s3cret")
        ))));
        // Scheme only, or nothing at all.
        assert!(malformed(&header("Basic")));
        assert!(malformed(&header("Basic   ")));
        assert!(malformed(&header("")));
        // Bad base64.
        assert!(malformed(&header("Basic !!!notbase64")));
        assert!(malformed(&header("Basic YWRt aW46")));
        // No colon.
        assert!(malformed(&basic("admins3cret")));
        // Not UTF-8 after decoding.
        let bytes = STANDARD.encode([0xff, 0xfe, b':', b'x']);
        assert!(malformed(&header(&format!("Basic {bytes}"))));
        // Not visible ASCII in the header itself.
        let opaque = HeaderValue::from_bytes(b"Basic \xe9t\xe9").unwrap();
        assert!(malformed(&opaque));
    }

    #[test]
    fn errors_describe_the_problem() {
        assert_eq!(AuthError::Missing.to_string(), "no Authorization header");
        assert_eq!(
            AuthError::Malformed("invalid base64").to_string(),
            "malformed Authorization header: invalid base64"
        );
        assert_eq!(AuthError::Wrong.to_string(), "wrong username or password");
        assert_eq!(WWW_AUTHENTICATE, "Basic realm=\"Patroni\"");
    }
}
