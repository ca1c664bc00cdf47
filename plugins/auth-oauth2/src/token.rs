//! JWT checks with rabbitmq_auth_backend_oauth2 3.10's semantics (`uaa_jwt`, `check_token`,
//! `post_process_payload`, `validate_payload`), pure: no host calls, so it is unit-tested natively.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::collections::BTreeMap;

/// base64url, padding optional (JWTs have none; JWK values sometimes do).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signing key.
pub enum Key {
    /// `kty = "oct"`: HMAC secret (HS256/384/512).
    Oct(Vec<u8>),
    /// `kty = "RSA"` or a PEM public key (RS256/384/512).
    Rsa(RsaPublicKey),
}

/// The plugin's settings (`[auth_oauth2]`).
pub struct Settings {
    pub resource_server_id: String,
    pub default_key: Option<String>,
    pub additional_scopes_key: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub keys: BTreeMap<String, Key>,
}

const ALGORITHMS: [&str; 6] = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512"];

impl Settings {
    /// Parses the host's settings (see `OAuth2Config::plugin_settings` in the broker). Every
    /// problem is an error naming the key.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let resource_server_id = get("resource_server_id").unwrap_or_default();
        let default_key = get("default_key").filter(|k| !k.is_empty());
        let additional_scopes_key = get("additional_scopes_key").filter(|k| !k.is_empty());
        let algorithms = match get("algorithms") {
            None => None,
            Some(a) => {
                let list: Vec<String> = serde_json::from_str(&a).map_err(|e| format!("algorithms: not a list of names ({e})"))?;
                if let Some(bad) = list.iter().find(|a| !ALGORITHMS.contains(&a.as_str())) {
                    return Err(format!("algorithms: '{bad}' is not supported (supported: {})", ALGORITHMS.join(", ")));
                }
                Some(list)
            }
        };
        let mut keys = BTreeMap::new();
        let raw = get("signing_keys").unwrap_or_else(|| "{}".into());
        let raw: Map<String, Value> = serde_json::from_str(&raw).map_err(|e| format!("signing_keys: {e}"))?;
        for (id, jwk) in raw {
            keys.insert(id.clone(), parse_key(&jwk).map_err(|e| format!("signing_keys.{id}: {e}"))?);
        }
        if keys.is_empty() {
            return Err("signing_keys: no signing key configured ([auth_oauth2.signing_keys])".into());
        }
        if let Some(k) = &default_key
            && !keys.contains_key(k)
        {
            return Err(format!("default_key '{k}' is not one of signing_keys ({})", keys.keys().cloned().collect::<Vec<_>>().join(", ")));
        }
        Ok(Settings { resource_server_id, default_key, additional_scopes_key, algorithms, keys })
    }
}

fn parse_key(jwk: &Value) -> Result<Key, String> {
    let field = |n: &str| jwk.get(n).and_then(Value::as_str);
    if let Some(pem) = field("pem") {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::pkcs8::DecodePublicKey;
        return RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map(Key::Rsa)
            .map_err(|e| format!("pem_file: not an RSA public key in PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY): {e}"));
    }
    let b64 = |n: &str| -> Result<Vec<u8>, String> {
        let v = field(n).ok_or_else(|| format!("kty \"{}\" needs \"{n}\"", field("kty").unwrap_or_default()))?;
        B64.decode(v.trim_end_matches('=')).map_err(|e| format!("{n}: not base64url ({e})"))
    };
    match field("kty") {
        Some("oct") => {
            let k = b64("k")?;
            if k.is_empty() {
                return Err("k: empty key".into());
            }
            Ok(Key::Oct(k))
        }
        Some("RSA") => {
            let n = BigUint::from_bytes_be(&b64("n")?);
            let e = BigUint::from_bytes_be(&b64("e")?);
            RsaPublicKey::new(n, e).map(Key::Rsa).map_err(|e| format!("not a usable RSA key: {e}"))
        }
        Some(other) => Err(format!("kty \"{other}\" is not supported (\"oct\" with k, \"RSA\" with n and e, or pem_file)")),
        None => Err("needs kty (\"oct\" or \"RSA\") or pem_file".into()),
    }
}

