//! Where supergo listens: `--url` / `SUPERGO_URL` normalised into a base URL.
//!
//! The original client needed `http://` in `-url`; here `host:port`, `:port`,
//! `http://host:port` and `http://host:port/prefix` all work. Every error is a sentence
//! about the address, which the caller turns into a usage error.

/// supergo's default control address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:22106";
const DEFAULT_PORT: &str = "22106";

/// Where supergo listens, normalised from `--url` / `SUPERGO_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:port` plus an optional path prefix, no trailing slash.
    pub base: String,
    /// `host:port` (or `host` when a scheme was given without a port), for messages and
    /// the `Host` header.
    pub authority: String,
    /// `host:port` to connect to: the authority, with port 80 when an `http://` URL gave none.
    pub connect: String,
    /// The path prefix of `http://host:port/prefix`, without a trailing slash; often empty.
    pub prefix: String,
}

impl Endpoint {
    /// Accepts `host:port`, `:port` (loopback), `host` (default port), `http://host[:port][/prefix]`.
    /// Errors are usage errors: the text says what is wrong with the address.
    pub fn parse(input: &str) -> Result<Endpoint, String> {
        let text = input.trim();
        if text.is_empty() {
            return Err("the supergo address is empty (expected host:port)".to_string());
        }
        let (has_scheme, rest) = match text.find("://") {
            Some(i) => {
                let scheme = &text[..i];
                if scheme.eq_ignore_ascii_case("http") {
                    (true, &text[i + 3..])
                } else if scheme.eq_ignore_ascii_case("https") {
                    return Err(format!(
                        "'{text}': https is not supported; supergo's control API is plain \
                         HTTP (use http://host:port)"
                    ));
                } else {
                    return Err(format!(
                        "'{text}': unknown scheme '{scheme}' (expected host:port or http://host:port)"
                    ));
                }
            }
            None => (false, text),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("'{text}' has no host (expected host:port)"));
        }
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(format!(
                "'{text}': user names, queries and fragments are not supported (expected host:port)"
            ));
        }
        let authority = if authority.starts_with(':') {
            format!("127.0.0.1{authority}")
        } else {
            authority.to_string()
        };
        let (authority, connect) = match split_port(&authority)? {
            (_, Some(port)) => {
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => {}
                    _ => return Err(format!("'{text}': bad port '{port}' (expected 1-65535)")),
                }
                (authority.clone(), authority)
            }
            // With an explicit http:// the HTTP default (80) applies, as in any URL;
            // a bare host means "supergo on that host", so its default port.
            (host, None) if has_scheme => (authority.clone(), format!("{host}:80")),
            (host, None) => {
                let authority = format!("{host}:{DEFAULT_PORT}");
                (authority.clone(), authority)
            }
        };
        Ok(Endpoint {
            base: format!("http://{authority}{path}"),
            authority,
            connect,
            prefix: path.to_string(),
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `host`, `[v6]` into host and port.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(format!("'{authority}': missing ']' after the IPv6 address"));
        };
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((&authority[..close + 2], Some(port))),
            None if after.is_empty() => Ok((authority, None)),
            None => Err(format!("'{authority}': unexpected text after ']'")),
        };
    }
    match authority.matches(':').count() {
        0 => Ok((authority, None)),
        1 => {
            let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
            if host.is_empty() {
                return Err(format!("'{authority}' has no host"));
            }
            Ok((host, Some(port)))
        }
        _ => Err(format!(
            "'{authority}': write an IPv6 address in brackets, e.g. [::1]:{DEFAULT_PORT}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(input: &str) -> String {
        match Endpoint::parse(input) {
            Ok(e) => e.base,
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn host_port_gets_http_scheme() {
        assert_eq!(base("127.0.0.1:22106"), "http://127.0.0.1:22106");
        assert_eq!(base("  localhost:9000 "), "http://localhost:9000");
    }

    #[test]
    fn http_url_is_kept_without_trailing_slash() {
        assert_eq!(base("http://127.0.0.1:22106"), "http://127.0.0.1:22106");
        assert_eq!(base("http://127.0.0.1:22106/"), "http://127.0.0.1:22106");
        assert_eq!(base("HTTP://host:1/ctl/"), "http://host:1/ctl");
    }

    #[test]
    fn bare_port_means_loopback() {
        assert_eq!(base(":4000"), "http://127.0.0.1:4000");
    }

    #[test]
    fn bare_host_gets_supergo_port_but_http_url_keeps_http_default() {
        assert_eq!(base("example.org"), "http://example.org:22106");
        assert_eq!(base("http://example.org"), "http://example.org");
    }

    #[test]
    fn ipv6_in_brackets() {
        assert_eq!(base("[::1]:5"), "http://[::1]:5");
        assert_eq!(base("[::1]"), "http://[::1]:22106");
        assert!(base("::1").starts_with("ERR"));
    }

    #[test]
    fn connect_address_and_prefix() {
        let e = Endpoint::parse("http://example.org/ctl/").expect("valid");
        assert_eq!(
            (e.connect.as_str(), e.prefix.as_str()),
            ("example.org:80", "/ctl")
        );
        let e = Endpoint::parse("[::1]").expect("valid");
        assert_eq!((e.connect.as_str(), e.prefix.as_str()), ("[::1]:22106", ""));
    }

    #[test]
    fn authority_is_host_and_port_for_messages() {
        let e = Endpoint::parse("http://127.0.0.1:22106/").expect("valid");
        assert_eq!(e.authority, "127.0.0.1:22106");
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        assert!(base("").contains("empty"));
        assert!(base("https://h:1").contains("https is not supported"));
        assert!(base("ftp://h:1").contains("unknown scheme 'ftp'"));
        assert!(base("h:0").contains("bad port '0'"));
        assert!(base("h:http").contains("bad port 'http'"));
        assert!(base("h:").contains("bad port ''"));
        assert!(base("http:///x").contains("no host"));
    }
}