/// A checked token, reduced to what the broker needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// Scopes without the `<resource_server_id>.` prefix (only those that had it).
    pub scope: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: Option<i64>,
    /// The user name: `client_id`, else `sub`, else none.
    pub name: Option<String>,
}

impl Claims {
    /// RabbitMQ's `tags_from`: `tag:<name>` scopes, sorted, without duplicates.
    pub fn tags(&self) -> Vec<String> {
        let mut t: Vec<String> = self.scope.iter().filter_map(|s| s.strip_prefix("tag:")).map(str::to_string).collect();
        t.sort();
        t.dedup();
        t
    }

    /// RabbitMQ's `validate_token_expiry`: an error once `exp` is reached.
    pub fn expiry_error(&self, now_secs: i64) -> Option<String> {
        match self.exp {
            Some(exp) if exp <= now_secs => {
                Some(format!("Provided JWT token has expired at timestamp {exp} (validated at {now_secs})"))
            }
            _ => None,
        }
    }
}

const INVALID: &str = "Authentication using an OAuth 2/JWT token failed: provided token is invalid";

fn failed(why: impl std::fmt::Display) -> String {
    format!("Authentication using an OAuth 2/JWT token failed: {why}")
}

/// `check_token` + `validate_token_expiry` (+ `nbf`): the claims of a token whose signature,
/// audience and times are valid at `now_secs`, or why it is refused (for the broker's log).
pub fn check(settings: &Settings, token: &str, now_secs: i64) -> Result<Claims, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(INVALID.into());
    };
    let json = |s: &str| -> Option<Map<String, Value>> {
        let bytes = B64.decode(s).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    };
    let header = json(h).ok_or(INVALID)?;
    let payload = json(p).ok_or(INVALID)?;
    let sig = B64.decode(sig).map_err(|_| INVALID.to_string())?;
    // uaa_jwt: the key named by `kid`, else default_key.
    let kid = match header.get("kid") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err(INVALID.into()),
        None => settings.default_key.clone().ok_or_else(|| failed("{error,no_key}"))?,
    };
    let key = settings.keys.get(&kid).ok_or_else(|| failed(format!("{{error,key_not_found}} (kid '{kid}')")))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(INVALID)?;
    if let Some(allowed) = &settings.algorithms
        && !allowed.iter().any(|a| a == alg)
    {
        return Err(failed(format!("signature_invalid (algorithm {alg} is not in algorithms)")));
    }
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    if !verify(key, alg, signed, &sig) {
        return Err(failed("signature_invalid"));
    }
    let payload = post_process(payload, settings);
    // validate_payload: scope and aud must both be there.
    let (Some(scope), Some(aud)) = (payload.get("scope"), payload.get("aud")) else {
        return Err(failed("the token has no scope or no aud claim"));
    };
    let rsid = &settings.resource_server_id;
    if !rsid.is_empty() {
        match aud {
            Value::Array(list) if list.iter().any(|a| a.as_str() == Some(rsid)) => {}
            Value::Array(_) => return Err(failed(format!("{{invalid_aud,{{resource_id_not_found_in_aud,{rsid:?},{aud}}}}}"))),
            _ => return Err(failed(format!("{{invalid_aud,{{badarg,{{aud_is_not_a_list,{aud}}}}}}}"))),
        }
    }
    let scopes = strings(scope).ok_or_else(|| failed("scope is not a list of strings"))?;
    let prefix = format!("{rsid}.");
    let scope: Vec<String> =
        if rsid.is_empty() { scopes } else { scopes.iter().filter_map(|s| s.strip_prefix(&prefix)).map(str::to_string).collect() };
    let int = |k: &str| payload.get(k).and_then(Value::as_i64);
    let name_of = |k: &str| -> Result<Option<String>, String> {
        match payload.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(failed(format!("{k} is not a string"))),
        }
    };
    let name = match name_of("client_id")? {
        Some(n) => Some(n),
        None => name_of("sub")?,
    };
    let claims = Claims { scope, exp: int("exp"), name };
    if let Some(e) = claims.expiry_error(now_secs) {
        return Err(e);
    }
    if let Some(nbf) = int("nbf")
        && nbf > now_secs
    {
        return Err(failed(format!("the token is not valid before timestamp {nbf} (validated at {now_secs})")));
    }
    Ok(claims)
}

fn verify(key: &Key, alg: &str, signed: &[u8], sig: &[u8]) -> bool {
    match (key, alg) {
        (Key::Oct(k), "HS256") => Hmac::<Sha256>::new_from_slice(k).map(|m| m.chain_update(signed).verify_slice(sig).is_ok()).unwrap_or(false),
        (Key::Oct(k), "HS384") => Hmac::<Sha384>::new_from_slice(k).map(|m| m.chain_update(signed).verify_slice(sig).is_ok()).unwrap_or(false),
        (Key::Oct(k), "HS512") => Hmac::<Sha512>::new_from_slice(k).map(|m| m.chain_update(signed).verify_slice(sig).is_ok()).unwrap_or(false),
        (Key::Rsa(k), "RS256") => k.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(signed), sig).is_ok(),
        (Key::Rsa(k), "RS384") => k.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(signed), sig).is_ok(),
        (Key::Rsa(k), "RS512") => k.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(signed), sig).is_ok(),
        // "none", algorithms of other key types, unknown names
        _ => false,
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => a.iter().map(|s| s.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn split_spaces(s: &str) -> Value {
    Value::Array(s.split(' ').filter(|p| !p.is_empty()).map(|p| Value::String(p.to_string())).collect())
}

/// `post_process_payload`: `aud` and `scope` strings become lists; scopes from the
/// `additional_scopes_key` claim and from Keycloak's `authorization.permissions` come first.
fn post_process(mut p: Map<String, Value>, settings: &Settings) -> Map<String, Value> {
    for k in ["aud", "scope"] {
        if let Some(Value::String(s)) = p.get(k) {
            let v = split_spaces(s);
            p.insert(k.to_string(), v);
        }
    }
    let existing = |p: &Map<String, Value>| match p.get("scope") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if let Some(extra_key) = &settings.additional_scopes_key
        && let Some(claim) = p.get(extra_key).cloned()
    {
        let rsid = &settings.resource_server_id;
        let prefixed = |ks: Vec<&str>| ks.into_iter().map(|k| Value::String(format!("{rsid}.{k}"))).collect::<Vec<_>>();
        let extra: Vec<Value> = match &claim {
            Value::Array(a) => a.clone(),
            Value::Object(m) => match m.get(rsid.as_str()) {
                Some(Value::Array(ks)) => prefixed(ks.iter().filter_map(Value::as_str).collect()),
                Some(Value::String(s)) => prefixed(s.split(' ').filter(|x| !x.is_empty()).collect()),
                _ => Vec::new(),
            },
            Value::String(s) => s.split(' ').filter(|x| !x.is_empty()).map(|x| Value::String(x.to_string())).collect(),
            _ => Vec::new(),
        };
        if !extra.is_empty() {
            let mut all = extra;
            all.extend(existing(&p));
            p.insert("scope".into(), Value::Array(all));
        }
    }
    if let Some(Value::Object(authz)) = p.get("authorization").cloned() {
        let mut extra = Vec::new();
        if let Some(Value::Array(perms)) = authz.get("permissions") {
            for perm in perms {
                match perm.get("scopes") {
                    Some(Value::Array(s)) => extra.extend(s.iter().cloned()),
                    Some(s @ Value::String(_)) => extra.push(s.clone()),
                    _ => {}
                }
            }
        }
        extra.extend(existing(&p));
        p.insert("scope".into(), Value::Array(extra));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn hs256(secret: &[u8], header: &str, payload: &str) -> String {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        m.update(signed.as_bytes());
        format!("{signed}.{}", b64(&m.finalize().into_bytes()))
    }

    fn settings() -> Settings {
        let keys = format!(r#"{{"id1": {{"kty": "oct", "k": "{}"}}}}"#, b64(b"secret"));
        Settings::parse(|k| match k {
            "resource_server_id" => Some("rabbitmq".into()),
            "default_key" => Some("id1".into()),
            "signing_keys" => Some(keys.clone()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn a_valid_token_gives_scopes_tags_and_name() {
        let t = hs256(
            b"secret",
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"bob","aud":"rabbitmq other","scope":"rabbitmq.read:*/* rabbitmq.tag:management other.write:*/* rabbitmq.tag:management","exp":2000}"#,
        );
        let c = check(&settings(), &t, 1000).unwrap();
        assert_eq!(c.scope, ["read:*/*", "tag:management", "tag:management"]);
        assert_eq!(c.tags(), ["management"]);
        assert_eq!(c.name.as_deref(), Some("bob"));
        // expired, forged, wrong audience, kid unknown, not yet valid
        assert!(check(&settings(), &t, 2000).unwrap_err().starts_with("Provided JWT token has expired at timestamp 2000"));
        let forged = hs256(b"other", r#"{"alg":"HS256"}"#, r#"{"sub":"bob","aud":"rabbitmq","scope":""}"#);
        assert!(check(&settings(), &forged, 1000).unwrap_err().ends_with("signature_invalid"));
        let wrong_aud = hs256(b"secret", r#"{"alg":"HS256"}"#, r#"{"sub":"bob","aud":["x"],"scope":""}"#);
        assert!(check(&settings(), &wrong_aud, 1000).unwrap_err().contains("resource_id_not_found_in_aud"));
        let kid = hs256(b"secret", r#"{"alg":"HS256","kid":"nope"}"#, r#"{"sub":"bob","aud":"rabbitmq","scope":""}"#);
        assert!(check(&settings(), &kid, 1000).unwrap_err().contains("key_not_found"));
        let nbf = hs256(b"secret", r#"{"alg":"HS256"}"#, r#"{"sub":"bob","aud":"rabbitmq","scope":"","nbf":5000}"#);
        assert!(check(&settings(), &nbf, 1000).unwrap_err().contains("not valid before"));
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"sub":"bob","aud":"rabbitmq","scope":""}"#));
        assert!(check(&settings(), &none, 1000).is_err());
        assert_eq!(check(&settings(), "garbage", 1000).unwrap_err(), INVALID);
        // client_id wins over sub
        let cid = hs256(b"secret", r#"{"alg":"HS256"}"#, r#"{"sub":"bob","client_id":"app","aud":"rabbitmq","scope":[]}"#);
        assert_eq!(check(&settings(), &cid, 1000).unwrap().name.as_deref(), Some("app"));
    }

    #[test]
    fn bad_settings_are_named() {
        let parse = |keys: &str, default: Option<&str>| {
            Settings::parse(|k| match k {
                "signing_keys" => Some(keys.to_string()),
                "default_key" => default.map(str::to_string),
                _ => None,
            })
            .err()
        };
        assert_eq!(parse(r#"{"a":{"kty":"oct"}}"#, None).unwrap(), r#"signing_keys.a: kty "oct" needs "k""#);
        assert!(parse(r#"{"a":{"kty":"EC"}}"#, None).unwrap().contains("not supported"));
        assert!(parse(r#"{"a":{"pem":"nope"}}"#, None).unwrap().contains("not an RSA public key"));
        assert!(parse("{}", None).unwrap().contains("no signing key"));
        assert!(parse(r#"{"a":{"kty":"oct","k":"c2VjcmV0"}}"#, Some("b")).unwrap().contains("default_key 'b'"));
        assert!(parse(r#"{"a":{"kty":"oct","k":"c2VjcmV0"}}"#, Some("a")).is_none());
    }
}
